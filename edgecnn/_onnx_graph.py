"""An ONNX file's graph and tensor shapes without the `onnx` package, for `edgecnn profile`.

A device has onnxruntime or only OpenCV, never `onnx`, and `edgecnn profile model.onnx` must
still say what the model costs.  The protobuf fields a profile needs (nodes, initializers,
graph inputs/outputs, value_info) are read with the runtime's wire-format reader, and shapes
are propagated through the graph at batch 1 for the operators image classifiers are made of;
small integer tensors (shape arithmetic: Shape -> Gather -> Concat -> Reshape) are folded to
values so reshapes resolve.  A shape that cannot be worked out stays None and the profile says
which operators it left out.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecnn.runtime.errors import InputError
from edgecnn.runtime.metadata import protobuf_fields

# TensorProto.DataType -> numpy dtype (bfloat16 and float8 are read as same-sized integers).
DTYPES = {
    1: np.float32,
    2: np.uint8,
    3: np.int8,
    4: np.uint16,
    5: np.int16,
    6: np.int32,
    7: np.int64,
    9: np.bool_,
    10: np.float16,
    11: np.float64,
    12: np.uint32,
    13: np.uint64,
    16: np.uint16,
    17: np.uint8,
    18: np.uint8,
    19: np.uint8,
    20: np.uint8,
    21: np.uint8,
    22: np.int8,
}
_FOLD_LIMIT = 64  # tensors up to this many elements keep their values (shape arithmetic)

Shape = tuple[int, ...]


@dataclass
class Tensor:
    """An initializer or Constant: its shape and dtype, and its values when it is small."""

    name: str
    dims: Shape
    dtype: np.dtype
    values: np.ndarray | None = None

    @property
    def size(self) -> int:
        return math.prod(self.dims)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


@dataclass
class Node:
    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)


@dataclass
class Graph:
    """The main graph of an ONNX file, with a shape and dtype for every tensor it could infer."""

    nodes: list[Node]
    initializers: dict[str, Tensor]
    inputs: list[str]
    outputs: list[str]
    shapes: dict[str, Shape | None] = field(default_factory=dict)
    dtypes: dict[str, np.dtype] = field(default_factory=dict)

    def unknown_ops(self) -> list[str]:
        """Operator types whose output shape could not be worked out, sorted."""
        unknown = {n.op_type for n in self.nodes if n.outputs and n.outputs[0]}
        return sorted(
            op
            for op in unknown
            if any(self.shapes.get(n.outputs[0]) is None for n in self.nodes if n.op_type == op)
        )


# --- reading the protobuf ------------------------------------------------------------------


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _varints(buf: bytes) -> list[int]:
    out, pos = [], 0
    while pos < len(buf):
        value = shift = 0
        while True:
            b = buf[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        out.append(_signed(value))
    return out


def _ints(wire: int, value) -> list[int]:
    """A repeated int64 field's entries: packed (one length-delimited run) or one varint."""
    return _varints(value) if wire == 2 else [_signed(value)]


def _floats(wire: int, value) -> list[float]:
    if wire == 2:
        return list(struct.unpack(f"<{len(value) // 4}f", value))
    return [struct.unpack("<f", value.to_bytes(4, "little"))[0]]


def _tensor(buf: bytes) -> Tensor:
    dims: list[int] = []
    dtype, name, raw = 1, "", None
    typed: dict[int, list] = {}
    for f, wire, value in protobuf_fields(buf):
        if f == 1:
            dims += _ints(wire, value)
        elif f == 2:
            dtype = value
        elif f == 8:
            name = str(value, "utf-8")
        elif f == 9:
            raw = value
        elif f == 4:
            typed.setdefault(4, []).extend(_floats(wire, value))
        elif f in (5, 7, 11):
            typed.setdefault(f, []).extend(_ints(wire, value))
        elif f == 10:
            typed.setdefault(10, []).extend(
                struct.unpack(f"<{len(value) // 8}d", value)
                if wire == 2
                else [struct.unpack("<d", value.to_bytes(8, "little"))[0]]
            )
    np_dtype = np.dtype(DTYPES.get(dtype, np.float32))
    tensor = Tensor(name, tuple(dims), np_dtype)
    if tensor.size <= _FOLD_LIMIT:
        tensor.values = _values(tensor, raw, typed)
    return tensor


