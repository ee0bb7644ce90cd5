"""`make test-python`: the test suite on the newest Python the package allows, in a Debian root.

    .venv/bin/python tools/python_check.py [--suite trixie] [--cache DIR]

`make test` installs uv.lock for the Python it runs on, and the lock resolves some packages
differently by Python (numpy, scipy and Keras have other releases on 3.10 and on 3.12+), while
Python itself rewords messages and deprecates APIs between releases.  On an x86-64 Linux host
whose own Python is another one, this runs the whole `make test` of a clean clone of HEAD with
Debian Trixie's python3.13:

1. root     Debian's packages for python3, venv, make, git and the libraries MediaPipe's
            wheels load, unpacked by mmdebstrap into --cache (default $EDGECNN_PYTHON_CHECK_CACHE,
            else ~/.cache/edgecnn-python-check) once, then reused
2. clone    a clean clone of HEAD inside it; the datasets beside the repository (../shared) are
            mounted there read-only, as in CI
3. suite    `make test PYTHON=python3.13` in a chroot, with the host's CA bundle, pip
            configuration and DNS settings, so that PyPI is reached as on the host

Needs root (chroot and bind mounts) and mmdebstrap (apt-get installs it).  Exit status: 0 the
suite passed, 1 it failed, 2 the host cannot run the check (one line says why).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import _pi_userland as userland

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CACHE_ENV = "EDGECNN_PYTHON_CHECK_CACHE"
# suite -> its python3's major.minor
SUITES = {"trixie": "3.13"}
PACKAGES = (
    "python3", "python3-venv", "make", "git", "ca-certificates",
    # the system libraries MediaPipe's wheels load (tests/test_mediapipe.py)
    "libgl1", "libglib2.0-0t64", "libegl1", "libgles2",
)  # fmt: skip
# host files copied into the root before each run: how this host reaches PyPI
HOST_FILES = ("etc/resolv.conf", "etc/ssl/certs/ca-certificates.crt", "etc/pip.conf")
# (host path, mount point inside the root) bound for the run; /dev/shm for multiprocessing
MOUNTS = (("/proc", "proc"), ("/sys", "sys"), ("/dev", "dev"), ("/dev/shm", "dev/shm"))
CLONE = "work/edgecnn"  # inside the root; ../shared beside it is work/shared, read-only


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/python_check.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--suite", choices=sorted(SUITES), default="trixie")
    parser.add_argument("--cache", type=Path, help="where the Debian root is kept")
    return parser.parse_args(argv)


def say(message: str) -> None:
    print(f"python-check: {message}", flush=True)


def check_host() -> None:
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        raise userland.SetupError("needs an x86-64 Linux host (the root is Debian amd64)")
    if os.geteuid() != 0:
        raise userland.SetupError("needs root: chroot and bind mounts (`sudo make test-python`)")
    userland.ensure_host_tools({"mmdebstrap": "mmdebstrap"})


def build_root(suite: str, cache: Path) -> Path:
    """The suite's root under `cache`, made once (its package scripts run, so python3-venv and
    ca-certificates are set up as on a Debian machine)."""
    root = cache / f"{suite}-amd64-{'-'.join(PACKAGES)}"
    log = cache / "mmdebstrap.log"
    options = ["--variant=apt", f"--include={','.join(PACKAGES)}"]
    cached = userland.debian_root(root, suite, options, log=log)
    say(f"root {root} ({'cached' if cached else f'made by mmdebstrap, log {log}'})")
    return root


def copy_host_files(root: Path) -> None:
    for name in HOST_FILES:
        source = Path("/") / name
        if source.is_file():  # resolv.conf may be a link to systemd's copy: copy the text
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            shutil.copyfile(source, target)


def fresh_clone(root: Path) -> Path:
    """A clean clone of HEAD at root/CLONE (what CI tests: committed files only)."""
    clone = root / CLONE
    shutil.rmtree(clone, ignore_errors=True)
    clone.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    return clone


@contextmanager
def mounted(root: Path) -> Iterator[None]:
    """The kernel's file systems and ../shared (read-only) bound into the root, unbound after."""
    points = []
    binds = [(host, inside, False) for host, inside in MOUNTS]
    if SHARED.is_dir():
        binds.append((str(SHARED), str(Path(CLONE).parent / "shared"), True))
    try:
        for host, inside, read_only in binds:
            point = root / inside
            point.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "--bind", host, str(point)], check=True)
            points.append(point)
            if read_only:
                subprocess.run(["mount", "-o", "remount,bind,ro", str(point)], check=True)
        yield
    finally:
        for point in reversed(points):
            if subprocess.run(["umount", str(point)], check=False).returncode:
                subprocess.run(["umount", "--lazy", str(point)], check=False)


def run_suite(root: Path, python: str) -> int:
    command = f"cd /{CLONE} && make test PYTHON=python{python}"
    env = {**os.environ, "HOME": "/root", "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):  # the host's, meaningless inside
        env.pop(name, None)
    say(f"$ chroot {root} /bin/sh -c '{command}'")
    return subprocess.run(["chroot", str(root), "/bin/sh", "-c", command], env=env).returncode


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    default = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "edgecnn-python-check")
    cache = (args.cache or default).expanduser().resolve()
    python = SUITES[args.suite]
    try:
        check_host()
        root = build_root(args.suite, cache)
    except (userland.SetupError, RuntimeError) as e:
        print(f"python-check: {e}", file=sys.stderr)
        return 2
    copy_host_files(root)
    if not SHARED.is_dir():
        say(f"{SHARED} is not here: the tests that need the shared photos will skip")
    try:
        fresh_clone(root)
        with mounted(root):
            code = run_suite(root, python)
    except subprocess.CalledProcessError as e:
        print(f"python-check: `{' '.join(map(str, e.cmd))}` failed (exit {e.returncode})",
              file=sys.stderr)  # fmt: skip
        return 2
    say(f"make test on {args.suite}'s Python {python}: {'passed' if code == 0 else 'FAILED'}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
