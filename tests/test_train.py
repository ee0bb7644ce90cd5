"""Training end to end on tiny synthetic data: run directory, reproducibility, resume, strategies."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _train_fixtures import FAST, interrupt_at, tiny_split

from edgecnn.runtime.contract import Contract
from edgecnn.runtime.formatting import duration
from edgecnn.runtime.metadata import read_contract

keras = pytest.importorskip("keras")

from edgecnn import train, training  # noqa: E402
from edgecnn.training import (  # noqa: E402
    HISTORY_FIELDS,
    TrainingInterrupted,
    TrainOptions,
    data_name,
    earliest_stop,
    kept_epoch_text,
    lr_at,
    time_left,
    validated_epochs,
)

RUN_FILES = {
    "model.keras",
    "labels.txt",
    "edgecnn.json",
    "history.csv",
    "training.png",
    "metrics.json",
    "confusion.png",
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_split(tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    train_dir, val_dir = data
    out = tmp_path_factory.mktemp("runs") / "r"
    return train(train_dir, val_dir=val_dir, out=out, **{**FAST, "epochs": 2})


def _weights(path):
    return keras.models.load_model(path, compile=False).get_weights()


def test_run_directory_is_complete(run):
    assert {p.name for p in run.path.iterdir()} == RUN_FILES  # checkpoint/ is gone
    assert (run.path / "labels.txt").read_text().split() == ["circle", "square", "triangle"]
    for png in ("training.png", "confusion.png"):
        assert (run.path / png).read_bytes()[:8] == PNG_MAGIC


def test_contract_is_in_the_run_and_inside_model_keras(run):
    on_disk = Contract.from_json((run.path / "edgecnn.json").read_text())
    with zipfile.ZipFile(run.model_path) as zf:
        inside = Contract.from_json(zf.read("edgecnn.json"))
    assert on_disk == inside == run.contract == read_contract(run.model_path)
    assert inside.input_shape == (32, 32, 3)
    info = inside.info
    assert info["arch"] == "seed" and info["seed"] == 0 and info["epochs"] == 2
    assert len(info["data_fingerprint"]) == 16
    assert {"tensorflow", "keras", "edgecnn"} <= set(info["versions"])


def test_model_keras_is_an_inference_model_on_raw_pixels(run):
    model = keras.models.load_model(run.model_path)
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 3)
    names = [type(layer).__name__ for layer in model.layers]
    assert not [n for n in names if n.startswith("Random")], names
    assert names[0] == "Rescaling"
    # Whatever precision trained it (bfloat16 on CPUs that have it), the saved model is float32.
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert run.contract.info["training_precision"] in ("float32", "mixed_bfloat16")
    probs = model.predict(np.full((2, 32, 32, 3), 200.0, np.float32), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_history_csv_and_metrics_json(run):
    with open(run.path / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == HISTORY_FIELDS
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(float(r["epoch_seconds"]) > 0 and float(r["learning_rate"]) > 0 for r in rows)
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert 0.0 <= metrics["val_accuracy"] <= 1.0
    assert set(metrics["per_class"]) == {"circle", "square", "triangle"}
    assert {"precision", "recall"} <= set(metrics["per_class"]["circle"])
    assert np.asarray(metrics["confusion_matrix"]).sum() == 18
    assert metrics["class_counts"]["train"] == {"circle": 16, "square": 16, "triangle": 16}
    assert metrics["skipped"] == [] and metrics["class_weights"] is None


def test_same_seed_same_weights_other_seed_differs(data, tmp_path):
    train_dir, val_dir = data
    a = train(train_dir, val_dir=val_dir, out=tmp_path / "a", **FAST)
    options = TrainOptions(val_dir=val_dir, out=tmp_path / "b", **FAST)
    b = train(train_dir, options)  # the options as one object: the same run
    c = train(train_dir, options, out=tmp_path / "c", seed=1)  # keywords override it
    assert a.history[0]["loss"] == b.history[0]["loss"]
    assert all(np.array_equal(x, y) for x, y in zip(_weights(a.model_path), _weights(b.model_path)))
    assert not np.array_equal(_weights(a.model_path)[0], _weights(c.model_path)[0])


def test_cli_flags_build_the_train_options_with_their_defaults():
    import dataclasses

    from edgecnn.cli import build_parser
    from edgecnn.commands.train import options

    parser = build_parser()
    assert options(parser.parse_args(["train", "photos"])) == TrainOptions()
    argv = ["train", "photos", "--batch", "8", "--no-flip-tta", "--strategy", "mirrored", "--quiet"]
    given = options(parser.parse_args(argv))
    assert given == TrainOptions(batch=8, flip_tta=False, strategy="mirrored", progress=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        given.batch = 4  # type: ignore[misc]


def test_ctrl_c_saves_and_resume_continues_exactly(data, run, tmp_path):
    train_dir, val_dir = data
    out = tmp_path / "r"
    opts = {**FAST, "epochs": 2}
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(train_dir, val_dir=val_dir, out=out, callbacks=[interrupt_at(1)], **opts)
    assert (out / "checkpoint" / "last.keras").exists()
    assert len((out / "history.csv").read_text().splitlines()) == 2  # header + epoch 1
    assert not (out / "model.keras").exists()
    resumed = train(train_dir, val_dir=val_dir, out=out, resume=True, **opts)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in run.history]
    assert all(
        np.array_equal(x, y) for x, y in zip(_weights(run.model_path), _weights(resumed.model_path))
    )
    assert {p.name for p in out.iterdir()} == RUN_FILES


def test_interrupt_in_first_epoch_leaves_nothing(data, tmp_path):
    train_dir, val_dir = data
    out = tmp_path / "r"
    with pytest.raises(TrainingInterrupted, match="nothing saved"):
        train(train_dir, val_dir=val_dir, out=out, callbacks=[interrupt_at(0)], **FAST)
    assert not out.exists()


def test_interrupt_before_the_first_epoch_starts_leaves_nothing(data, tmp_path, monkeypatch):
    """Ctrl-C while the input pipeline is built, after the checkpoint folder was made: a
    folder holding only an empty checkpoint/ could neither be resumed nor trained into."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train_dataset", interrupted)
    train_dir, val_dir = data
    out = tmp_path / "r"
    with pytest.raises(TrainingInterrupted, match="nothing saved"):
        train(train_dir, val_dir=val_dir, out=out, **FAST)
    assert not out.exists()


