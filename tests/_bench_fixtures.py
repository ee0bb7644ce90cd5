"""A tiny run directory with every artifact kind, built without the train/export stages.

bench and profile tests need real `.keras`, fp32/int8 `.tflite` and `.onnx` files carrying
edgecnn metadata; building them here (a 32x32 model, a few seconds of conversion) keeps those
tests independent of the other stages' progress.  Used by tests/test_bench.py,
tests/test_profile.py and tests/test_demo.py.
"""

from __future__ import annotations

import io
import json
import os
import warnings
import zipfile
from pathlib import Path

import cv2
import numpy as np

LABELS = ("cat", "dog")
SIZE = 32


def _contract_json(data_dir: Path) -> str:
    from edgecnn.runtime.contract import Contract

    c = Contract(
        labels=LABELS, height=SIZE, width=SIZE, info={"arch": "tiny", "data_dir": str(data_dir)}
    )
    return c.to_json()


def make_images(root: Path, per_class: int = 6) -> Path:
    """Class folders of small PNGs whose class is visible (bright vs dark), so a model can agree."""
    rng = np.random.default_rng(0)
    for i, name in enumerate(LABELS):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            base = 60 + 120 * i
            img = np.clip(base + rng.normal(0, 30, (40, 48, 3)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(folder / f"{name}_{j}.png"), img)
    return root


def _append_zip(path: Path, members: dict[str, str]) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    with open(path, "ab") as f:
        f.write(buf.getvalue())


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


def _tflite(model, *, int8: bool) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(1)

        def rep():
            for _ in range(8):
                yield [rng.uniform(0, 255, (1, SIZE, SIZE, 3)).astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "statistics for quantized inputs": expected
        return conv.convert()


def _onnx(model, path: Path, contract_json: str) -> None:
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, SIZE, SIZE, 3), tf.float32, name="image"),)

    @tf.function(input_signature=spec)
    def fn(image):
        return {"probs": model(image, training=False)}

    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=17)
    for key, value in (("edgecnn", contract_json), ("labels", "\n".join(LABELS))):
        p = proto.metadata_props.add()
        p.key, p.value = key, value
    path.write_bytes(proto.SerializeToString())


def make_run(root: Path) -> Path:
    """RUN/model.keras + edgecnn.json + labels.txt and RUN/export/{fp32,int8 tflite, onnx}."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    data = make_images(root / "data")
    run = root / "run"
    export = run / "export"
    export.mkdir(parents=True)
    contract_json = _contract_json(data)
    model = _build_keras()
    (run / "edgecnn.json").write_text(contract_json)
    (run / "labels.txt").write_text("\n".join(LABELS) + "\n")
    model.save(run / "model.keras")
    with zipfile.ZipFile(run / "model.keras", "a") as zf:
        zf.writestr("edgecnn.json", contract_json)
    meta = {"edgecnn.json": contract_json, "labels.txt": "\n".join(LABELS) + "\n"}
    for name, int8 in (("model_fp32.tflite", False), ("model_int8.tflite", True)):
        (export / name).write_bytes(_tflite(model, int8=int8))
        _append_zip(export / name, meta)
    _onnx(model, export / "model.onnx", contract_json)
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
    import tensorflow as tf

    model = keras.models.load_model(run / "model.keras", compile=False)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    rng = np.random.default_rng(2)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: (
        [rng.uniform(0, 255, (1, SIZE, SIZE, 3)).astype(np.float32)] for _ in range(4)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out.write_bytes(conv.convert())
    return out
