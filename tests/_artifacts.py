"""Model files for the tests, written by the product's own code, and the images they classify.

Every fixture module builds its `.tflite`, `.onnx` and `model.keras` files here, through the
exporter's converters (`export/_tflite.convert`, `_onnx.convert`, `_onnx_int8.convert`), its
metadata writer (`export/_metadata`: TFLite Metadata plus the appended zip with absolute
offsets, ONNX `metadata_props`) and training's `model.keras` writer, with the contract from
`Contract` itself: the tests read exactly the layout the product writes.  A test that needs a
hostile or unusual layout builds it itself and says so.

The images are colour classes (the class colour dominates, plus noise and a random patch): a
tiny CNN learns them in a few epochs, confidently enough that int8 agreement means something.
`edgecnn.synthetic`'s shapes are made to need a real model and longer training than a test
can spend.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgecnn.runtime.contract import Contract

CHANNEL = {"red": 0, "green": 1, "blue": 2}  # RGB channel that dominates each colour class


def contract(labels: Sequence[str], size: int, **info: Any) -> Contract:
    """The contract of a `size` x `size` RGB model of `labels` (edgecnn's defaults otherwise)."""
    return Contract(labels=tuple(labels), height=size, width=size, info=info)


def colour_images(
    labels: Sequence[str], per_class: int, *, size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 images, class indices), class by class: each image is its class's colour
    (a label from CHANNEL, else channel index % 3) over a dark random colour, with Gaussian
    noise and an 8x8 patch of a random colour."""
    rng = np.random.default_rng(seed)
    images, targets = [], []
    for k, label in enumerate(labels):
        for _ in range(per_class):
            rgb = rng.integers(20, 90, size=3)
            rgb[CHANNEL.get(label, k % 3)] = rng.integers(150, 256)
            img = np.clip(rgb + rng.normal(0, 18, (size, size, 3)), 0, 255).astype(np.uint8)
            x, y = rng.integers(0, size - 8, size=2)
            img[y : y + 8, x : x + 8] = rng.integers(0, 256, size=3)
            images.append(img)
            targets.append(k)
    return np.stack(images), np.asarray(targets)


def write_colour_images(
    root: Path, labels: Sequence[str], per_class: int, *, size: int, seed: int
) -> Path:
    """`colour_images` as a folder per class of PNGs `000.png`, `001.png`, ...; returns root."""
    images, targets = colour_images(labels, per_class, size=size, seed=seed)
    for k, label in enumerate(labels):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(images[targets == k]):
            cv2.imwrite(str(folder / f"{i:03d}.png"), img[:, :, ::-1])
    return root


def tflite(
    model: Any,
    contract: Contract,
    fmt: str = "tflite-fp32",
    *,
    calib: np.ndarray | None = None,
    int8_io: str = "int8",
    metadata: bool = True,
) -> bytes:
    """The `.tflite` bytes `edgecnn export` writes for `fmt` (calibrated on `calib`, float32
    0..255 pixels, for tflite-int8); `metadata=False`: the bare converter output."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from edgecnn.export import _metadata, _tflite
    from edgecnn.runtime.artifacts import by_name

    flatbuffer = _tflite.convert(model, contract, fmt, calib_inputs=calib, int8_io=int8_io)
    if not metadata:
        return flatbuffer
    return _metadata.add_tflite_metadata(flatbuffer, contract, description=by_name(fmt).scheme)


def onnx_model(model: Any, contract: Contract, *, metadata: bool = True) -> Any:
    """The float ONNX ModelProto `edgecnn export` writes (tf2onnx through its converter)."""
    from edgecnn.export import _metadata, _onnx

    proto, _notes = _onnx.convert(model, contract)
    return _metadata.add_onnx_metadata(proto, contract) if metadata else proto


def onnx_int8_model(float_model: Any, contract: Contract, calib: np.ndarray) -> Any:
    """The QDQ int8 ONNX ModelProto `edgecnn export` writes from a float one."""
    from edgecnn.export import _metadata, _onnx_int8

    proto = _onnx_int8.convert(float_model.SerializeToString(), calib)
    return _metadata.add_onnx_metadata(proto, contract)


def keras_file(model: Any, contract: Contract, path: Path) -> Path:
    """model.keras as `edgecnn train` saves it: the Keras file with edgecnn.json and
    labels.txt added as zip entries."""
    from edgecnn.training import _save_inference_model

    _save_inference_model(model, path, contract)
    return path