def test_a_disk_too_full_for_the_first_checkpoint_is_one_error_and_nothing_left(
    data, tmp_path, monkeypatch, capsys
):
    """Refused before HDF5 writes (it cannot close a file it ran out of space in, and its
    clean-up at exit then crashed the process); a run folder that was there stays."""
    free = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(training.shutil, "disk_usage", lambda p: free._replace(free=64 << 10))
    train_dir, val_dir = data
    out = tmp_path / "r"
    argv = ["train", str(train_dir), "--val-dir", str(val_dir), "--out", str(out), "--quiet"]
    argv += ["--arch", "seed", "--img-size", "32", "--epochs", "1"]
    import edgecnn.cli

    assert edgecnn.cli.main(argv) == 2
    err = capsys.readouterr().err
    assert (
        err == f"edgecnn train: error: {out}/checkpoint/best.weights.h5: No space left on device\n"
    )
    assert not out.exists()
    out.mkdir()
    assert edgecnn.cli.main(argv) == 2
    assert list(out.iterdir()) == []


def test_cli_exits_130_on_ctrl_c(data, tmp_path, monkeypatch, capsys):
    import edgecnn.cli

    def interrupted(*args, **kwargs):
        raise TrainingInterrupted("interrupted; epoch 1/2 is saved", tmp_path)

    monkeypatch.setattr(sys.modules["edgecnn.training"], "train", interrupted)
    assert edgecnn.cli.main(["train", str(data[0]), "--out", str(tmp_path / "x")]) == 130
    assert capsys.readouterr().err.strip() == "edgecnn train: interrupted; epoch 1/2 is saved"


def test_val_split_and_class_weights_for_imbalanced_folders(tmp_path):
    train_dir, _ = tiny_split(tmp_path / "d", classes=2, train=20, val=1)
    for p in sorted((train_dir / "square").iterdir())[8:]:
        p.unlink()  # 20 circles vs 8 squares
    run = train(train_dir, val_split=0.25, out=tmp_path / "r", **FAST)
    m = run.metrics
    assert m["class_counts"] == {
        "train": {"circle": 15, "square": 6},
        "val": {"circle": 5, "square": 2},
    }
    assert m["class_weights"][1] > 1.0 > m["class_weights"][0]  # the rarer class weighs more
    assert run.contract.info["val_split"] == 0.25 and run.contract.info["val_dir"] is None


