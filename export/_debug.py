"""Why int8 agreement dropped: the layers with the largest quantisation error.

Runs TFLite's `QuantizationDebugger`, which executes the float and the quantized model side by
side and measures, for every quantized tensor, the error the int8 version introduces.  Layers
are ranked by RMSE divided by the tensor's quantisation scale (the TFLite guide's measure): an
error of many quantisation steps means the int8 range or resolution does not fit that layer.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from typing import Any

import numpy as np

from edgecnn.runtime.contract import Contract

from ._formats import Options
from ._tflite import make_converter, representative_dataset

TOP_LAYERS = 5
_DEBUG_IMAGES = 64


def int8_layer_errors(
    model: Any,
    contract: Contract,
    *,
    calib_inputs: np.ndarray,
    debug_inputs: np.ndarray,
    per_channel: bool = True,
    top: int = TOP_LAYERS,
) -> list[dict[str, Any]]:
    """The `top` tensors with the largest quantisation error, worst first."""
    import tensorflow as tf

    options = Options(calib_inputs=calib_inputs, int8_io="float", per_channel=per_channel)
    converter = make_converter(model, contract, "tflite-int8", options)
    with warnings.catch_warnings():
        # the debugger runs TF's own (deprecated) interpreter internally; nothing to act on
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter,
            debug_dataset=representative_dataset(debug_inputs[:_DEBUG_IMAGES]),
        )
        debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    rows = []
    for row in csv.DictReader(io.StringIO(dump.getvalue())):
        scale = _float(row.get("scale"))
        mse = _float(row.get("mean_squared_error"))
        if scale is None or mse is None or scale <= 0:
            continue
        rows.append(
            {
                "op": row.get("op_name", ""),
                "tensor": row.get("tensor_name", ""),
                "rmse_per_scale": math.sqrt(mse) / scale,
                "rmse": math.sqrt(mse),
                "max_abs_error": _float(row.get("max_abs_error")),
                "scale": scale,
            }
        )
    rows.sort(key=lambda r: r["rmse_per_scale"], reverse=True)
    return rows[:top]


def _float(value: str | None) -> float | None:
    try:
        out = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return out if out is None or math.isfinite(out) else None


def format_layers(layers: list[dict[str, Any]]) -> str:
    lines = ["  largest int8 error (RMSE in quantisation steps):"]
    for r in layers:
        lines.append(f"    {r['rmse_per_scale']:7.2f}  {r['op']:<18} {r['tensor'].split(';')[0]}")
    return "\n".join(lines)


def onnx_int8_layer_errors(
    float_model: bytes,
    qdq_model: bytes,
    *,
    debug_inputs: np.ndarray,
    top: int = TOP_LAYERS,
) -> list[dict[str, Any]]:
    """The `top` activations of the QDQ model furthest from the float model's, worst first.

    ONNX Runtime's `qdq_loss_debug` runs both models with every activation exposed; the error
    is the signal-to-quantisation-noise ratio (dB, lower is worse) between the float
    activation and its quantized-then-dequantized counterpart.
    """
    import tempfile
    from pathlib import Path

    from onnxruntime.quantization import qdq_loss_debug as qdq

    from ._onnx_int8 import calibration_reader

    inputs = debug_inputs[:_DEBUG_IMAGES]
    with tempfile.TemporaryDirectory(prefix="edgecnn-onnx-debug-") as tmp:
        acts = {}
        for name, data in (("float", float_model), ("qdq", qdq_model)):
            src, aug = Path(tmp) / f"{name}.onnx", Path(tmp) / f"{name}_aug.onnx"
            src.write_bytes(data)
            qdq.modify_model_output_intermediate_tensors(str(src), str(aug))
            acts[name] = qdq.collect_activations(
                str(aug), calibration_reader(inputs), execution_providers=["CPUExecutionProvider"]
            )
    matched = qdq.create_activation_matching(acts["qdq"], acts["float"])
    rows = []
    for tensor, match in matched.items():
        if not match.get("float") or not match.get("post_qdq"):
            continue  # renamed or fused on the way: no float counterpart to compare with
        sqnr = qdq.compute_signal_to_quantization_noice_ratio(match["float"], match["post_qdq"])
        rows.append({"tensor": tensor, "sqnr_db": float(sqnr)})
    rows.sort(key=lambda r: r["sqnr_db"])
    return rows[:top]


def format_onnx_layers(layers: list[dict[str, Any]]) -> str:
    lines = ["  largest int8 error (signal-to-quantisation-noise, dB, lower is worse):"]
    lines += [f"    {r['sqnr_db']:7.1f}  {r['tensor']}" for r in layers]
    return "\n".join(lines)
