"""Graph input/output shapes of an ONNX file without the onnx package.

OpenCV's DNN module does not report a network's input shape, and the runtime must not import
`onnx`, so the few protobuf fields needed are read with the wire-format reader in `metadata`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..metadata import _fields

ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 10: "float16", 11: "float64"}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int | str | None, ...]  # int for fixed dims, a name or None for open ones


def _tensor_info(value_info: bytes) -> TensorInfo:
    name, dtype, dims = "", "unknown", []
    for field, _, value in _fields(value_info):
        if field == 1:
            name = value.decode("utf-8")
        elif field == 2:  # TypeProto
            for f2, _, tensor in _fields(value):
                if f2 != 1:
                    continue
                for f3, _, v3 in _fields(tensor):
                    if f3 == 1:
                        dtype = ELEM_TYPES.get(v3, f"onnx type {v3}")
                    elif f3 == 2:  # TensorShapeProto
                        for f4, _, dim in _fields(v3):
                            if f4 == 1:
                                dims.append(_dim(dim))
    return TensorInfo(name, dtype, tuple(dims))


def _dim(dim: bytes) -> int | str | None:
    for field, _, value in _fields(dim):
        if field == 1:
            return int(value)
        if field == 2:
            return value.decode("utf-8")
    return None


def graph_io(path: Path) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """(inputs, outputs) of the main graph; inputs that are initializers (old IR) are left out."""
    try:
        data = path.read_bytes()
        graph = next((v for f, w, v in _fields(data) if f == 7 and w == 2), None)
        if graph is None:
            raise ValueError("no graph")
        initializers: set[str] = set()
        inputs: list[TensorInfo] = []
        outputs: list[TensorInfo] = []
        for field, wire, value in _fields(graph):
            if wire != 2:
                continue
            if field == 5:
                for f, _, v in _fields(value):
                    if f == 8:
                        initializers.add(v.decode("utf-8"))
            elif field == 11:
                inputs.append(_tensor_info(value))
            elif field == 12:
                outputs.append(_tensor_info(value))
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a valid ONNX file ({e})") from None
    return [t for t in inputs if t.name not in initializers], outputs