def test_edge_and_mobilenet_architectures_build_and_load_local_weights(tmp_path):
    from edgecnn.models import ARCHITECTURES, build_model

    assert {"seed", "edge", "mobilenetv3small"} <= set(ARCHITECTURES)
    assert build_model("seed", 2).input_shape == (None, 64, 64, 3)
    edge = build_model("edge", 4, 48)
    assert edge.output_shape == (None, 4)
    kinds = {type(layer).__name__ for layer in edge.layers}
    assert {"DepthwiseConv2D", "BatchNormalization", "ReLU", "GlobalAveragePooling2D"} <= kinds
    edge.save_weights(tmp_path / "e.weights.h5")
    again = build_model("edge", 4, 48, weights=tmp_path / "e.weights.h5")
    assert all(np.array_equal(a, b) for a, b in zip(edge.get_weights(), again.get_weights()))
    mnv3 = build_model("mobilenetv3small", 3, 64)
    assert mnv3.input_shape == (None, 64, 64, 3) and mnv3.output_shape == (None, 3)


def test_learning_rate_schedule_warms_up_then_decays():
    lrs = [lr_at(e, base=1e-3, epochs=10) for e in range(10)]
    assert lrs[0] < lrs[1] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:])) and lrs[-1] == pytest.approx(1e-5)


def test_early_stopping_waits_for_the_last_quarter_of_the_schedule(data, tmp_path):
    class Plateau(keras.callbacks.Callback):
        """Validation that never improves after epoch 1 (runs before the trainer's checkpoint)."""

        def on_epoch_end(self, epoch, logs=None):
            logs.update(val_accuracy=0.5, val_loss=1.0)

    train_dir, val_dir = data
    options = {**FAST, "epochs": 12, "patience": 2, "callbacks": [Plateau()]}
    run = train(train_dir, val_dir=val_dir, out=tmp_path / "r", **options)
    assert [earliest_stop(n) for n in (1, 4, 8, 12, 80)] == [1, 3, 6, 9, 60]
    # patience 2 would be used up at epoch 3, but only the last quarter counts: the kept epoch
    # is the window's first (9, as good as any), and epochs 10 and 11 bring no gain
    assert len(run.history) == 11 and run.metrics["epochs_run"] == 11
    assert run.metrics["stopped_early"] and run.metrics["best_epoch"] == 9


def test_the_kept_epoch_is_the_best_inside_the_early_stopping_window(data, tmp_path):
    class PeakAtTwo(keras.callbacks.Callback):
        """Validation best at epoch 2, before the window (epochs 6-8 of 8), then lower."""

        def on_epoch_end(self, epoch, logs=None):
            scores = {1: 0.6, 2: 0.9, 6: 0.7, 7: 0.8, 8: 0.75}
            logs.update(val_accuracy=scores.get(epoch + 1, 0.5), val_loss=1.0)

    train_dir, val_dir = data
    options = {**FAST, "epochs": 8, "patience": 5, "callbacks": [PeakAtTwo()]}
    run = train(train_dir, val_dir=val_dir, out=tmp_path / "r", **options)
    assert run.metrics["best_epoch"] == 7
    assert [r["epoch"] for r in run.history] == list(range(1, 9))  # no early stop: patience 5


def test_the_end_of_run_line_says_the_kept_epoch_comes_from_the_window():
    assert kept_epoch_text(7, 8) == "kept epoch 7, the best validated from epoch 6 on"
    assert kept_epoch_text(98, 100) == "kept epoch 98, the best validated from epoch 75 on"
    assert kept_epoch_text(1, 1) == "best epoch 1"  # the window is the whole run


def test_the_run_opens_with_its_photos_net_and_schedule(tmp_path, capsys):
    train_dir, _ = tiny_split(tmp_path / "d", classes=2, train=5, val=1)
    out = tmp_path / "r"
    train(train_dir, out=out, **{**FAST, "epochs": 2, "progress": True})
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == [
        "edgecnn train: 8 training photos of 2 classes (circle 4, square 4), "
        "2 validation photos (a seeded 20% split)",
        f"edgecnn train: seed at 32x32 px, up to 2 epochs, into {out}; "
        "with 2 validation photos, one photo is 50.0 points of accuracy",
    ]


