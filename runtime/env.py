"""What a result was produced on: the machine (CPU model, cores, OS, Python) and the installed
package versions.  One probe for bench, export and the backends, so every report names the CPU
and the packages the same way.  `package_version` reads the installed distributions' metadata
and imports nothing (importing TensorFlow for its version would take seconds)."""

from __future__ import annotations

import importlib
import os
import platform
from collections.abc import Iterable, Mapping
from pathlib import Path

_CPUINFO = Path("/proc/cpuinfo")
# /proc/cpuinfo's name for the CPU: x86 ("model name"), older Arm kernels ("Hardware"), MIPS.
_MODEL_KEYS = ("model name", "hardware", "cpu model")


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        for line in _CPUINFO.read_text().splitlines():
            if line.lower().startswith(_MODEL_KEYS):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """CPU model, architecture, logical cores (all, and usable by this process), OS, Python."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        usable = os.cpu_count()
    return {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def package_version(*dists: str) -> str | None:
    """The installed version of the first of the distributions `dists` found, else None (one
    package ships under several names: opencv-python-headless, opencv-python, ...)."""
    from importlib import metadata  # ~15 ms to import: only when asked

    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def package_versions(packages: Mapping[str, Iterable[str]] | Iterable[str]) -> dict[str, str]:
    """{name: version} of the installed ones among `packages`: distribution names, or a mapping
    of a name to the distributions it may be installed as."""
    if not isinstance(packages, Mapping):
        packages = {name: (name,) for name in packages}
    return {name: v for name, dists in packages.items() if (v := package_version(*dists))}


def module_version(module: str, dist: str) -> str:
    """An imported (or importable) module's `__version__`, else its distribution's metadata
    version, else '?'."""
    version = getattr(importlib.import_module(module), "__version__", None)
    return str(version) if version else package_version(dist) or "?"
