"""The environment probe: CPU model from /proc/cpuinfo, installed package versions."""

from __future__ import annotations

import platform
import sys
import types
from importlib import metadata

import numpy as np

from edgecnn.runtime import env


def test_cpu_model_from_cpuinfo(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338\n"
    )
    monkeypatch.setattr(env, "_CPUINFO", cpuinfo)
    assert env.cpu_model() == "Intel(R) Xeon(R) Gold 6338"
    cpuinfo.write_text(
        "processor\t: 0\nBogoMIPS\t: 108.00\nHardware\t: BCM2835\n"
    )  # older Pi kernel
    assert env.cpu_model() == "BCM2835"


def test_cpu_model_without_cpuinfo(tmp_path, monkeypatch):
    monkeypatch.setattr(env, "_CPUINFO", tmp_path / "missing")
    assert env.cpu_model() == (platform.processor() or platform.machine())


def test_machine_fields():
    m = env.machine()
    assert list(m) == ["cpu", "machine", "cores", "usable_cores", "os", "python"]
    assert 1 <= m["usable_cores"] <= m["cores"] and m["python"] == platform.python_version()


def test_package_versions_first_installed_name_wins():
    found = env.package_versions({"numpy": ("not-a-package-xyz", "numpy"), "gone": ("nope-xyz",)})
    assert found == {"numpy": metadata.version("numpy")} == {"numpy": np.__version__}
    assert env.package_versions(["numpy", "nope-xyz"]) == {"numpy": np.__version__}
    assert env.package_version("nope-xyz") is None


def test_module_version_falls_back_to_metadata(monkeypatch):
    monkeypatch.setitem(sys.modules, "versionless_xyz", types.ModuleType("versionless_xyz"))
    assert env.module_version("versionless_xyz", "numpy") == np.__version__
    assert env.module_version("versionless_xyz", "nope-xyz") == "?"
    assert env.module_version("numpy", "nope-xyz") == np.__version__