def test_long_runs_validate_every_fifth_epoch_before_the_early_stopping_window(
    data, tmp_path, monkeypatch
):
    assert validated_epochs(8) == list(range(1, 9))  # short runs: every epoch
    assert validated_epochs(14) == [5, 10, 11, 12, 13, 14]
    assert validated_epochs(60) == [*range(5, 45, 5), *range(45, 61)]
    train_dir, val_dir = data
    options = {**FAST, "epochs": 14, "patience": 20}
    sparse = train(train_dir, val_dir=val_dir, out=tmp_path / "sparse", **options)
    with open(sparse.path / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows if r["val_accuracy"]] == [5, 10, 11, 12, 13, 14]
    assert all(r["loss"] and r["accuracy"] for r in rows)  # every epoch still trains and logs
    assert sparse.metrics["best_epoch"] in (11, 12, 13, 14)  # kept inside the window
    monkeypatch.setattr(training, "VAL_EVERY", 1)
    dense = train(train_dir, val_dir=val_dir, out=tmp_path / "dense", **options)
    assert not any(np.isnan(r["val_accuracy"]) for r in dense.history)
    # skipping validation changes nothing in training
    assert [r["loss"] for r in dense.history] == [r["loss"] for r in sparse.history]


def test_time_left_counts_validated_and_plain_epochs_at_their_own_pace():
    # 100 epochs: epoch 1 traces (9 s, ignored), others 5 s, 6 s with validation
    history = [
        {"epoch": e, "epoch_seconds": 9.0 if e == 1 else 5.0 + (e in validated_epochs(100))}
        for e in range(1, 11)
    ]
    # epochs 11-100: 38 validated (15, 20, ... 70 and 75-100) and 52 plain
    assert time_left(history, 100) == pytest.approx(38 * 6.0 + 52 * 5.0)
    assert time_left(history[:1], 100) is None  # only the tracing epoch so far
    short = [{"epoch": e, "epoch_seconds": t} for e, t in enumerate([9.0, 5.0, 6.0, 5.0, 7.0], 1)]
    assert time_left(short, 12) == pytest.approx(7 * 5.5)  # 12 epochs: every one validated
    assert time_left(history, 10) == 0
    assert [duration(t) for t in (4.4, 89, 91, 725)] == ["4 s", "89 s", "2 min", "12 min"]


def test_long_runs_print_the_time_so_far_and_an_estimate_of_the_rest(data, tmp_path, capsys):
    train_dir, val_dir = data
    options = {**FAST, "epochs": 12, "patience": 20, "progress": True}
    run = train(train_dir, val_dir=val_dir, out=tmp_path / "r", **options)
    lines = [line for line in capsys.readouterr().err.splitlines() if "so far" in line]
    assert len(lines) == 1, lines  # after epoch 10 only, not after the last
    line = re.fullmatch(
        r"epoch 10/12: (\d+) s so far, about (\d+) s left \(less if it stops early\)", lines[0]
    )
    assert line, lines[0]
    so_far = sum(r["epoch_seconds"] for r in run.history[:10])
    left = time_left(run.history[:10], 12)  # epochs 11 and 12 at the pace of the first ten
    assert abs(int(line[1]) - so_far) <= 1 and abs(int(line[2]) - left) <= 1


def test_default_run_name_uses_the_dataset_name(tmp_path):
    assert data_name(tmp_path / "cats-vs-dogs" / "train") == "cats-vs-dogs"
    assert data_name(tmp_path / "flowers") == "flowers"


_MIRRORED = textwrap.dedent(
    """
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    from edgecnn import train
    run = train(sys.argv[1], val_dir=sys.argv[2], out=sys.argv[3], strategy="mirrored",
                arch="seed", img_size=32, epochs=1, batch=16, progress=False)
    print(len(tf.config.list_logical_devices("CPU")), run.metrics["strategy"])
    """
)


def test_mirrored_strategy_over_two_logical_cpus(data, tmp_path):
    out = tmp_path / "m"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-c", _MIRRORED, str(data[0]), str(data[1]), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == ["2", "mirrored"]
    assert {p.name for p in Path(out).iterdir()} == RUN_FILES
    model = keras.models.load_model(out / "model.keras")
    assert model.output_shape == (None, 3)


def test_resume_without_epochs_continues_to_the_runs_own_count(data, tmp_path):
    """`--resume` with no `--epochs` finishes the interrupted run's epochs (and LR schedule),
    not the default architecture's epoch count."""
    train_dir, val_dir = data
    out = tmp_path / "r"
    opts = {**FAST, "epochs": 2}
    with pytest.raises(TrainingInterrupted):
        train(train_dir, val_dir=val_dir, out=out, callbacks=[interrupt_at(1)], **opts)
    resumed = train(
        train_dir,
        val_dir=val_dir,
        out=out,
        resume=True,
        **{k: v for k, v in opts.items() if k != "epochs"},
    )
    assert [int(r["epoch"]) for r in resumed.history] == [1, 2]
