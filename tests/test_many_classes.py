"""Twelve classes with a few photos each, one class of only 20, through the whole pipeline:
`edgecnn train` with its defaults (stratified --val-split, balanced class weights, early
stopping), int8 export with its verification, eval, predict and the live `run` command.

The data: the eight generated shapes in colour plus four of them in grey (a CNN must tell
shape and colour apart), 30 photos a class at 32 px, and `ring` with only 20.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecnn.runtime.confusion import confused_pairs, format_pairs
from edgecnn.runtime.dataset import list_dataset
from edgecnn.runtime.errors import InputError
from edgecnn.synthetic import SHAPES, render

SIZE = 32
PER_CLASS = 30
SMALL, SMALL_COUNT = "ring", 20
GREY = ("circle", "square", "triangle", "star")
CLASSES = tuple(sorted((*SHAPES, *(f"{shape}_grey" for shape in GREY))))  # the labels' order
EPOCHS = 6
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def write_classes(root: Path, counts: dict[str, int], *, seed: int = 0) -> Path:
    """`root/<class>/<class>_NNNN.png` for every class in `counts`: a shape, grey if named so."""
    for ci, name in enumerate(counts):
        shape, grey = name.removesuffix("_grey"), name.endswith("_grey")
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(counts[name]):
            image = render(shape, size=SIZE, rng=np.random.default_rng([seed, ci, i]))
            if grey:
                image = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
            cv2.imwrite(str(folder / f"{name}_{i:04d}.png"), image)
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    counts = {name: SMALL_COUNT if name == SMALL else PER_CLASS for name in CLASSES}
    return write_classes(tmp_path_factory.mktemp("many") / "photos", counts)


@pytest.fixture(scope="module")
def trained(photos, tmp_path_factory):
    """The default recipe (`edge`) at 32 px for a few epochs; returns the run and its stderr."""
    from edgecnn.training import train

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        run = train(
            photos,
            val_split=0.2,
            img_size=SIZE,
            epochs=EPOCHS,
            out=tmp_path_factory.mktemp("runs") / "many",
            progress=True,
        )
    return run, err.getvalue()


@pytest.fixture(scope="module")
def int8_file(trained) -> Path:
    from edgecnn.export import export

    run, _ = trained
    manifest = export(run.path, formats=["tflite-int8"], progress=False)
    entry = manifest["artifacts"]["tflite-int8"]
    assert entry["passed"], entry
    return run.path / "export" / "model_int8.tflite"


def test_every_class_is_split_and_reported(trained):
    run, _ = trained
    m = run.metrics
    assert m["labels"] == list(CLASSES)
    # stratified: every class keeps a fifth for validation, the small class included
    expected_val = {name: 4 if name == SMALL else 6 for name in CLASSES}
    assert m["class_counts"]["val"] == expected_val
    assert m["class_counts"]["train"][SMALL] == 16
    assert all(m["per_class"][name]["support"] == n for name, n in expected_val.items())
    assert set(m["per_class"]) == set(CLASSES)
    # balanced class weights: the small class weighs more than the others
    weights = {CLASSES[int(i)]: w for i, w in m["class_weights"].items()}
    assert weights[SMALL] > max(w for name, w in weights.items() if name != SMALL)
    assert m["epochs_run"] == EPOCHS and len(run.history) == EPOCHS


def test_confused_pairs_match_the_confusion_matrix(trained):
    run, stderr = trained
    m = run.metrics
    cm = np.asarray(m["confusion_matrix"])
    pairs = m["confused_pairs"]
    assert pairs == confused_pairs(cm, CLASSES)  # what metrics.json holds is the function's
    assert 1 <= len(pairs) <= 5  # a six-epoch net confuses some of twelve classes
    index = {name: i for i, name in enumerate(CLASSES)}
    off = cm - np.diag(np.diag(cm))
    both = off + off.T
    for p in pairs:
        a, b = index[p["a"]], index[p["b"]]
        assert (p["a_as_b"], p["b_as_a"]) == (cm[a, b], cm[b, a])
        assert p["count"] == both[a, b] > 0 and p["a_as_b"] >= p["b_as_a"]
        assert p["a_share"] == pytest.approx(cm[a, b] / cm[a].sum(), abs=1e-4)
    counts = [p["count"] for p in pairs]
    assert counts == sorted(counts, reverse=True) and counts[0] == both.max()
    if len(pairs) < 5:  # fewer than five pairs only when no other pair was ever confused
        assert np.count_nonzero(np.triu(both)) == len(pairs)
    assert f"most confused: {format_pairs(pairs)}" in stderr.splitlines()
    on_disk = json.loads((run.path / "metrics.json").read_text())
    assert on_disk["confused_pairs"] == pairs


def test_int8_file_evaluates_every_class(trained, int8_file, photos):
    from edgecnn.runtime import evaluate, load

    report = evaluate(load(int8_file, threads=1), photos, progress=False)
    assert report["labels"] == list(CLASSES)
    assert report["per_class"][SMALL]["support"] == SMALL_COUNT
    assert all(report["per_class"][name]["support"] > 0 for name in CLASSES)
    assert report["count"] == PER_CLASS * (len(CLASSES) - 1) + SMALL_COUNT
    pairs = confused_pairs(report["confusion_matrix"], report["labels"])
    assert pairs and all(p["count"] > 0 for p in pairs)
    assert report["confused_pairs"] == pairs  # what `edgecnn eval` prints and writes to --json


def test_live_run_labels_match_predict(int8_file, photos, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in CLASSES:  # the first photo of every class, in name order
        first = sorted((photos / name).iterdir())[0]
        shutil.copy(first, folder / first.name)
    frames = len(CLASSES) - 2
    run = _edgecnn(
        "run", int8_file, "--source", folder, "--threads", "1", "--jsonl", "-",
        "--max-frames", str(frames),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    live = [json.loads(line)["label"] for line in run.stdout.splitlines()]
    predict = _edgecnn("predict", int8_file, folder, "--threads", "1", "--json")
    assert predict.returncode == 0, predict.stderr
    results = json.loads(predict.stdout)["results"]
    assert len(results) == len(CLASSES) and len(live) == frames
    assert live == [r["predictions"][0]["label"] for r in results][:frames]


def test_a_class_too_small_to_split_is_refused_in_one_line(tmp_path):
    root = write_classes(tmp_path / "photos", {"circle": 5, "square": 3, "star": 1})
    dataset = list_dataset(root)
    with pytest.raises(InputError, match=r"'star' has 1 image\(s\); --val-split needs at least 2"):
        dataset.stratified_split(0.2, seed=0)
    # three photos at 0.2 would round to no validation photo: one goes there all the same
    root = write_classes(tmp_path / "enough", {"circle": 5, "square": 3})
    train, val = list_dataset(root).stratified_split(0.2, seed=0)
    assert val.counts() == {"circle": 1, "square": 1}
    assert train.counts() == {"circle": 4, "square": 2}


def test_fewer_photos_than_a_batch_train(tmp_path):
    """Two classes of 10 photos (16 to train on, fewer than a batch of 32) train and report
    (on `seed`, the cheapest net: what is tested is the data side)."""
    from edgecnn.training import train

    root = write_classes(tmp_path / "photos", {"circle": 10, "square": 10})
    options = {"arch": "seed", "img_size": SIZE, "epochs": 2, "batch": 32, "progress": False}
    run = train(root, out=tmp_path / "run", **options)
    assert run.metrics["class_counts"]["val"] == {"circle": 2, "square": 2}
    assert len(run.history) == 2 and run.model_path.is_file()


def _edgecnn(*args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "edgecnn", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=ENV)
