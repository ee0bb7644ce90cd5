"""The device's Python packages: PyPI's aarch64 wheels at the versions `uv.lock` pins.

What a Raspberry Pi user gets from `pip install "edgecnn[tflite]"` and `"edgecnn[onnx]"`, minus
edgecnn itself (copied from the source tree): numpy, opencv-python-headless, ai-edge-litert,
onnxruntime and what they depend on.  pip cannot install for a foreign CPU directly, so the
wheels are fetched with `pip download --platform ... --python-version ...` (hash-checked against
the lock) and unpacked with `pip install --no-deps --target`.  Both steps are cached.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import Marker

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same reader from PyPI (the dev extra has it)
    import tomli as tomllib

DEVICE_EXTRAS = ("tflite", "onnx")  # the extras the README tells a Pi user to install


class LockError(Exception):
    """uv.lock does not say what the device needs."""


@dataclass(frozen=True)
class Pin:
    """One locked distribution and the sha256 of every wheel the lock lists for it."""

    name: str
    version: str
    hashes: tuple[str, ...]

    @property
    def requirement(self) -> str:
        """A line for `pip --require-hashes -r`."""
        return " ".join([f"{self.name}=={self.version}", *(f"--hash={h}" for h in self.hashes)])

    @property
    def wheel_prefix(self) -> str:
        """How this version's wheel file names start (PEP 427 name normalisation)."""
        return f"{re.sub(r'[-_.]+', '_', self.name).lower()}-{self.version}-"


def marker_environment(python: str) -> dict[str, str]:
    """PEP 508 marker values of CPython `python` (e.g. "3.11.2") on aarch64 Linux."""
    major_minor = ".".join(python.split(".")[:2])
    return {
        "python_full_version": python,
        "python_version": major_minor,
        "implementation_name": "cpython",
        "implementation_version": python,
        "platform_python_implementation": "CPython",
        "os_name": "posix",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "aarch64",
        "platform_release": "",
        "platform_version": "",
        "extra": "",
    }


def lock_pins(
    lock: Mapping[str, Any],
    *,
    python: str,
    root: str = "edgecnn",
    extras: Sequence[str] = DEVICE_EXTRAS,
) -> list[Pin]:
    """Every distribution `root[extras]` needs on CPython `python` on aarch64 Linux, at the
    locked version: the dependency graph of `uv.lock` walked from `root`, markers evaluated.

    `root` itself is left out (the device gets it from the source tree).
    """
    env = marker_environment(python)
    packages = lock.get("package", [])
    start = _find(packages, root, None, env)
    edges = list(start.get("dependencies", []))
    for extra in extras:
        optional = start.get("optional-dependencies", {})
        if extra not in optional:
            raise LockError(f"uv.lock: {root} has no extra {extra!r} (has {sorted(optional)})")
        edges += optional[extra]
    pins: dict[str, Pin] = {}
    while edges:
        dep = edges.pop()
        if "marker" in dep and not Marker(dep["marker"]).evaluate(env):
            continue
        package = _find(packages, dep["name"], dep.get("version"), env)
        known = pins.get(package["name"])
        if known is None:
            pins[package["name"]] = _pin(package)
            edges += package.get("dependencies", [])
        elif known.version != package["version"]:
            raise LockError(
                f"uv.lock: {package['name']} is needed at {known.version} and {package['version']}"
            )
        for extra in dep.get("extra", []):
            edges += package.get("optional-dependencies", {}).get(extra, [])
    pins.pop(root, None)
    return sorted(pins.values(), key=lambda p: p.name)


def _find(
    packages: Iterable[Mapping[str, Any]], name: str, version: str | None, env: Mapping[str, str]
) -> Mapping[str, Any]:
    """The lock entry of `name` (at `version` when given; else the one whose resolution markers
    fit `env`)."""
    found = [p for p in packages if p["name"] == name]
    if version is not None:
        found = [p for p in found if p.get("version") == version]
    if len(found) > 1:
        found = [p for p in found if _fits(p.get("resolution-markers"), env)]
    if len(found) != 1:
        where = f" {version}" if version else ""
        raise LockError(f"uv.lock: expected one entry for {name}{where}, found {len(found)}")
    return found[0]


def _fits(markers: Sequence[str] | None, env: Mapping[str, str]) -> bool:
    return not markers or any(Marker(m).evaluate(env) for m in markers)


def _pin(package: Mapping[str, Any]) -> Pin:
    hashes = tuple(w["hash"] for w in package.get("wheels", []) if "hash" in w)
    if not hashes:
        raise LockError(f"uv.lock: {package['name']} {package['version']} lists no wheels")
    return Pin(package["name"], package["version"], hashes)


# --- pip for a foreign platform -----------------------------------------------------------------


def platform_tags(glibc: tuple[int, int]) -> list[str]:
    """pip `--platform` values a device with this glibc accepts, most specific first (the order
    pip on the device itself prefers)."""
    major, minor = glibc
    if major != 2 or minor < 17:
        raise ValueError(f"glibc {major}.{minor}: manylinux wheels need glibc 2.17 or newer")
    tags = [f"manylinux_2_{m}_aarch64" for m in range(minor, 16, -1)]
    return [*tags, "manylinux2014_aarch64"]


