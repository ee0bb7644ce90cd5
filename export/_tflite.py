"""TFLite conversion: fp32, fp16, dynamic-range (drq) and full-integer int8.

Each scheme is named for what it really is.  `tflite-drq` stores int8 weights but computes in
float; only `tflite-int8` is full integer: built with `TFLITE_BUILTINS_INT8` alone, so the
converter fails rather than leave an op in float, and the result is checked op by op.
Calibration is fed exactly what the model takes: raw 0..255 float32 pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import numpy as np

from edgecnn.runtime.artifacts import by_name
from edgecnn.runtime.contract import Contract
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.tflite_graph import describe

from ._formats import Converted, Options, Source
from ._graph import inference_function, variables_holder
from ._space_to_depth import space_to_depth_convs


def make_converter(model: Any, contract: Contract, fmt: str, options: Options) -> Any:
    """A configured `tf.lite.TFLiteConverter` for one TFLite format (also used by the debugger)."""
    import tensorflow as tf

    fn = inference_function(model, contract)
    # int8 only: XNNPACK's int8 kernels waste most of a conv on 3 channels (_space_to_depth)
    with space_to_depth_convs(model) if fmt == "tflite-int8" else nullcontext():
        concrete = fn.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], variables_holder(model))
    if fmt == "tflite-fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif fmt == "tflite-drq":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif fmt == "tflite-int8":
        if options.calib_inputs is None:
            raise ValueError("tflite-int8 needs calibration inputs")
        io_type = {"int8": tf.int8, "uint8": tf.uint8, "float": tf.float32}[options.int8_io]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset(options.calib_inputs)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
        # per-tensor weight scales: TF has no public switch, this is the documented private one
        converter._experimental_disable_per_channel = not options.per_channel
    elif fmt != "tflite-fp32":
        raise ValueError(f"not a TFLite format: {fmt}")
    return converter


def representative_dataset(calib_inputs: np.ndarray):
    """One image at a time, float32 0..255 exactly as the model takes it."""

    def gen() -> Iterator[list[np.ndarray]]:
        for i in range(len(calib_inputs)):
            yield [calib_inputs[i : i + 1].astype(np.float32, copy=False)]

    return gen


def build(fmt: str, source: Source, options: Options) -> Converted:
    """The TFLite file of `fmt` with its metadata, and its input/output and ops for export.json."""
    from . import _metadata

    flatbuffer = convert(
        source.model,
        source.contract,
        fmt,
        calib_inputs=options.calib_inputs,
        int8_io=options.int8_io,
        per_channel=options.per_channel,
    )
    scheme = by_name(fmt).scheme
    info = {"scheme": scheme, **describe(flatbuffer)}
    if by_name(fmt).int8:
        info["int8_io"] = options.int8_io
    data = _metadata.add_tflite_metadata(flatbuffer, source.contract, description=scheme)
    return Converted(data, info)


def convert(
    model: Any,
    contract: Contract,
    fmt: str,
    *,
    calib_inputs: np.ndarray | None = None,
    int8_io: str = "uint8",
    per_channel: bool = True,
) -> bytes:
    """The converted flatbuffer (no metadata yet); a full-integer model is checked to be one."""
    from tensorflow.lite.python.convert_phase import ConverterError

    options = Options(calib_inputs=calib_inputs, int8_io=int8_io, per_channel=per_channel)
    converter = make_converter(model, contract, fmt, options)
    try:
        flatbuffer = bytes(converter.convert())
    except ConverterError as e:  # an op the format cannot hold (e.g. no int8 kernel)
        lines = [ln.strip() for ln in str(e).splitlines() if "error" in ln.lower()]
        reason = (lines or [str(e).strip() or type(e).__name__])[0]
        raise InputError(
            f"{fmt}: the TFLite converter cannot convert this model: {reason}"
        ) from None
    if fmt == "tflite-int8":
        float_ops = describe(flatbuffer)["float_ops"]
        if float_ops:
            raise RuntimeError(f"tflite-int8 left ops in float: {', '.join(float_ops)}")
    return flatbuffer