def _values(tensor: Tensor, raw: bytes | None, typed: dict[int, list]) -> np.ndarray | None:
    if raw is not None:
        flat = np.frombuffer(raw, dtype=tensor.dtype).copy()  # not a view into the whole file
    elif typed:
        flat = np.asarray(next(iter(typed.values())))
        if tensor.dtype == np.float16 and 5 in typed:  # float16 travels as its bits in int32_data
            flat = flat.astype(np.uint16).view(np.float16)
        flat = flat.astype(tensor.dtype)
    else:
        return None
    return flat.reshape(tensor.dims) if flat.size == tensor.size else None


def _attribute(buf: bytes) -> tuple[str, object]:
    name, single, many = "", None, []
    for f, wire, value in protobuf_fields(buf):
        if f == 1:
            name = str(value, "utf-8")
        elif f == 2:
            single = _floats(wire, value)[0]
        elif f == 3:
            single = _signed(value)
        elif f == 4:
            single = str(value, "utf-8", "replace")
        elif f == 5:
            single = _tensor(value)
        elif f == 7:
            many += _floats(wire, value)
        elif f == 8:
            many += _ints(wire, value)
        elif f == 9:
            many.append(str(value, "utf-8", "replace"))
    return name, (single if single is not None else many)


def _node(buf: bytes) -> Node:
    node = Node("", "", [], [])
    for f, _, value in protobuf_fields(buf):
        if f == 1:
            node.inputs.append(str(value, "utf-8"))
        elif f == 2:
            node.outputs.append(str(value, "utf-8"))
        elif f == 3:
            node.name = str(value, "utf-8")
        elif f == 4:
            node.op_type = str(value, "utf-8")
        elif f == 5:
            key, attr = _attribute(value)
            node.attrs[key] = attr
    return node


def _value_info(buf: bytes) -> tuple[str, Shape | None, np.dtype | None]:
    """(name, shape with open dimensions as 1, dtype) of a ValueInfoProto."""
    name, shape, dtype = "", None, None
    for f, _, value in protobuf_fields(buf):
        if f == 1:
            name = str(value, "utf-8")
        elif f == 2:
            for f2, _, tensor_type in protobuf_fields(value):
                if f2 != 1:
                    continue
                for f3, _, v3 in protobuf_fields(tensor_type):
                    if f3 == 1:
                        dtype = np.dtype(DTYPES.get(v3, np.float32))
                    elif f3 == 2:
                        shape = tuple(_dim(d) for f4, _, d in protobuf_fields(v3) if f4 == 1)
    return name, shape, dtype


def _dim(buf: bytes) -> int:
    for f, _, value in protobuf_fields(buf):
        if f == 1 and value > 0:
            return int(value)
    return 1  # an open (named or unknown) dimension: profiled at batch 1


def read_graph(path: Path) -> Graph:
    """The main graph of the ONNX file at `path`, shapes inferred; InputError if unreadable."""
    try:
        data = path.read_bytes()
        body = next((v for f, w, v in protobuf_fields(data) if f == 7 and w == 2), None)
        if body is None:
            raise ValueError("no graph")
        graph, known = _parse_graph(body)
    except (ValueError, UnicodeDecodeError, IndexError, struct.error) as e:
        raise InputError(f"{path}: not a readable ONNX model ({e})") from None
    _infer(graph, known)
    return graph


def _parse_graph(body: bytes) -> tuple[Graph, dict[str, tuple[Shape | None, np.dtype | None]]]:
    graph = Graph([], {}, [], [])
    known: dict[str, tuple[Shape | None, np.dtype | None]] = {}
    for f, wire, value in protobuf_fields(body):
        if wire != 2:
            continue
        if f == 1:
            graph.nodes.append(_node(value))
        elif f == 5:
            t = _tensor(value)
            graph.initializers[t.name] = t
        elif f in (11, 12, 13):
            name, shape, dtype = _value_info(value)
            known[name] = (shape, dtype)
            if f == 11:
                graph.inputs.append(name)
            elif f == 12:
                graph.outputs.append(name)
    graph.inputs = [n for n in graph.inputs if n not in graph.initializers]
    return graph, known


# --- shape inference -----------------------------------------------------------------------


