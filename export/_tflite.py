"""TFLite conversion: fp32, fp16, dynamic-range (drq) and full-integer int8.

Each scheme is named for what it really is.  `tflite-drq` stores int8 weights but computes in
float; only `tflite-int8` is full integer: built with `TFLITE_BUILTINS_INT8` alone, so the
converter fails rather than leave an op in float, and the result is checked op by op.
Calibration is fed exactly what the model takes: raw 0..255 float32 pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from edgecnn.runtime.contract import Contract
from edgecnn.runtime.errors import InputError

from ._graph import inference_function, variables_holder

SCHEMES = {
    "tflite-fp32": "float32",
    "tflite-fp16": "float16 weights, float32 compute",
    "tflite-drq": "dynamic range: int8 weights, float32 activations",
    "tflite-int8": "full integer: int8 weights and activations (TFLITE_BUILTINS_INT8 only)",
}
INT8_IO = ("int8", "uint8", "float")

_TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 9: "int8"}
_QUANTIZE_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})


def make_converter(
    model: Any,
    contract: Contract,
    fmt: str,
    *,
    calib_inputs: np.ndarray | None = None,
    int8_io: str = "uint8",
    per_channel: bool = True,
) -> Any:
    """A configured `tf.lite.TFLiteConverter` for one of SCHEMES (also used by the debugger)."""
    import tensorflow as tf

    fn = inference_function(model, contract)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [fn.get_concrete_function()], variables_holder(model)
    )
    if fmt == "tflite-fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif fmt == "tflite-drq":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif fmt == "tflite-int8":
        if calib_inputs is None:
            raise ValueError("tflite-int8 needs calibration inputs")
        io_type = {"int8": tf.int8, "uint8": tf.uint8, "float": tf.float32}[int8_io]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset(calib_inputs)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
        # per-tensor weight scales: TF has no public switch, this is the documented private one
        converter._experimental_disable_per_channel = not per_channel
    elif fmt != "tflite-fp32":
        raise ValueError(f"not a TFLite format: {fmt}")
    return converter


def representative_dataset(calib_inputs: np.ndarray):
    """One image at a time, float32 0..255 exactly as the model takes it."""

    def gen() -> Iterator[list[np.ndarray]]:
        for i in range(len(calib_inputs)):
            yield [calib_inputs[i : i + 1].astype(np.float32, copy=False)]

    return gen


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

    converter = make_converter(
        model, contract, fmt, calib_inputs=calib_inputs, int8_io=int8_io, per_channel=per_channel
    )
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


def describe(flatbuffer: bytes) -> dict[str, Any]:
    """Input/output dtype and quantisation, op count, and ops that still compute in float."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    graph = model.Subgraphs(0)
    op_names = {
        value: name
        for name, value in vars(schema.BuiltinOperator).items()
        if isinstance(value, int)
    }
    float_ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        ins = [op.Inputs(j) for j in range(op.InputsLength()) if op.Inputs(j) >= 0]
        if name not in _QUANTIZE_OPS and any(graph.Tensors(t).Type() == 0 for t in ins):
            float_ops.append(name)
    return {
        "input": _tensor_info(graph.Tensors(graph.Inputs(0))),
        "output": _tensor_info(graph.Tensors(graph.Outputs(0))),
        "ops": graph.OperatorsLength(),
        "float_ops": sorted(set(float_ops)),
    }


def _tensor_info(tensor: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": tensor.Name().decode("utf-8"),
        "dtype": _TYPE_NAMES.get(tensor.Type(), str(tensor.Type())),
        "shape": [int(v) for v in tensor.ShapeSignatureAsNumpy()]
        if tensor.ShapeSignatureLength()
        else [int(v) for v in tensor.ShapeAsNumpy()],
    }
    q = tensor.Quantization()
    if q is not None and q.ScaleLength():
        info["scale"] = float(q.Scale(0))
        info["zero_point"] = int(q.ZeroPoint(0))
    return info
