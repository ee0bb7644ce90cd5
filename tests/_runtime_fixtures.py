"""Small model files for the runtime tests, made with TensorFlow in the test process only.

A tiny Keras CNN (Rescaling inside, softmax out) trained for a few steps on synthetic colour
images that are easy to tell apart (red / green / blue-ish), then converted to fp32 and full-int8
`.tflite` (int8 io) and fp32 `.onnx` (tf2onnx `from_function`), with edgecnn metadata embedded
the same way `edgecnn.export` does: a zip appended to the `.tflite`, `metadata_props` in the
`.onnx`.  The runtime code under test never imports any of this.
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

LABELS = ("blue", "green", "red")  # sorted, like the folder order `edgecnn train` uses
CHANNEL = {"blue": 2, "green": 1, "red": 0}  # dominant RGB channel of each class
SIZE = 32


def synthetic_images(
    n_per_class: int, *, seed: int = 0, size: int = SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 images whose dominant colour is the class, with noise and a random square."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for cls in range(len(LABELS)):
        for _ in range(n_per_class):
            img = rng.integers(0, 90, size=(size, size, 3)).astype(np.uint8)
            img[:, :, CHANNEL[LABELS[cls]]] = rng.integers(150, 256, size=(size, size))
            y0, x0 = rng.integers(0, size // 2, size=2)
            img[y0 : y0 + 8, x0 : x0 + 8] = rng.integers(0, 256, size=3)
            xs.append(img)
            ys.append(cls)
    return np.stack(xs), np.asarray(ys)


def write_dataset(root: Path, n_per_class: int, *, seed: int = 1) -> Path:
    """A folder-per-class dataset of PNGs (BGR on disk, as cv2 writes)."""
    x, y = synthetic_images(n_per_class, seed=seed)
    for i, (img, cls) in enumerate(zip(x, y)):
        folder = root / LABELS[cls]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return root


def contract_json(labels=LABELS, size: int = SIZE) -> str:
    return json.dumps(
        {
            "schema": "edgecnn/1",
            "labels": list(labels),
            "height": size,
            "width": size,
            "channels": 3,
            "color": "RGB",
            "resize": "stretch",
            "interpolation": "area",
            "mean": [0.0, 0.0, 0.0],
            "std": [1.0, 1.0, 1.0],
            "info": {"arch": "fixture"},
        }
    )


def _zip_bytes(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return buf.getvalue()


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


def save_keras(model, path: Path, *, with_contract: bool = True) -> Path:
    model.save(path)
    if with_contract:
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr("edgecnn.json", contract_json())
    return path


def _concrete(model):
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None, SIZE, SIZE, 3), tf.float32, name="image")])
    def serve(x):
        return {"probs": model(x, training=False)}

    return serve


def tflite_bytes(model, *, int8: bool, io: str = "int8") -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        calib, _ = synthetic_images(10, seed=99)

        def rep():
            for img in calib:
                yield [img[None].astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = getattr(tf, io)
        conv.inference_output_type = getattr(tf, io)
    with warnings.catch_warnings():  # the converter's own note about int8 io statistics
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return conv.convert()


def write_tflite(data: bytes, path: Path, *, with_contract: bool = True) -> Path:
    if with_contract:
        labels = "\n".join(LABELS) + "\n"
        data = data + _zip_bytes({"edgecnn.json": contract_json(), "labels.txt": labels})
    path.write_bytes(data)
    return path


def onnx_model(model):
    import tensorflow as tf
    import tf2onnx

    fn = _concrete(model)
    spec = (tf.TensorSpec((None, SIZE, SIZE, 3), tf.float32, name="image"),)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=17)
    return proto


def write_onnx(proto, path: Path, *, with_contract: bool = True) -> Path:
    import onnx

    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    if with_contract:
        for key, value in (("edgecnn", contract_json()), ("labels", "\n".join(LABELS))):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path


def write_onnx_int8(fp32_path: Path, path: Path) -> Path:
    """A QDQ int8 ONNX made the way `edgecnn.export` makes model_int8.onnx: ONNX Runtime's
    pre-processing, then static quantisation with uint8 activations and per-channel int8
    weights in 7 bits (the combination OpenCV 5's new engine refuses and its classic engine
    runs)."""
    import tempfile

    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calib, _ = synthetic_images(10, seed=98)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{"image": img[None].astype(np.float32)} for img in calib])

        def get_next(self):
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prep.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
        )
    return path


def build_artifacts(root: Path) -> dict[str, Path]:
    """Every artifact kind the runtime accepts, in `root`."""
    root.mkdir(parents=True, exist_ok=True)
    model = build_keras_model()
    out = {
        "keras": save_keras(model, root / "model.keras"),
        "tflite": write_tflite(tflite_bytes(model, int8=False), root / "model_fp32.tflite"),
        "tflite_int8": write_tflite(tflite_bytes(model, int8=True), root / "model_int8.tflite"),
        "tflite_uint8": write_tflite(
            tflite_bytes(model, int8=True, io="uint8"), root / "model_int8_uint8io.tflite"
        ),
    }
    proto = onnx_model(model)
    out["onnx"] = write_onnx(proto, root / "model.onnx")
    out["onnx_int8"] = write_onnx_int8(out["onnx"], root / "model_int8.onnx")
    bare = root / "bare"
    bare.mkdir(exist_ok=True)
    out["tflite_bare"] = write_tflite(
        tflite_bytes(model, int8=False), bare / "plain.tflite", with_contract=False
    )
    out["onnx_bare"] = write_onnx(proto, bare / "plain.onnx", with_contract=False)
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
