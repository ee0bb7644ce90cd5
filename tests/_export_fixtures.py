"""A tiny trained run directory for the export tests, built by hand and shared per session.

Three colour classes with noise and a distractor patch: easy enough that a 3-epoch model is
confident (so int8 agreement is meaningful, not a coin toss between near-equal scores), small
enough (32x32, 40 images a class) to train in seconds.  All formats are exported once per
session; `exported_run()` memoises that across test modules.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from _artifacts import write_colour_images

CLASSES = ("red", "green", "blue")
SIZE = 32
_CACHE: dict[str, object] = {}


def make_images(root: Path, *, per_class: int, seed: int) -> Path:
    """Folder-per-class PNGs of CLASSES (`_artifacts.write_colour_images`)."""
    return write_colour_images(root, CLASSES, per_class, size=SIZE, seed=seed)


def build_run(root: Path) -> Path:
    """Train a Rescaling+conv+softmax model for 3 epochs and save a run directory."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from edgecnn.runtime.contract import Contract
    from edgecnn.runtime.dataset import list_dataset, load_pixels

    train_dir = make_images(root / "data" / "train", per_class=40, seed=1)
    val_dir = make_images(root / "data" / "val", per_class=20, seed=2)
    contract = Contract(
        labels=CLASSES,
        height=SIZE,
        width=SIZE,
        info={"arch": "test", "seed": 0, "data_dir": str(train_dir), "val_dir": str(val_dir)},
    )
    train = load_pixels(list_dataset(train_dir, classes=CLASSES), contract, progress=False)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(len(CLASSES), activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(train.pixels.astype(np.float32), train.targets, epochs=3, batch_size=16, verbose=0)
    return save_run(root / "run", model, contract)


def save_run(run: Path, model, contract) -> Path:
    """A run directory as `edgecnn train` leaves it: model.keras, edgecnn.json, labels.txt."""
    run.mkdir()
    model.save(run / "model.keras")
    (run / "edgecnn.json").write_text(contract.to_json(), encoding="utf-8")
    (run / "labels.txt").write_text("\n".join(contract.labels) + "\n", encoding="utf-8")
    return run


def trained_run(tmp_path_factory) -> Path:
    if "run" not in _CACHE:
        _CACHE["run"] = build_run(tmp_path_factory.mktemp("export_run"))
    return _CACHE["run"]  # type: ignore[return-value]


def copy_run(src: Path, dst: Path) -> Path:
    """A private copy of a trained run (model + contract), without any export folder."""
    dst.mkdir()
    for name in ("model.keras", "edgecnn.json", "labels.txt"):
        shutil.copy2(src / name, dst / name)
    return dst


def exported_run(tmp_path_factory) -> tuple[Path, dict]:
    """(run dir, manifest) with every format exported once per session."""
    if "exported" not in _CACHE:
        from edgecnn.export import export

        run = trained_run(tmp_path_factory)
        manifest = export(run, calib_count=60, progress=False)
        _CACHE["exported"] = (run, manifest)
    return _CACHE["exported"]  # type: ignore[return-value]
