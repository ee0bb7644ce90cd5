"""The one interface of the format modules, and which module builds which format.

Every format module (`_tflite`, `_onnx`, `_onnx_int8`) has the same entry point:

    build(fmt: str, source: Source, options: Options) -> Converted

which returns the finished file (metadata included) and what export.json says about it.  The
export job calls `convert(fmt, ...)`; nothing else knows which module builds which format.
What a format is (file name, scheme, gate) is in `edgecnn.runtime.artifacts`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecnn.runtime.contract import Contract

# format -> the module (in this package) whose `build` makes it
CONVERTERS: dict[str, str] = {
    "tflite-fp32": "_tflite",
    "tflite-fp16": "_tflite",
    "tflite-drq": "_tflite",
    "tflite-int8": "_tflite",
    "onnx": "_onnx",
    "onnx-int8": "_onnx_int8",
}


@dataclass(frozen=True)
class Options:
    """How to build one file; the int8 fields matter to the calibrated formats only."""

    calib_inputs: np.ndarray | None = None  # float32 0..255 pixels, as the model takes them
    int8_io: str = "uint8"  # input/output dtype of the full-integer TFLite file
    per_channel: bool = True  # weight scales per output channel (else one per tensor)


@dataclass(frozen=True)
class Source:
    """What every converter starts from: the Keras model and its contract, a few check inputs
    (float32) to run a converted file once, and the float ONNX file shared by both ONNX
    formats (converted once per export, on first use)."""

    model: Any
    contract: Contract
    check_inputs: np.ndarray
    float_onnx: Callable[[], bytes]


@dataclass(frozen=True)
class Converted:
    """A finished file and what export.json records about it (scheme, input, output, ...)."""

    data: bytes
    info: dict[str, Any] = field(default_factory=dict)


def convert(fmt: str, source: Source, options: Options) -> Converted:
    """Build `fmt` with the module registered for it."""
    module = importlib.import_module(f".{CONVERTERS[fmt]}", __package__)
    return module.build(fmt, source, options)