class _Context:
    """Shapes, dtypes and folded values by tensor name while the nodes are walked in order."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.values: dict[str, np.ndarray] = {}

    def shape(self, name: str) -> Shape | None:
        return self.graph.shapes.get(name) if name else None

    def dtype(self, name: str) -> np.dtype:
        return self.graph.dtypes.get(name, np.dtype(np.float32))

    def value(self, name: str) -> np.ndarray | None:
        return self.values.get(name) if name else None

    def ints(self, node: Node, attr: str, index: int) -> list[int] | None:
        """An int list given as an attribute (older opsets) or as a constant input (newer)."""
        if attr in node.attrs:
            return [int(v) for v in node.attrs[attr]]
        v = self.value(node.inputs[index]) if len(node.inputs) > index else None
        return None if v is None else [int(x) for x in v.reshape(-1)]


def _infer(graph: Graph, known: dict[str, tuple[Shape | None, np.dtype | None]]) -> None:
    ctx = _Context(graph)
    for name, t in graph.initializers.items():
        graph.shapes[name], graph.dtypes[name] = t.dims, t.dtype
        if t.values is not None:
            ctx.values[name] = t.values
    for name in graph.inputs:
        shape, dtype = known.get(name, (None, None))
        graph.shapes[name], graph.dtypes[name] = shape, dtype or np.dtype(np.float32)
    for node in graph.nodes:
        rule = _RULES.get(node.op_type, _same_as_first if node.op_type in _UNARY else None)
        try:
            results = rule(ctx, node) if rule else []
        except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError):
            results = []  # an attribute or input of an unexpected form: shape left unknown
        for i, out in enumerate(node.outputs):
            shape, dtype = results[i] if i < len(results) else (None, None)
            file_shape, file_dtype = known.get(out, (None, None))
            graph.shapes[out] = shape if shape is not None else file_shape
            graph.dtypes[out] = dtype or file_dtype or np.dtype(np.float32)
        _fold(ctx, node)


Result = list[tuple[Shape | None, np.dtype | None]]

_UNARY = frozenset((
    "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "HardSwish", "Softmax",
    "LogSoftmax", "Identity", "Neg", "Abs", "Exp", "Log", "Sqrt", "Reciprocal", "Erf", "Elu",
    "Selu", "Softplus", "Softsign", "Dropout", "Floor", "Ceil", "Round", "Sign", "Not",
    "BatchNormalization", "LRN", "InstanceNormalization", "LayerNormalization", "Mish", "Gelu",
    "Celu", "ThresholdedRelu", "IsNaN", "IsInf",
))  # fmt: skip


def _same_as_first(ctx: _Context, node: Node) -> Result:
    return [(ctx.shape(node.inputs[0]), ctx.dtype(node.inputs[0]))]


def _broadcast(shapes: list[Shape | None]) -> Shape | None:
    if any(s is None for s in shapes):
        return None
    return tuple(int(d) for d in np.broadcast_shapes(*shapes))


def _elementwise(ctx: _Context, node: Node) -> Result:
    shape = _broadcast([ctx.shape(i) for i in node.inputs if i])
    comparison = node.op_type in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual")
    data = node.inputs[1] if node.op_type == "Where" else node.inputs[0]
    return [(shape, np.dtype(np.bool_) if comparison else ctx.dtype(data))]


def _cast(ctx: _Context, node: Node) -> Result:
    return [(ctx.shape(node.inputs[0]), np.dtype(DTYPES.get(node.attrs.get("to", 1), np.float32)))]


def _quantize(ctx: _Context, node: Node) -> Result:
    zero = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    dtype = ctx.dtype(zero) if zero else np.dtype(np.uint8)
    return [(ctx.shape(node.inputs[0]), dtype)]


def _dequantize(ctx: _Context, node: Node) -> Result:
    return [(ctx.shape(node.inputs[0]), np.dtype(np.float32))]


def _transpose(ctx: _Context, node: Node) -> Result:
    shape = ctx.shape(node.inputs[0])
    if shape is None:
        return []
    perm = node.attrs.get("perm") or list(reversed(range(len(shape))))
    return [(tuple(shape[p] for p in perm), ctx.dtype(node.inputs[0]))]


def _window(ctx: _Context, node: Node, x: Shape, kernel: list[int], channels: int) -> Shape:
    """Output of a sliding window (conv or pool) over the spatial dims of NC... input `x`."""
    n = len(kernel)
    strides = list(node.attrs.get("strides") or [1] * n)
    dilations = list(node.attrs.get("dilations") or [1] * n)
    pads = list(node.attrs.get("pads") or [0] * 2 * n)
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    ceil = bool(node.attrs.get("ceil_mode", 0))
    out = []
    for i in range(n):
        size, s = x[2 + i], strides[i]
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out.append(-(-size // s))
            continue
        span = (kernel[i] - 1) * dilations[i] + 1
        total = size + (0 if auto_pad == "VALID" else pads[i] + pads[i + n]) - span
        out.append((-(-total // s) if ceil else total // s) + 1)
    return (x[0], channels, *out)


def _conv(ctx: _Context, node: Node) -> Result:
    x_in, w_in = (0, 3) if node.op_type == "QLinearConv" else (0, 1)
    x, w = ctx.shape(node.inputs[x_in]), ctx.shape(node.inputs[w_in])
    if x is None or w is None:
        return []
    kernel = list(node.attrs.get("kernel_shape") or w[2:])
    dtype = {"ConvInteger": np.dtype(np.int32)}.get(node.op_type, ctx.dtype(node.inputs[x_in]))
    if node.op_type == "QLinearConv" and len(node.inputs) > 7:
        dtype = ctx.dtype(node.inputs[7])
    return [(_window(ctx, node, x, kernel, int(w[0])), dtype)]


def _conv_transpose(ctx: _Context, node: Node) -> Result:
    x, w = ctx.shape(node.inputs[0]), ctx.shape(node.inputs[1])
    if x is None or w is None:
        return []
    n = len(x) - 2
    kernel = list(node.attrs.get("kernel_shape") or w[2:])
    strides = list(node.attrs.get("strides") or [1] * n)
    dilations = list(node.attrs.get("dilations") or [1] * n)
    pads = list(node.attrs.get("pads") or [0] * 2 * n)
    extra = list(node.attrs.get("output_padding") or [0] * n)
    if node.attrs.get("output_shape"):
        spatial = [int(v) for v in node.attrs["output_shape"]][-n:]
    else:
        spatial = [
            strides[i] * (x[2 + i] - 1) + extra[i] + (kernel[i] - 1) * dilations[i] + 1
            - pads[i] - pads[i + n]
            for i in range(n)
        ]  # fmt: skip
    channels = int(w[1]) * int(node.attrs.get("group", 1))
    return [((x[0], channels, *spatial), ctx.dtype(node.inputs[0]))]


def _pool(ctx: _Context, node: Node) -> Result:
    x = ctx.shape(node.inputs[0])
    if x is None:
        return []
    out = _window(ctx, node, x, list(node.attrs["kernel_shape"]), x[1])
    return [(out, ctx.dtype(node.inputs[0]))] + [(out, np.dtype(np.int64))]


def _global_pool(ctx: _Context, node: Node) -> Result:
    x = ctx.shape(node.inputs[0])
    return [] if x is None else [((x[0], x[1], *[1] * (len(x) - 2)), ctx.dtype(node.inputs[0]))]


def _reduce(ctx: _Context, node: Node) -> Result:
    x = ctx.shape(node.inputs[0])
    if x is None:
        return []
    if node.op_type in ("ArgMax", "ArgMin"):
        axes = [node.attrs.get("axis", 0)]
    else:
        axes = ctx.ints(node, "axes", 1)
    if not axes:
        if node.attrs.get("noop_with_empty_axes", 0):
            return [(x, ctx.dtype(node.inputs[0]))]
        axes = list(range(len(x)))
    axes = {a % len(x) for a in axes}
    keep = node.attrs.get("keepdims", 1)
    out = tuple(1 if i in axes else d for i, d in enumerate(x) if keep or i not in axes)
    dtype = (
        np.dtype(np.int64) if node.op_type in ("ArgMax", "ArgMin") else ctx.dtype(node.inputs[0])
    )
    return [(out, dtype)]


def _reshape(ctx: _Context, node: Node) -> Result:
    x, target = ctx.shape(node.inputs[0]), ctx.value(node.inputs[1])
    if x is None or target is None:
        return []
    dims = [int(d) for d in target.reshape(-1)]
    if not node.attrs.get("allowzero", 0):
        dims = [x[i] if d == 0 else d for i, d in enumerate(dims)]
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        dims[dims.index(-1)] = math.prod(x) // known if known else 0
    return [(tuple(dims), ctx.dtype(node.inputs[0]))]


def _flatten(ctx: _Context, node: Node) -> Result:
    x = ctx.shape(node.inputs[0])
    if x is None:
        return []
    axis = node.attrs.get("axis", 1) % (len(x) + 1)
    return [((math.prod(x[:axis]), math.prod(x[axis:])), ctx.dtype(node.inputs[0]))]


def _squeeze(ctx: _Context, node: Node) -> Result:
    x = ctx.shape(node.inputs[0])
    if x is None:
        return []
    axes = ctx.ints(node, "axes", 1)
    drop = {a % len(x) for a in axes} if axes else {i for i, d in enumerate(x) if d == 1}
    return [(tuple(d for i, d in enumerate(x) if i not in drop), ctx.dtype(node.inputs[0]))]


def _unsqueeze(ctx: _Context, node: Node) -> Result:
    x, axes = ctx.shape(node.inputs[0]), ctx.ints(node, "axes", 1)
    if x is None or axes is None:
        return []
    rank = len(x) + len(axes)
    out, rest = [], iter(x)
    put = {a % rank for a in axes}
    for i in range(rank):
        out.append(1 if i in put else next(rest))
    return [(tuple(out), ctx.dtype(node.inputs[0]))]


def _gemm(ctx: _Context, node: Node) -> Result:
    a, b = ctx.shape(node.inputs[0]), ctx.shape(node.inputs[1])
    if a is None or b is None:
        return []
    m = a[1] if node.attrs.get("transA", 0) else a[0]
    n = b[0] if node.attrs.get("transB", 0) else b[1]
    return [((m, n), ctx.dtype(node.inputs[0]))]


def _matmul(ctx: _Context, node: Node) -> Result:
    a_in, b_in = (0, 3) if node.op_type == "QLinearMatMul" else (0, 1)
    a, b = ctx.shape(node.inputs[a_in]), ctx.shape(node.inputs[b_in])
    if a is None or b is None:
        return []
    a2, b2 = (1, *a) if len(a) == 1 else a, (*b, 1) if len(b) == 1 else b
    batch = _broadcast([a2[:-2], b2[:-2]]) or ()
    out = (*batch, a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    dtype = np.dtype(np.int32) if node.op_type == "MatMulInteger" else ctx.dtype(node.inputs[a_in])
    if node.op_type == "QLinearMatMul":
        dtype = ctx.dtype(node.inputs[7])
    return [(out, dtype)]


def _concat(ctx: _Context, node: Node) -> Result:
    shapes = [ctx.shape(i) for i in node.inputs if i]
    if not shapes or any(s is None for s in shapes):
        return []
    axis = node.attrs.get("axis", 0) % len(shapes[0])
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return [(tuple(out), ctx.dtype(node.inputs[0]))]


def _split(ctx: _Context, node: Node) -> Result:
    x = ctx.shape(node.inputs[0])
    if x is None:
        return []
    axis = node.attrs.get("axis", 0) % len(x)
    sizes = ctx.ints(node, "split", 1)
    if not sizes:
        n = len(node.outputs)
        step = -(-x[axis] // n)
        sizes = [min(step, x[axis] - i * step) for i in range(n)]
    dtype = ctx.dtype(node.inputs[0])
    return [(tuple(s if i == axis else d for i, d in enumerate(x)), dtype) for s in sizes]


def _slice(ctx: _Context, node: Node) -> Result:
    x = ctx.shape(node.inputs[0])
    starts, ends = ctx.ints(node, "starts", 1), ctx.ints(node, "ends", 2)
    if x is None or starts is None or ends is None:
        return []
    axes = ctx.ints(node, "axes", 3) or list(range(len(starts)))
    steps = ctx.ints(node, "steps", 4) or [1] * len(starts)
    out = list(x)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        out[axis] = len(range(*slice(start, end, step).indices(x[axis])))
    return [(tuple(out), ctx.dtype(node.inputs[0]))]


def _pad(ctx: _Context, node: Node) -> Result:
    x, pads = ctx.shape(node.inputs[0]), ctx.ints(node, "pads", 1)
    if x is None or pads is None:
        return []
    axes = ctx.ints(node, "axes", 3) if len(node.inputs) > 3 else None
    axes = [a % len(x) for a in axes] if axes else list(range(len(x)))
    out, n = list(x), len(axes)
    for i, axis in enumerate(axes):
        out[axis] += pads[i] + pads[i + n]
    return [(tuple(out), ctx.dtype(node.inputs[0]))]


def _resize(ctx: _Context, node: Node) -> Result:
    x = ctx.shape(node.inputs[0])
    if x is None:
        return []
    sizes = ctx.value(node.inputs[3]) if len(node.inputs) > 3 else None
    if sizes is not None and sizes.size:
        return [(tuple(int(v) for v in sizes), ctx.dtype(node.inputs[0]))]
    scales_in = node.inputs[2] if node.op_type == "Resize" and len(node.inputs) > 2 else None
    if node.op_type == "Upsample" and len(node.inputs) > 1:
        scales_in = node.inputs[1]
    scales = ctx.value(scales_in) if scales_in else None
    if scales is None and "scales" in node.attrs:
        scales = np.asarray(node.attrs["scales"])
    if scales is None or not scales.size:
        return []
    return [(tuple(int(d * s) for d, s in zip(x, scales)), ctx.dtype(node.inputs[0]))]


def _gather(ctx: _Context, node: Node) -> Result:
    x, idx = ctx.shape(node.inputs[0]), ctx.shape(node.inputs[1])
    if x is None or idx is None:
        return []
    axis = node.attrs.get("axis", 0) % len(x)
    return [((*x[:axis], *idx, *x[axis + 1 :]), ctx.dtype(node.inputs[0]))]


def _shape_op(ctx: _Context, node: Node) -> Result:
    x = ctx.shape(node.inputs[0])
    if x is None:
        return []
    start, end = node.attrs.get("start", 0), node.attrs.get("end", len(x))
    return [((len(x[start:end]),), np.dtype(np.int64))]


def _constant(ctx: _Context, node: Node) -> Result:
    value = node.attrs.get("value")
    if isinstance(value, Tensor):
        return [(value.dims, value.dtype)]
    for key, dtype in (("value_int", np.int64), ("value_float", np.float32)):
        if key in node.attrs:
            return [((), np.dtype(dtype))]
    for key, dtype in (("value_ints", np.int64), ("value_floats", np.float32)):
        if key in node.attrs:
            return [((len(node.attrs[key]),), np.dtype(dtype))]
    return []


def _constant_of_shape(ctx: _Context, node: Node) -> Result:
    shape = ctx.value(node.inputs[0])
    value = node.attrs.get("value")
    dtype = value.dtype if isinstance(value, Tensor) else np.dtype(np.float32)
    return [] if shape is None else [(tuple(int(v) for v in shape), dtype)]


def _expand(ctx: _Context, node: Node) -> Result:
    x, shape = ctx.shape(node.inputs[0]), ctx.value(node.inputs[1])
    if x is None or shape is None:
        return []
    return [(_broadcast([x, tuple(int(v) for v in shape)]), ctx.dtype(node.inputs[0]))]


def _tile(ctx: _Context, node: Node) -> Result:
    x, reps = ctx.shape(node.inputs[0]), ctx.value(node.inputs[1])
    if x is None or reps is None:
        return []
    return [(tuple(d * int(r) for d, r in zip(x, reps)), ctx.dtype(node.inputs[0]))]


def _depth_to_space(ctx: _Context, node: Node) -> Result:
    x, b = ctx.shape(node.inputs[0]), int(node.attrs["blocksize"])
    if x is None:
        return []
    if node.op_type == "DepthToSpace":
        return [((x[0], x[1] // (b * b), x[2] * b, x[3] * b), ctx.dtype(node.inputs[0]))]
    return [((x[0], x[1] * b * b, x[2] // b, x[3] // b), ctx.dtype(node.inputs[0]))]


_ELEMENTWISE = (
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Equal", "Less", "Greater",
    "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Where", "PRelu", "Mod", "BitShift",
)  # fmt: skip
_REDUCE = (
    "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin",
)  # fmt: skip
_RULES: dict[str, Callable[[_Context, Node], Result]] = {
    **dict.fromkeys(_ELEMENTWISE, _elementwise),
    "Cast": _cast,
    "QuantizeLinear": _quantize,
    "DequantizeLinear": _dequantize,
    "Transpose": _transpose,
    **dict.fromkeys(("Conv", "ConvInteger", "QLinearConv"), _conv),
    "ConvTranspose": _conv_transpose,
    **dict.fromkeys(("MaxPool", "AveragePool", "LpPool"), _pool),
    **dict.fromkeys(("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"), _global_pool),
    **dict.fromkeys(_REDUCE, _reduce),
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Gemm": _gemm,
    **dict.fromkeys(("MatMul", "MatMulInteger", "QLinearMatMul"), _matmul),
    "Concat": _concat,
    "Split": _split,
    "Slice": _slice,
    "Pad": _pad,
    **dict.fromkeys(("Resize", "Upsample"), _resize),
    "Gather": _gather,
    "Shape": _shape_op,
    "Constant": _constant,
    "ConstantOfShape": _constant_of_shape,
    "Expand": _expand,
    "Tile": _tile,
    **dict.fromkeys(("DepthToSpace", "SpaceToDepth"), _depth_to_space),
}


# --- folding small integer tensors ---------------------------------------------------------


def _fold(ctx: _Context, node: Node) -> None:
    """Compute the node's output values when they are small and all its inputs are known, so
    shape arithmetic (Shape, Gather, Concat, Cast, Unsqueeze, ...) feeds Reshape a constant."""
    out = node.outputs[0] if node.outputs else ""
    shape = ctx.graph.shapes.get(out)
    if not out or shape is None or math.prod(shape) > _FOLD_LIMIT:
        return
    try:
        value = _evaluate(ctx, node)
    except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError, OverflowError):
        value = None
    if value is not None and tuple(value.shape) == tuple(shape):
        ctx.values[out] = value


def _evaluate(ctx: _Context, node: Node) -> np.ndarray | None:
    op = node.op_type
    if op == "Shape":
        x = ctx.shape(node.inputs[0])
        start, end = node.attrs.get("start", 0), node.attrs.get("end", len(x))
        return np.asarray(x[start:end], dtype=np.int64)
    if op == "Constant":
        return _constant_value(node)
    if not node.inputs or any(i and ctx.value(i) is None for i in node.inputs):
        return None
    ins = [ctx.value(i) for i in node.inputs if i]
    x = ins[0]
    dtype = ctx.graph.dtypes.get(node.outputs[0])
    simple = {
        "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Max": np.maximum,
        "Min": np.minimum, "Equal": np.equal, "Less": np.less, "Greater": np.greater,
    }  # fmt: skip
    if op in simple:
        return np.asarray(simple[op](x, ins[1])).astype(dtype)
    if op == "Div":
        return (x // ins[1] if x.dtype.kind in "iu" else x / ins[1]).astype(dtype)
    if op in ("Identity", "Cast", "Reshape", "Squeeze", "Unsqueeze", "Flatten"):
        return x.astype(dtype).reshape(ctx.graph.shapes[node.outputs[0]])
    if op == "Concat":
        return np.concatenate(
            [v.reshape(v.shape or (1,)) for v in ins], axis=node.attrs.get("axis", 0)
        )
    if op == "Gather":
        return np.take(x, ins[1].astype(np.int64), axis=node.attrs.get("axis", 0))
    if op == "Slice":
        return _slice_value(ctx, node, x)
    return None


def _constant_value(node: Node) -> np.ndarray | None:
    value = node.attrs.get("value")
    if isinstance(value, Tensor):
        return value.values
    for key, dtype in (("value_int", np.int64), ("value_ints", np.int64),
                       ("value_float", np.float32), ("value_floats", np.float32)):  # fmt: skip
        if key in node.attrs:
            return np.asarray(node.attrs[key], dtype=dtype)
    return None


def _slice_value(ctx: _Context, node: Node, x: np.ndarray) -> np.ndarray:
    starts, ends = ctx.ints(node, "starts", 1), ctx.ints(node, "ends", 2)
    axes = ctx.ints(node, "axes", 3) or list(range(len(starts)))
    steps = ctx.ints(node, "steps", 4) or [1] * len(starts)
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[axis] = slice(start, end, step)
    return x[tuple(index)]
