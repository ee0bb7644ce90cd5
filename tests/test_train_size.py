"""`--train-size`: train at a lower resolution than the model runs at (fully convolutional nets)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _train_fixtures import FAST, train_refuses

from edgecnn import train
from edgecnn.cli import main
from edgecnn.synthetic import generate_split

pytest.importorskip("keras")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("size")
    return generate_split(
        root / "data", classes=2, train_per_class=10, val_per_class=4, size=64, seed=0
    )


def test_training_size_defaults_to_the_input_size():
    from edgecnn.models import resolve_train_size

    assert resolve_train_size("edge", 96) == 96
    assert resolve_train_size("edge", 96, 80) == 80
    assert resolve_train_size("seed", 64, 64) == 64  # Flatten + Dense: one size only


def test_prepare_decodes_training_photos_at_the_training_size_only(photos):
    from edgecnn.data import prepare

    train_dir, val_dir = photos
    splits = prepare(train_dir, img_size=48, val_dir=val_dir, train_size=40, progress=False)
    assert splits.train.pixels.shape[1:] == (40, 40, 3)
    assert splits.val.pixels.shape[1:] == (48, 48, 3)
    assert (splits.contract.height, splits.contract.width) == (48, 48)  # what the model runs at


def test_edge_trains_at_40_px_and_saves_a_48_px_model(photos, tmp_path):
    import keras

    train_dir, val_dir = photos
    options = {**FAST, "arch": "edge", "img_size": 48, "train_size": 40, "epochs": 2}
    run = train(train_dir, val_dir=val_dir, out=tmp_path / "run", **options)
    info = json.loads((run.path / "edgecnn.json").read_text())
    assert (info["height"], info["width"], info["info"]["train_size"]) == (48, 48, 40)
    model = keras.models.load_model(run.model_path)
    assert model.input_shape == (None, 48, 48, 3)
    assert model.get_layer("edge").input_shape == (None, 48, 48, 3)
    assert len(run.history) == 2
    # the report scores the saved 48 px model on validation photos decoded at 48 px
    from edgecnn.data import prepare

    val = prepare(train_dir, img_size=48, val_dir=val_dir, progress=False).val
    probs = model.predict(val.pixels.astype(np.float32), verbose=0)
    accuracy = float(np.mean(probs.argmax(axis=1) == val.targets))
    assert run.metrics["val_accuracy"] == pytest.approx(accuracy)


def test_the_cli_passes_the_training_size_and_the_run_records_it(photos, tmp_path):
    train_dir, val_dir = photos
    out = tmp_path / "run"
    argv = ["--arch", "edge", "--img-size", "40", "--train-size", "32", "--epochs", "1"]
    assert main(["train", str(train_dir), "--val-dir", str(val_dir), "--out", str(out),
                 "--quiet", *argv]) == 0  # fmt: skip
    info = json.loads((out / "edgecnn.json").read_text())
    assert (info["height"], info["info"]["train_size"]) == (40, 32)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--arch", "seed", "--img-size", "32", "--train-size", "24"], "trains at its input size"),
        (["--arch", "edge", "--img-size", "48", "--train-size", "64"], "between 32 and"),
        (["--arch", "edge", "--img-size", "48", "--train-size", "16"], "between 32 and"),
    ],
)
def test_bad_train_sizes_exit_2_with_one_line_and_write_nothing(
    photos, tmp_path, capsys, argv, expected
):
    train_dir, _ = photos
    train_refuses(capsys, train_dir, tmp_path / "run", argv, expected)
