"""The operators and tensors of a .tflite file, read without TensorFlow.

One description of a TFLite graph for export (what export.json records, and the check that a
full-integer file left nothing in float) and for `edgecnn profile` (which runs on a device with
the runtime only).  The flatbuffer is read with the schema LiteRT ships (`ai_edge_litert`),
else TensorFlow's copy of it.

An operator *computes in float* when any tensor it reads or writes (weights included) is a
float type; QUANTIZE and DEQUANTIZE with a float side only convert at the file's input and
output (a full-integer file with float input/output has exactly those two).
"""

from __future__ import annotations

from typing import Any

from .errors import InputError, MissingDependencyError

FLOAT_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64")
CONVERSIONS = ("QUANTIZE", "DEQUANTIZE")
# what export.json calls a tensor type (numpy's names)
_DTYPES = {
    "FLOAT32": "float32",
    "FLOAT16": "float16",
    "INT32": "int32",
    "UINT8": "uint8",
    "INT64": "int64",
    "INT8": "int8",
}


def schema() -> Any:
    """The generated TFLite schema module (flatbuffer object API)."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        try:
            from tensorflow.lite.python import schema_py_generated
        except ImportError:
            raise MissingDependencyError(
                "ai-edge-litert", "tflite", "reading .tflite files"
            ) from None
    return schema_py_generated


class Graph:
    """The first subgraph of a .tflite flatbuffer: its operators by name and its tensors."""

    def __init__(self, flatbuffer: bytes, *, where: str = "model") -> None:
        s = schema()
        if flatbuffer[4:8] != b"TFL3":
            raise InputError(
                f"{where}: not a readable .tflite flatbuffer (no TFL3 file identifier)"
            )
        try:
            self.model = s.ModelT.InitFromPackedBuf(flatbuffer, 0)
        except Exception as e:  # a corrupt flatbuffer raises anything from struct/IndexError up
            raise InputError(
                f"{where}: not a readable .tflite flatbuffer ({type(e).__name__})"
            ) from None
        if not self.model.subgraphs:
            raise InputError(f"{where}: .tflite file has no subgraph")
        self.subgraph = self.model.subgraphs[0]
        self.tensors = self.subgraph.tensors or []
        self.operators = self.subgraph.operators or []
        builtin = _enum_names(s.BuiltinOperator)
        self.type_names = _enum_names(s.TensorType)
        self.op_names = [self._op_name(op, builtin) for op in self.operators]

    def _op_name(self, op: Any, builtin: dict[int, str]) -> str:
        code = self.model.operatorCodes[op.opcodeIndex]
        name = builtin.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        if name == "CUSTOM" and code.customCode:
            custom = code.customCode
            name = f"CUSTOM:{custom.decode() if isinstance(custom, bytes) else custom}"
        return name

    def dtype(self, index: int) -> str:
        """The schema's name of a tensor's type, e.g. 'INT8'."""
        t = self.tensors[index].type
        return self.type_names.get(t, str(t))

    def is_constant(self, index: int) -> bool:
        """Whether a tensor holds data in the file (weights, biases, shapes)."""
        t = self.tensors[index]
        buffers = self.model.buffers or []
        b = buffers[t.buffer] if t.buffer is not None and t.buffer < len(buffers) else None
        return b is not None and ((b.data is not None and len(b.data) > 0) or (b.offset or 0) > 1)

    def op_tensors(self, i: int) -> tuple[list[int], list[int]]:
        """Operator i's input and output tensor indices (optional inputs left out)."""
        op = self.operators[i]
        ins = [int(t) for t in (op.inputs if op.inputs is not None else []) if t >= 0]
        outs = [int(t) for t in (op.outputs if op.outputs is not None else []) if t >= 0]
        return ins, outs

    def tensor_name(self, index: int) -> str:
        name = self.tensors[index].name
        return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "")

    def float_ops(self) -> list[dict[str, Any]]:
        """Every operator that touches a float tensor (see the module docstring), in file
        order: index, op, name (its first output) and why ("computes in float" or
        "input/output conversion")."""
        out = []
        for i, op in enumerate(self.op_names):
            ins, outs = self.op_tensors(i)
            if any(self.dtype(t) in FLOAT_TYPES for t in ins + outs):
                why = "input/output conversion" if op in CONVERSIONS else "computes in float"
                name = self.tensor_name(outs[0]) if outs else ""
                out.append({"index": i, "op": op, "name": name, "why": why})
        return out

    def tensor_info(self, index: int) -> dict[str, Any]:
        """Name, dtype, shape (-1 for a dynamic size) and quantisation of a tensor."""
        t = self.tensors[index]
        dims = (
            t.shapeSignature if t.shapeSignature is not None and len(t.shapeSignature) else t.shape
        )
        info: dict[str, Any] = {
            "name": self.tensor_name(index),
            "dtype": _DTYPES.get(self.dtype(index), str(t.type)),
            "shape": [int(v) for v in (dims if dims is not None else [])],
        }
        q = t.quantization
        if q is not None and q.scale is not None and len(q.scale):
            info["scale"] = float(q.scale[0])
            info["zero_point"] = int(q.zeroPoint[0])
        return info


def describe(flatbuffer: bytes) -> dict[str, Any]:
    """Input/output dtype and quantisation, op count, and the ops that compute in float (by
    name, sorted): what export.json records of a .tflite file."""
    g = Graph(flatbuffer)
    inputs, outputs = g.subgraph.inputs, g.subgraph.outputs
    return {
        "input": g.tensor_info(int(inputs[0])),
        "output": g.tensor_info(int(outputs[0])),
        "ops": len(g.operators),
        "float_ops": sorted({f["op"] for f in g.float_ops() if f["why"] == "computes in float"}),
    }


def _enum_names(cls: Any) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}
