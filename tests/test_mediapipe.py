"""A real phone-side client: MediaPipe Tasks' ImageClassifier loads the exported .tflite files
and names the classes from their metadata, agreeing with edgecnn's runtime.

MediaPipe (PyPI `mediapipe==1.2.2`) pulls in opencv-contrib-python, which clashes with the
project's opencv-python-headless, so it usually lives in its own venv: point
EDGECNN_MEDIAPIPE_PYTHON at that interpreter.  The check runs in a subprocess either way.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _export_fixtures import CLASSES, copy_run, exported_run

from edgecnn.export import export

_SCRIPT = r"""
import json, sys
import mediapipe as mp
from mediapipe.tasks import python as mpt
from mediapipe.tasks.python import vision

model, *images = sys.argv[1:]
options = vision.ImageClassifierOptions(
    base_options=mpt.BaseOptions(model_asset_path=model), max_results=3)
try:
    classifier = vision.ImageClassifier.create_from_options(options)
except Exception as e:  # report, the test decides
    print(json.dumps({"error": str(e)}))
    sys.exit(0)
with classifier:
    out = []
    for path in images:
        result = classifier.classify(mp.Image.create_from_file(path))
        out.append([[c.category_name, c.score] for c in result.classifications[0].categories])
print(json.dumps({"results": out}))
"""


def _mediapipe_python() -> str | None:
    env = os.environ.get("EDGECNN_MEDIAPIPE_PYTHON")
    if env:
        return env if Path(env).is_file() else None
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        return None
    return sys.executable


PYTHON = _mediapipe_python()
pytestmark = pytest.mark.skipif(
    PYTHON is None,
    reason="mediapipe is not importable here; install mediapipe==1.2.2 in a separate venv "
    "and set EDGECNN_MEDIAPIPE_PYTHON=/path/to/that/venv/bin/python",
)


def _classify(model: Path, images: list[Path]) -> dict:
    proc = subprocess.run(
        [PYTHON, "-c", _SCRIPT, str(model), *map(str, images)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if proc.returncode != 0:
        _skip_without_system_library(proc.stderr)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    _skip_without_system_library(out.get("error", ""))
    return out


def _skip_without_system_library(error: str) -> None:
    """MediaPipe's wheels load system libraries, on import (libGL.so.1 for their OpenCV) and
    when a classifier is made (libEGL.so.1, libGLESv2.so.2): Debian's libgl1, libegl1 and
    libgles2.  Without them the client cannot run here at all."""
    missing = re.search(r"(\S+\.so[.\d]*): cannot open shared object file", error)
    if missing:
        pytest.skip(f"MediaPipe cannot start here: the system library {missing[1]} is missing")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return exported_run(tmp_path_factory)


@pytest.fixture(scope="module")
def int8_io_model(exported, tmp_path_factory):
    """The full-integer model exported with `--int8-io int8` (int8 input/output tensors)."""
    run = copy_run(exported[0], tmp_path_factory.mktemp("mp") / "run")
    export(run, formats="tflite-int8", int8_io="int8", calib_count=60, progress=False)
    return run / "export" / "model_int8.tflite"


def _images(manifest: dict) -> tuple[list[Path], list[str]]:
    root = Path(manifest["check"]["dir"])
    paths = [p for c in CLASSES for p in sorted((root / c).glob("*.png"))[:4]]
    return paths, [p.parent.name for p in paths]


def _runtime_top1(model: Path, images: list[Path]) -> list[str]:
    from edgecnn.runtime import load

    clf = load(model)
    return [clf.predict(p, top_k=1)[0][0] for p in images]


@pytest.mark.parametrize("name", ["model_fp32.tflite", "model_int8.tflite"])
def test_mediapipe_names_the_classes(exported, name):
    run, manifest = exported
    model = run / "export" / name
    images, truth = _images(manifest)
    out = _classify(model, images)
    assert "error" not in out, out
    top1 = [cats[0][0] for cats in out["results"]]
    assert set(top1) <= set(CLASSES)  # names from the metadata, not indices
    assert top1 == truth
    assert top1 == _runtime_top1(model, images)
    assert all(len(cats) == 3 for cats in out["results"])


def test_mediapipe_and_int8_input_tensors(exported, int8_io_model):
    """MediaPipe 1.2.2 accepts only uint8/float32 image inputs (why the default `--int8-io`
    is uint8); an `--int8-io int8` file is either refused with that reason or, in a later
    MediaPipe, must classify correctly."""
    run, manifest = exported
    images, truth = _images(manifest)
    out = _classify(int8_io_model, images)
    if "error" in out:
        assert "uint8/float32" in out["error"] and "INT8" in out["error"]
    else:
        assert [cats[0][0] for cats in out["results"]] == truth
