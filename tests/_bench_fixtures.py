"""A tiny run directory with every artifact kind, without training or the full export.

bench and profile tests need real `.keras`, fp32/int8 `.tflite` and `.onnx` files carrying
edgecnn metadata; a 32x32 model with fixed weights, written by the exporter's own converters
and metadata writer (`_artifacts`), takes a few seconds instead of a training run and an
export with its verification.  Used by tests/test_bench.py, tests/test_profile.py,
tests/test_demo.py and tests/test_device_install.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
from _artifacts import contract, keras_file, onnx_model, tflite

LABELS = ("cat", "dog")
SIZE = 32


def make_images(root: Path, per_class: int = 6) -> Path:
    """Class folders of small PNGs whose class is their brightness (dark cat, bright dog): the
    fixed-weight model below tells them apart by brightness, not colour."""
    rng = np.random.default_rng(0)
    for i, name in enumerate(LABELS):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            base = 60 + 120 * i
            img = np.clip(base + rng.normal(0, 30, (40, 48, 3)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(folder / f"{name}_{j}.png"), img)
    return root


def _build_keras():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)
    # Make brightness decide the class, so predictions are stable and meaningful.
    w, b = model.get_layer("head").get_weights()
    w[:] = 0
    w[:, 1] = 5.0
    w[:, 0] = -5.0
    model.get_layer("head").set_weights([w, b])
    return model


def _calibration(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32)


def make_run(root: Path) -> Path:
    """RUN/model.keras + edgecnn.json + labels.txt and RUN/export/{fp32,int8 tflite, onnx}."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    data = make_images(root / "data")
    run = root / "run"
    export = run / "export"
    export.mkdir(parents=True)
    c = contract(LABELS, SIZE, arch="tiny", data_dir=str(data))
    model = _build_keras()
    (run / "edgecnn.json").write_text(c.to_json())
    (run / "labels.txt").write_text("\n".join(LABELS) + "\n")
    keras_file(model, c, run / "model.keras")
    (export / "model_fp32.tflite").write_bytes(tflite(model, c))
    int8 = tflite(model, c, "tflite-int8", calib=_calibration(8, seed=1))
    (export / "model_int8.tflite").write_bytes(int8)
    (export / "model.onnx").write_bytes(onnx_model(model, c).SerializeToString())
    (export / "export.json").write_text(json.dumps({"artifacts": {}}))
    return run


_RUNS: dict[Path, Path] = {}


def cached_run(base: Path) -> Path:
    """make_run once per pytest session (bench and profile tests share one run)."""
    if base not in _RUNS:
        root = base / "bench_fixture"
        root.mkdir()
        _RUNS[base] = make_run(root)
    return _RUNS[base]


def make_float_io_int8(run: Path, out: Path) -> Path:
    """An int8 TFLite file with float input/output: QUANTIZE/DEQUANTIZE ops stay in float."""
    import keras

    from edgecnn.runtime.contract import Contract

    model = keras.models.load_model(run / "model.keras", compile=False)
    c = Contract.from_json((run / "edgecnn.json").read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(tflite(model, c, "tflite-int8", calib=_calibration(4, seed=2), int8_io="float"))
    return out
