"""End to end on a small sample of the real cats-vs-dogs photos in ../shared (skipped when absent):
JPEG photos of many sizes go through training, export verification and `edgecnn eval`, and the
float artifacts agree with the Keras model image by image."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

DATASET = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cats-vs-dogs"
pytestmark = pytest.mark.skipif(
    not (DATASET / "train").is_dir() or not (DATASET / "test").is_dir(),
    reason=f"the real-photo dataset is not at {DATASET} (it lives in ../shared beside the repo)",
)

PER_CLASS = 24


def _sample(split: str, root: Path) -> Path:
    """A folder of symlinks to the first PER_CLASS photos of each class (no copies)."""
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for photo in sorted((DATASET / split / cls).iterdir())[:PER_CLASS]:
            os.symlink(photo, root / cls / photo.name)
    return root


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    from edgecnn import train
    from edgecnn.export import export

    tmp = tmp_path_factory.mktemp("real")
    run = train(
        _sample("train", tmp / "train"),
        val_dir=_sample("test", tmp / "test"),
        arch="seed",
        img_size=32,
        epochs=2,
        out=tmp / "run",
        progress=False,
    )
    manifest = export(run.path, formats="tflite-fp32,onnx", calib_count=16, progress=False)
    return run, manifest


def test_training_on_real_photos_writes_the_run(real_run):
    run, _ = real_run
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics["skipped"] == []  # every real JPEG decoded
    assert 0.0 <= metrics["val_accuracy"] <= 1.0
    assert (run.path / "labels.txt").read_text().split() == ["cat", "dog"]


def test_float_exports_match_keras_on_real_photos(real_run):
    _, manifest = real_run
    for fmt in ("tflite-fp32", "onnx"):
        parity = manifest["artifacts"][fmt]["parity"]
        assert parity["images"] == 2 * PER_CLASS
        assert parity["agreement"] == 1.0
        assert parity["max_abs_diff"] <= 1e-4


def test_eval_on_real_photos_agrees_with_export(real_run, capsys):
    from edgecnn.cli import main

    run, manifest = real_run
    model = run.path / "export" / "model_fp32.tflite"
    out = run.path / "eval.json"
    assert main(["eval", str(model), str(manifest["check"]["dir"]), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["accuracy"] == pytest.approx(
        manifest["artifacts"]["tflite-fp32"]["parity"]["accuracy"]
    )
