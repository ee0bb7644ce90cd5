"""Small model files for the runtime tests, made with TensorFlow in the test process only.

A tiny Keras CNN (Rescaling inside, softmax out) trained for a few steps on colour images that
are easy to tell apart (red / green / blue), then written by the exporter's own code
(`_artifacts`): fp32 and full-int8 `.tflite` (int8 and uint8 io), fp32 and QDQ int8 `.onnx`,
each with edgecnn's metadata, plus bare files without it.  The runtime code under test never
imports any of this.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from _artifacts import (
    colour_images,
    contract,
    keras_file,
    onnx_int8_model,
    onnx_model,
    tflite,
    write_colour_images,
)

from edgecnn.runtime.contract import Contract

LABELS = ("blue", "green", "red")  # sorted, like the folder order `edgecnn train` uses
SIZE = 32


def synthetic_images(
    n_per_class: int, *, seed: int = 0, size: int = SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 images of LABELS and their class indices (`_artifacts.colour_images`)."""
    return colour_images(LABELS, n_per_class, size=size, seed=seed)


def write_dataset(root: Path, n_per_class: int, *, seed: int = 1) -> Path:
    """A folder-per-class dataset of PNGs."""
    return write_colour_images(root, LABELS, n_per_class, size=SIZE, seed=seed)


def fixture_contract(labels=LABELS, size: int = SIZE) -> Contract:
    return contract(labels, size, arch="fixture")


def contract_json(labels=LABELS, size: int = SIZE) -> str:
    """The fixture contract's own JSON with `labels` put in unchecked, so that hostile-file
    tests can write label lists the product refuses."""
    fields = fixture_contract(size=size).to_dict()
    fields["labels"] = list(labels)
    return json.dumps(fields, indent=2)


def build_keras_model(seed: int = 0):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy")
    x_train, y_train = synthetic_images(40, seed=seed + 10)
    model.fit(x_train.astype("float32"), y_train, epochs=6, batch_size=20, verbose=0)
    return model


def _calibration() -> np.ndarray:
    return synthetic_images(10, seed=99)[0].astype(np.float32)


def build_artifacts(root: Path) -> dict[str, Path]:
    """Every artifact kind the runtime accepts, in `root`."""
    root.mkdir(parents=True, exist_ok=True)
    model = build_keras_model()
    c = fixture_contract()
    calib = _calibration()

    def write(name: str, data: bytes, folder: Path = root) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    float_onnx = onnx_model(model, c)
    out = {
        "keras": keras_file(model, c, root / "model.keras"),
        "tflite": write("model_fp32.tflite", tflite(model, c)),
        "tflite_int8": write("model_int8.tflite", tflite(model, c, "tflite-int8", calib=calib)),
        "tflite_uint8": write(
            "model_int8_uint8io.tflite",
            tflite(model, c, "tflite-int8", calib=calib, int8_io="uint8"),
        ),
        "onnx": write("model.onnx", float_onnx.SerializeToString()),
        "onnx_int8": write(
            "model_int8.onnx", onnx_int8_model(float_onnx, c, calib).SerializeToString()
        ),
    }
    bare = root / "bare"
    bare.mkdir(exist_ok=True)
    out["tflite_bare"] = write("plain.tflite", tflite(model, c, metadata=False), bare)
    out["onnx_bare"] = write(
        "plain.onnx", onnx_model(model, c, metadata=False).SerializeToString(), bare
    )
    return out


_BUILT: dict[str, dict[str, Path]] = {}


def artifacts_once(tmp_path_factory) -> dict[str, Path]:
    """`build_artifacts` once per test process (shared by every runtime test module), plus a
    small labelled dataset under key "data"."""
    if "main" not in _BUILT:
        root = tmp_path_factory.mktemp("runtime_artifacts")
        arts = build_artifacts(root)
        arts["data"] = write_dataset(root / "data", 6)
        _BUILT["main"] = arts
    return _BUILT["main"]


if __name__ == "__main__":  # python tests/_runtime_fixtures.py OUT_DIR  (manual experiments)
    import sys

    arts = build_artifacts(Path(sys.argv[1]))
    write_dataset(Path(sys.argv[1]) / "data", 10)
    for k, v in arts.items():
        print(k, v, v.stat().st_size)
