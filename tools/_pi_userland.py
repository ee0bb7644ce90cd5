"""Raspberry Pi OS userlands on an x86-64 host: Debian arm64 packages run by qemu user-mode.

Raspberry Pi OS 64-bit is Debian arm64 plus Raspberry Pi's own packages, none of which the
runtime uses, so Debian's `python3` with the libraries PyPI's aarch64 wheels link against
(libstdc++, zlib; readelf on the wheels lists nothing else beyond glibc) is the userland a Pi
user's `pip install` lands in.  `mmdebstrap --variant=extract` unpacks those packages without
running any of their scripts (no chroot, no foreign dpkg architecture); qemu-aarch64-static's
`-L ROOT` then maps the guest's absolute paths (the loader, /usr/lib/python3.X) into it.

Two emulation details matter:

- `-cpu` must name a real Pi core.  qemu's default `max` CPU advertises SME, and LiteRT then
  picks SME int8 kernels that qemu 7.2 computes wrongly (garbage, no error).
- qemu 7.2 shows the guest the host's x86 /proc/cpuinfo, on which `import onnxruntime`
  crashes; `-L` redirects /proc/cpuinfo too, so the root gets a Pi-like one for its `-cpu`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("python3", "libstdc++6", "zlib1g")
HOST_TOOLS = {"qemu-aarch64-static": "qemu-user-static", "mmdebstrap": "mmdebstrap"}
MERGED_USR = ("bin", "sbin", "lib")  # Trixie ships these only under /usr


class SetupError(Exception):
    """The host cannot run the check (missing tools it cannot install)."""


@dataclass(frozen=True)
class Cpu:
    """A Raspberry Pi's CPU as qemu names it and as the Pi's /proc/cpuinfo describes it."""

    qemu: str
    board: str
    features: str
    variant: str
    part: str
    revision: int
    board_revision: str

    @property
    def pi(self) -> str:
        """The board without its model suffix: "Raspberry Pi 5"."""
        return self.board.split(" Model")[0]


CPUS = {
    "cortex-a72": Cpu(
        "cortex-a72", "Raspberry Pi 4 Model B Rev 1.5", "fp asimd evtstrm crc32 cpuid",
        "0x0", "0xd08", 3, "c03115",
    ),
    "cortex-a76": Cpu(
        "cortex-a76", "Raspberry Pi 5 Model B Rev 1.0",
        "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
        "dcpop asimddp",
        "0x4", "0xd0b", 1, "d04170",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Userland:
    """A Raspberry Pi OS release: its Debian suite, its Python and the Pi it is checked as."""

    suite: str
    python: str  # major.minor of the suite's python3
    cpu: str  # key of CPUS

    @property
    def label(self) -> str:
        return f"{self.suite} (Python {self.python})"


USERLANDS = {
    "bookworm": Userland("bookworm", "3.11", "cortex-a72"),  # the Pi 4 generation's release
    "trixie": Userland("trixie", "3.13", "cortex-a76"),  # current release, as on a Pi 5
}


def ensure_host_tools(tools: dict[str, str] = HOST_TOOLS) -> dict[str, str]:
    """The host tools (command -> its Debian package; by default qemu-aarch64-static and
    mmdebstrap), installed with apt-get when missing; returns their versions.  SetupError (one
    line) when they are missing and cannot be installed."""
    missing = sorted({pkg for tool, pkg in tools.items() if shutil.which(tool) is None})
    if missing:
        if shutil.which("apt-get") is None:
            raise SetupError(
                f"needs {' and '.join(missing)} (Debian/Ubuntu packages) and apt-get is not here"
            )
        if os.geteuid() != 0:
            raise SetupError(
                f"needs {' and '.join(missing)}: run as root, or first "
                f"`sudo apt-get install {' '.join(missing)}`"
            )
        _apt_install(missing)
    return {tool: _version(tool) for tool in tools}


def _apt_install(packages: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        # no recommends: binfmt-support would register qemu with the kernel, which is not needed
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
            raise SetupError(f"`{' '.join(cmd)}` failed: {last[0]}")


def _version(tool: str) -> str:
    done = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"\d+\.\d+(\.\d+)?", done.stdout)
    return match.group(0) if match else "?"


def build_root(userland: Userland, cache: Path, *, log: Path) -> tuple[Path, bool]:
    """The arm64 root of `userland` under `cache` (built once with mmdebstrap, then reused);
    returns it and whether it came from the cache."""
    root = cache / f"{userland.suite}-arm64-{'-'.join(PACKAGES)}"
    options = ["--variant=extract", "--architectures=arm64", f"--include={','.join(PACKAGES)}"]
    cached = debian_root(root, userland.suite, options, log=log, finish=_merge_usr)
    return root, cached


def debian_root(
    root: Path,
    suite: str,
    options: list[str],
    *,
    log: Path,
    finish: Callable[[Path], None] | None = None,
) -> bool:
    """`root` made once by `mmdebstrap OPTIONS SUITE` (then `finish` on it), in ROOT.partial
    until complete, so that an interrupted run starts again; whether it was there already.
    RuntimeError naming `log` (mmdebstrap's output) when mmdebstrap fails."""
    if (root / ".complete").exists():
        return True
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)  # an empty directory: mmdebstrap's "unpack here" target
    cmd = ["mmdebstrap", *options, suite, str(partial)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"mmdebstrap {suite} failed (exit {done.returncode}; see {log})")
    if finish is not None:
        finish(partial)
    (partial / ".complete").touch()
    partial.rename(root)
    return False


