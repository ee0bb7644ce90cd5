"""ONNX int8: ONNX Runtime static quantization in QDQ format, calibrated on the same pixels.

Activations uint8 (asymmetric), weights int8 (per channel by default): the combination ONNX Runtime runs
fastest on x86 and ARM CPUs.  The input and output stay float32, so the file takes the same
raw 0..255 pixels as `model.onnx`.

Weights use 7 of their 8 bits (`reduce_range`).  On x86 CPUs without AVX-512 VNNI, ONNX
Runtime's u8 x s8 kernels add pairs of products in 16 bits (VPMADDUBSW), which saturates when
both factors are near full scale (2 x 255 x 127 > 32767), and the file then answers differently
on those CPUs than on the machine that verified it.  Measured on an AVX2-only EPYC, on the
`edge` net trained with its whitened stem (1,600/400 split): 80.25% agreement with the float
model with 8-bit weights, 99.0% with 7-bit ones (and 98.75% with u8 weights).  7-bit weights
cannot saturate on any CPU, so the verified file behaves the same everywhere.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.runtime.artifacts import by_name

from ._formats import Converted, Options, Source
from ._graph import INPUT_NAME

_BATCH = 16


def calibration_reader(calib_inputs: np.ndarray) -> Any:
    """ONNX Runtime's calibration reader over `calib_inputs` (also used by the int8 debugger)."""
    from onnxruntime.quantization import CalibrationDataReader

    class PixelReader(CalibrationDataReader):
        """Feeds the calibration pixels in small batches, float32 0..255 as the model takes."""

        def __init__(self) -> None:
            self._start = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._start >= len(calib_inputs):
                return None
            batch = calib_inputs[self._start : self._start + _BATCH]
            self._start += _BATCH
            return {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}

        def rewind(self) -> None:
            self._start = 0

    return PixelReader()


def build(fmt: str, source: Source, options: Options) -> Converted:
    """The export's float ONNX file quantized on the calibration inputs, with metadata, checked
    in ONNX Runtime."""
    from . import _metadata, _onnx

    if options.calib_inputs is None:
        raise ValueError(f"{fmt} needs calibration inputs")
    proto = convert(source.float_onnx(), options.calib_inputs, per_channel=options.per_channel)
    data = _metadata.add_onnx_metadata(proto, source.contract).SerializeToString()
    _onnx.check_loads(data, source.check_inputs)
    return Converted(data, {"scheme": by_name(fmt).scheme, **_onnx.io_info(data)})


def convert(float_model: bytes, calib_inputs: np.ndarray, *, per_channel: bool = True) -> Any:
    """Quantize a serialized float ONNX model; returns the quantized ModelProto."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="edgecnn-onnx-int8-") as tmp:
        src, prepared, out = (Path(tmp) / n for n in ("float.onnx", "prep.onnx", "int8.onnx"))
        src.write_bytes(float_model)
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            calibration_reader(calib_inputs),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=True,  # 7-bit weights: no u8 x s8 saturation without VNNI (above)
        )
        return onnx.load(str(out))
