"""The pure-Python parts of tools/pi_check.py (`make pi-check`): its pass criteria, reading
uv.lock for the device's wheels, and the files it lays out.  No emulator, no network."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))  # the check's modules live beside its script

import _pi_compare as compare  # noqa: E402
import _pi_model as model  # noqa: E402
import _pi_userland as userland  # noqa: E402
import _pi_wheels as wheels  # noqa: E402

# --- pass criteria ----------------------------------------------------------------------------


def predictions(rows: list[list[float]], labels=("cat", "dog"), folder="/c") -> compare.Predictions:
    images = tuple(f"{folder}/{i:03d}.jpg" for i in range(len(rows)))
    return compare.Predictions(images, tuple(labels), np.asarray(rows, dtype=np.float64))


def confident(n: int) -> list[list[float]]:
    """n images alternating cat/dog, each with a clear margin."""
    return [[0.9, 0.1] if i % 2 else [0.2, 0.8] for i in range(n)]


def test_raw_int8_must_be_bit_identical():
    x86 = np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32)
    assert compare.compare_raw(x86, x86.copy(), exact=True).ok
    off = x86.copy()
    off[1, 0] = np.nextafter(np.float32(0.5), np.float32(1))
    verdict = compare.compare_raw(x86, off, exact=True)
    assert not verdict.ok
    assert "1 of 2 images" in verdict.reason


def test_raw_float_within_tolerance():
    x86 = np.array([[0.25, 0.75]], dtype=np.float32)
    assert compare.compare_raw(x86, x86 + 9e-6, exact=False).ok
    verdict = compare.compare_raw(x86, x86 + 2e-5, exact=False)
    assert not verdict.ok
    assert "> 1e-05" in verdict.reason


def test_raw_shape_mismatch_fails():
    assert not compare.compare_raw(np.zeros((2, 2)), np.zeros((2, 3)), exact=False).ok


def test_end_to_end_identical_passes():
    rows = confident(100)
    verdict = compare.compare_end_to_end(predictions(rows), predictions(rows))
    assert verdict.ok
    assert verdict.figures.startswith("top-1 100/100,")


def test_end_to_end_allows_one_near_tie_in_a_hundred():
    x86 = confident(100)
    x86[7] = [0.52, 0.48]  # margin 0.04 on x86
    device = [row[:] for row in x86]
    device[7] = [0.49, 0.51]
    assert compare.compare_end_to_end(predictions(x86), predictions(device)).ok


def test_end_to_end_refuses_a_flip_where_x86_was_sure():
    x86 = confident(100)
    device = [row[:] for row in x86]
    device[3] = device[3][::-1]
    verdict = compare.compare_end_to_end(predictions(x86), predictions(device))
    assert not verdict.ok
    assert "/c/003.jpg" in verdict.reason


def test_end_to_end_refuses_more_near_ties_than_one_percent():
    x86 = confident(100)
    device = [row[:] for row in x86]
    for i in (1, 2):
        x86[i] = [0.51, 0.49]
        device[i] = [0.49, 0.51]
    verdict = compare.compare_end_to_end(predictions(x86), predictions(device))
    assert not verdict.ok
    assert "at most 1 allowed" in verdict.reason


def test_end_to_end_needs_the_same_images_and_labels():
    rows = confident(4)
    assert not compare.compare_end_to_end(predictions(rows), predictions(rows[:3])).ok
    other = predictions(rows, labels=("dog", "cat"))
    assert not compare.compare_end_to_end(predictions(rows), other).ok


def test_allowed_flips_is_one_percent_rounded_down():
    assert [compare.allowed_flips(n) for n in (24, 99, 100, 250)] == [0, 0, 1, 2]


def test_eval_moves_by_at_most_the_flips():
    x86 = {"count": 100, "accuracy": 0.75}
    assert compare.compare_eval(x86, {"count": 100, "accuracy": 0.75}, flips=0).ok
    assert compare.compare_eval(x86, {"count": 100, "accuracy": 0.76}, flips=1).ok
    assert not compare.compare_eval(x86, {"count": 100, "accuracy": 0.76}, flips=0).ok
    assert not compare.compare_eval(x86, {"count": 99, "accuracy": 0.75}, flips=5).ok


def test_live_labels_must_match_predict_on_the_frames():
    frames = predictions(confident(4), folder="/frames")
    labels = frames.top1_labels()
    assert compare.compare_live(labels, frames).ok
    assert not compare.compare_live(labels[:3], frames).ok
    swapped = ["cat" if label == "dog" else "dog" for label in labels]
    assert not compare.compare_live(swapped, frames).ok


def test_parse_predictions_orders_scores_by_label_and_splits_folders():
    doc = {
        "labels": ["cat", "dog"],
        "results": [
            {"image": "/c/a.jpg", "predictions": [{"label": "dog", "score": 0.7},
                                                  {"label": "cat", "score": 0.3}]},
            {"image": "/f/0000.png", "predictions": [{"label": "cat", "score": 0.6},
                                                     {"label": "dog", "score": 0.4}]},
        ],
    }  # fmt: skip
    p = compare.parse_predictions(doc)
    np.testing.assert_allclose(p.probs, [[0.3, 0.7], [0.6, 0.4]])
    assert p.top1_labels() == ["dog", "cat"]
    np.testing.assert_allclose(p.margins, [0.4, 0.2])
    assert p.under("/f").images == ("/f/0000.png",)
    assert p.under("/c/").top1_labels() == ["dog"]
    assert p.only({"/f/0000.png", "/elsewhere.png"}).top1_labels() == ["cat"]


def test_top1_changes_counts_flips_of_comparable_predictions():
    x86 = predictions(confident(4))
    device = predictions([row[::-1] if i == 2 else row for i, row in enumerate(confident(4))])
    assert compare.top1_changes(x86, device) == 1
    assert compare.top1_changes(x86, predictions(confident(3))) == 0


def test_jsonl_labels_skip_non_json_lines():
    text = "\n".join(
        [
            json.dumps({"index": 0, "label": "cat"}),
            "noise",
            json.dumps({"index": 1, "label": "dog"}),
        ]
    )
    assert compare.jsonl_labels(text) == ["cat", "dog"]


# --- uv.lock -> the device's wheels -------------------------------------------------------------

TOY_LOCK = {
    "package": [
        {
            "name": "edgecnn",
            "version": "0.1.0",
            "dependencies": [
                {"name": "numpy", "version": "1.0", "marker": "python_full_version < '3.12'"},
                {"name": "numpy", "version": "2.0", "marker": "python_full_version >= '3.12'"},
            ],
            "optional-dependencies": {
                "tflite": [{"name": "litert"}],
                "onnx": [{"name": "ort"}],
                "train": [{"name": "tensorflow"}],
            },
        },
        {"name": "numpy", "version": "1.0", "wheels": [{"hash": "sha256:n1"}],
         "resolution-markers": ["python_full_version < '3.12'"]},
        {"name": "numpy", "version": "2.0", "wheels": [{"hash": "sha256:n2"}],
         "resolution-markers": ["python_full_version >= '3.12'"]},
        {"name": "litert", "version": "2.3", "wheels": [{"hash": "sha256:l"}],
         "dependencies": [{"name": "numpy"},
                          {"name": "colorama", "marker": "sys_platform == 'win32'"}]},
        {"name": "ort", "version": "1.3", "wheels": [{"hash": "sha256:o"}],
         "dependencies": [{"name": "proto", "extra": ["fast"]}]},
        {"name": "proto", "version": "7", "wheels": [{"hash": "sha256:p"}],
         "optional-dependencies": {"fast": [{"name": "upb"}]}},
        {"name": "upb", "version": "1", "wheels": [{"hash": "sha256:u"}]},
        {"name": "colorama", "version": "0.4", "wheels": [{"hash": "sha256:c"}]},
        {"name": "tensorflow", "version": "2.21", "wheels": [{"hash": "sha256:t"}]},
    ]
}  # fmt: skip


def test_lock_pins_follow_markers_versions_and_extras():
    pins = {p.name: p for p in wheels.lock_pins(TOY_LOCK, python="3.11.2")}
    assert sorted(pins) == ["litert", "numpy", "ort", "proto", "upb"]  # no tf, win32, edgecnn
    assert pins["numpy"].version == "1.0"
    assert pins["numpy"].hashes == ("sha256:n1",)
    pins13 = {p.name: p for p in wheels.lock_pins(TOY_LOCK, python="3.13.5")}
    assert pins13["numpy"].version == "2.0"  # `litert`'s bare numpy: the entry fitting 3.13


def test_lock_pins_refuse_an_unknown_extra():
    with pytest.raises(wheels.LockError, match="no extra 'gpu'"):
        wheels.lock_pins(TOY_LOCK, python="3.11.2", extras=("gpu",))


def test_the_real_lock_pins_the_device_runtime_for_both_pythons():
    lock = wheels.read_toml(REPO / "uv.lock")
    for python in ("3.11.2", "3.13.5"):
        pins = {p.name: p for p in wheels.lock_pins(lock, python=python)}
        assert {"numpy", "opencv-python-headless", "ai-edge-litert", "onnxruntime"} <= set(pins)
        assert not {"edgecnn", "tensorflow", "keras", "tf2onnx"} & set(pins)
        assert all(p.hashes for p in pins.values())


def test_pin_requirement_and_wheel_prefix():
    pin = wheels.Pin("opencv-python-headless", "5.1.0.95", ("sha256:a", "sha256:b"))
    assert pin.requirement == "opencv-python-headless==5.1.0.95 --hash=sha256:a --hash=sha256:b"
    assert pin.wheel_prefix == "opencv_python_headless-5.1.0.95-"


def test_cached_wheels_found_by_name_and_version(tmp_path):
    (tmp_path / "numpy-2.4.6-cp311-cp311-manylinux_2_27_aarch64.whl").touch()
    (tmp_path / "numpy-2.4.5-cp311-cp311-manylinux_2_27_aarch64.whl").touch()
    pins = [wheels.Pin("numpy", "2.4.6", ("x",)), wheels.Pin("ml-dtypes", "0.7.0", ("y",))]
    found = wheels.cached_wheels(pins, tmp_path)
    assert list(found) == ["numpy"]
    assert found["numpy"].name.startswith("numpy-2.4.6-")


def test_platform_tags_newest_glibc_first():
    tags = wheels.platform_tags((2, 36))
    assert tags[0] == "manylinux_2_36_aarch64"
    assert tags[-2:] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]
    assert len(tags) == 36 - 17 + 2
    with pytest.raises(ValueError):
        wheels.platform_tags((2, 12))


def test_install_source_lays_out_the_packages_like_pip(tmp_path):
    dest = wheels.install_source(REPO, tmp_path)
    assert (dest / "edgecnn" / "cli.py").exists()
    assert (dest / "edgecnn" / "runtime" / "classifier.py").exists()
    assert (dest / "edgecnn" / "runtime" / "backends" / "tflite.py").exists()
    assert (dest / "edgecnn" / "export" / "__init__.py").exists()
    assert not (dest / "runtime").exists()


# --- the emulated Pi's files --------------------------------------------------------------------


def test_cpuinfo_reads_like_a_pi():
    text = userland.cpuinfo(userland.CPUS["cortex-a76"], 2)
    assert text.count("processor\t:") == 2
    assert "CPU part\t: 0xd0b" in text
    assert "asimddp" in text
    assert "Model\t\t: Raspberry Pi 5" in text
    pi4 = userland.cpuinfo(userland.CPUS["cortex-a72"], 4)
    assert "CPU part\t: 0xd08" in pi4 and "asimddp" not in pi4


def test_merged_usr_links_only_what_is_missing(tmp_path):
    for name in ("bin", "lib", "sbin"):
        (tmp_path / "usr" / name).mkdir(parents=True)
    (tmp_path / "bin").mkdir()  # a suite that ships /bin itself keeps it
    userland._merge_usr(tmp_path)
    assert not (tmp_path / "bin").is_symlink()
    assert (tmp_path / "lib").is_symlink()
    assert (tmp_path / "lib").readlink() == Path("usr/lib")


def test_glibc_version_from_the_libc_banner(tmp_path):
    libc = tmp_path / "usr" / "lib" / "aarch64-linux-gnu" / "libc.so.6"
    libc.parent.mkdir(parents=True)
    libc.write_bytes(b"\0GNU C Library (Debian GLIBC 2.41-12) stable release version 2.41.\0")
    assert userland.glibc_version(tmp_path) == (2, 41)


def test_eval_subset_links_the_first_photos_of_each_class(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / "check" / cls).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "check" / cls / f"{cls}.{i}.jpg").write_bytes(b"x")
    subset = model.subset(tmp_path / "check", tmp_path / "eval", per_class=2)
    names = sorted(str(p.relative_to(subset)) for p in subset.rglob("*.jpg"))
    assert names == ["cat/cat.0.jpg", "cat/cat.1.jpg", "dog/dog.0.jpg", "dog/dog.1.jpg"]
    assert (subset / "cat" / "cat.0.jpg").is_symlink()


def test_missing_host_tools_without_root_say_how(monkeypatch):
    monkeypatch.setattr(
        userland.shutil, "which", lambda tool: "/usr/bin/apt-get" if tool == "apt-get" else None
    )
    monkeypatch.setattr(userland.os, "geteuid", lambda: 1000)
    with pytest.raises(userland.SetupError, match="run as root, or first `sudo apt-get install"):
        userland.ensure_host_tools()
    monkeypatch.setattr(userland.shutil, "which", lambda tool: None)
    with pytest.raises(userland.SetupError, match="apt-get is not here"):
        userland.ensure_host_tools()


def test_wheels_are_fetched_by_the_pip_named_in_the_environment(tmp_path, monkeypatch):
    """`make test`'s venv (made by uv) has no pip: `make pi-check` names another Python's."""
    monkeypatch.delenv("EDGECNN_PIP_PYTHON", raising=False)
    assert wheels.pip_python() == sys.executable
    no_pip = tmp_path / "python-without-pip"
    no_pip.write_text("#!/bin/sh\nexit 1\n")
    no_pip.chmod(0o755)
    monkeypatch.setenv("EDGECNN_PIP_PYTHON", str(no_pip))
    assert wheels.pip_python() == str(no_pip)
    with pytest.raises(RuntimeError, match="has no pip; set EDGECNN_PIP_PYTHON"):
        wheels._pip(["--version"], log=tmp_path / "pip.log", what="downloading 1 wheel")