def _target_options(python: str, glibc: tuple[int, int]) -> list[str]:
    major_minor = ".".join(python.split(".")[:2])
    options = ["--only-binary=:all:", "--implementation", "cp", "--python-version", major_minor]
    for tag in platform_tags(glibc):
        options += ["--platform", tag]
    # Some pure-Python wheels in the lock declare an upper Python bound the lock's resolver
    # ignored (e.g. backports-strenum); the lock's versions are what the tests run, so keep them.
    return [*options, "--ignore-requires-python"]


def cached_wheels(pins: Sequence[Pin], folder: Path) -> dict[str, Path]:
    """The wheel already in `folder` for each pin that has one."""
    have = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    found = {}
    for pin in pins:
        match = [w for w in have if w.name.lower().startswith(pin.wheel_prefix)]
        if match:
            found[pin.name] = match[0]
    return found


def download(
    pins: Sequence[Pin], folder: Path, *, python: str, glibc: tuple[int, int], log: Path
) -> list[Path]:
    """The wheel of every pin for this device, from `folder` or else from PyPI (hash-checked)."""
    found = cached_wheels(pins, folder)
    missing = [p for p in pins if p.name not in found]
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        requirements = log.with_name(f"requirements-{folder.name}.txt")
        requirements.write_text("".join(p.requirement + "\n" for p in missing))
        _pip(
            ["download", "--no-deps", "--require-hashes", "-d", str(folder), "-r",
             str(requirements), *_target_options(python, glibc)],
            log=log, what=f"downloading {len(missing)} wheels for Python {python}",
        )  # fmt: skip
        found = cached_wheels(pins, folder)
    still = [p.name for p in pins if p.name not in found]
    if still:
        raise RuntimeError(f"pip download left no wheel for {', '.join(still)} in {folder}")
    return [found[p.name] for p in pins]


def install(
    wheels: Sequence[Path], cache: Path, *, python: str, glibc: tuple[int, int], log: Path
) -> tuple[Path, bool]:
    """A site-packages folder with `wheels` unpacked, reused while the wheels stay the same;
    returns it and whether it came from the cache."""
    key = hashlib.sha256("\n".join(sorted(w.name for w in wheels)).encode()).hexdigest()[:12]
    site = cache / f"py{python}-{key}"
    if (site / ".complete").exists():
        return site, True
    _remove_stale(cache, f"py{python}-", keep=site)
    partial = site.with_name(site.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    _pip(
        ["install", "--no-deps", "--no-index", "--no-compile", "--target", str(partial),
         *_target_options(python, glibc), *map(str, wheels)],
        log=log, what=f"installing wheels for Python {python}",
    )  # fmt: skip
    (partial / ".complete").touch()
    partial.rename(site)
    return site, False


def _remove_stale(folder: Path, prefix: str, *, keep: Path) -> None:
    """Earlier site folders of the same Python (other wheel sets) are not used again."""
    for old in folder.glob(prefix + "*") if folder.is_dir() else []:
        if old != keep and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def pip_python() -> str:
    """The Python whose pip downloads and unpacks the wheels: $EDGECNN_PIP_PYTHON, else this one.

    uv's environments (`make test`'s .venv) have no pip; `make pi-check` points the variable at
    the pip of the venv that holds uv.  Any x86 Python with pip will do: the target Python and
    platform are pip options."""
    return os.environ.get("EDGECNN_PIP_PYTHON") or sys.executable


def _pip(args: list[str], *, log: Path, what: str) -> None:
    python = pip_python()
    found = subprocess.run(
        [python, "-c", "import pip"], capture_output=True, check=False
    ).returncode
    if found != 0:
        raise RuntimeError(
            f"{what}: {python} has no pip; set EDGECNN_PIP_PYTHON to a Python that has one"
        )
    cmd = [python, "-m", "pip", *args, "--disable-pip-version-check"]
    with log.open("a") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (pip exit {done.returncode}; see {log})")


# --- edgecnn itself -------------------------------------------------------------------------------


def read_toml(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def install_source(repo: Path, dest: Path) -> Path:
    """Copy edgecnn's packages as `pip install` would lay them out (pyproject's `package-dir`
    maps `runtime/` to edgecnn.runtime, `export/` to edgecnn.export); returns `dest`."""
    config = read_toml(repo / "pyproject.toml")["tool"]["setuptools"]
    mapping: dict[str, str] = config.get("package-dir", {})
    for package in config["packages"]:
        source = repo / _package_folder(package, mapping)
        target = dest.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for f in source.glob("*.py"):
            shutil.copy2(f, target / f.name)
    return dest


def _package_folder(package: str, mapping: dict[str, str]) -> Path:
    """Where `package` lives in the repository under setuptools' package-dir rules."""
    parts = package.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in mapping:
            return Path(mapping[prefix], *parts[n:])
    return Path(mapping.get("", "."), *parts)