def _merge_usr(root: Path) -> None:
    """/bin, /sbin, /lib as links into /usr where the suite ships them only there (merged /usr
    is normally made by the base-files/usrmerge scripts an extract never runs); the loader's
    path /lib/ld-linux-aarch64.so.1 needs them."""
    for name in MERGED_USR:
        if not (root / name).exists() and (root / "usr" / name).is_dir():
            (root / name).symlink_to(f"usr/{name}")


def cpuinfo(cpu: Cpu, cores: int) -> str:
    """A Raspberry Pi's /proc/cpuinfo text with `cores` cores (as many as the host lends)."""
    blocks = [
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {cpu.features}\n"
        f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: {cpu.variant}\n"
        f"CPU part\t: {cpu.part}\nCPU revision\t: {cpu.revision}\n"
        for i in range(cores)
    ]
    board = (
        f"Revision\t: {cpu.board_revision}\nSerial\t\t: 100000000000cafe\nModel\t\t: {cpu.board}\n"
    )
    return "\n".join([*blocks, board])


def write_cpuinfo(root: Path, cpu: Cpu) -> None:
    proc = root / "proc"
    proc.mkdir(exist_ok=True)
    (proc / "cpuinfo").write_text(cpuinfo(cpu, os.cpu_count() or 1))


def glibc_version(root: Path) -> tuple[int, int]:
    """The glibc release of the root, read from its libc.so.6 (Debian's banner string)."""
    for libc in sorted(root.glob("usr/lib/aarch64-linux-gnu/libc.so.6")) + sorted(
        root.glob("lib/aarch64-linux-gnu/libc.so.6")
    ):
        match = re.search(rb"release version (\d+)\.(\d+)", libc.read_bytes())
        if match:
            return int(match.group(1)), int(match.group(2))
    raise RuntimeError(f"{root}: no libc.so.6 with a version banner")


def python_command(root: Path, userland: Userland, cpu: Cpu) -> list[str]:
    """The command line that starts the userland's Python under emulation."""
    python = root / "usr" / "bin" / f"python{userland.python}"
    if not python.exists():
        raise RuntimeError(f"{root}: no python{userland.python} (is {userland.suite} right?)")
    return ["qemu-aarch64-static", "-cpu", cpu.qemu, "-L", str(root), str(python)]


def python_version(command: list[str]) -> str:
    """The full version of the emulated Python (also proves the emulator runs it)."""
    done = subprocess.run(
        [*command, "-I", "-S", "-c", "import platform; print(platform.python_version())"],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{command[-1]} does not start under qemu: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()
