"""What the runtime needs from an ONNX file's graph, read without the onnx package.

OpenCV's DNN module does not report a network's input shape, and the runtime must not import
`onnx`, so the few protobuf fields needed are read with the bounded wire-format reader in
`metadata`: the graph's inputs and outputs, and every external-data file the model points at
(checked before ONNX Runtime or OpenCV opens anything: a downloaded model must not make them
read files outside its own folder).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..errors import InputError
from ..metadata import TooLarge, protobuf_fields, protobuf_int64, protobuf_int64s, protobuf_text

ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 10: "float16", 11: "float64"}
MAX_SUBGRAPH_DEPTH = 16  # If/Loop bodies inside bodies; real models nest two or three deep
# ONNX Runtime reads this "location" as a process memory address, not a file name.
_ORT_MEMORY_TAG = "_ORT_MEM_ADDR_"

# Field numbers of onnx.proto: ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto,
# SparseTensorProto, FunctionProto, TrainingInfoProto.
_MODEL_GRAPH, _MODEL_TRAINING, _MODEL_FUNCTIONS = 7, 20, 25
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE = 1, 5, 15
_NODE_ATTRIBUTE = 5
_ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE = (5, 10), (6, 11), (22, 23)
_TENSOR_EXTERNAL_DATA = 13
_FUNCTION_ATTRIBUTE_PROTO, _FUNCTION_NODE = 11, 7


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int | str | None, ...]  # int for fixed dims, a name or None for open ones


def _tensor_info(value_info: memoryview) -> TensorInfo:
    name, dtype, dims = "", "unknown", []
    for field, _, value in protobuf_fields(value_info):
        if field == 1:
            name = protobuf_text(value)
        elif field == 2:  # TypeProto
            for f2, _, tensor in protobuf_fields(value):
                if f2 != 1:
                    continue
                for f3, _, v3 in protobuf_fields(tensor):
                    if f3 == 1:
                        dtype = ELEM_TYPES.get(v3, f"onnx type {v3}")
                    elif f3 == 2:  # TensorShapeProto
                        for f4, _, dim in protobuf_fields(v3):
                            if f4 == 1:
                                dims.append(_dim(dim))
    return TensorInfo(name, dtype, tuple(dims))


def _dim(dim: memoryview) -> int | str | None:
    for field, _, value in protobuf_fields(dim):
        if field == 1:
            return int(value)
        if field == 2:
            return protobuf_text(value)
    return None


def _graph(data: bytes) -> memoryview:
    graph = next((v for f, w, v in protobuf_fields(data) if f == _MODEL_GRAPH and w == 2), None)
    if graph is None:
        raise ValueError("no graph")
    return graph


def graph_io(path: Path) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """(inputs, outputs) of the main graph; inputs that are initializers (old IR) are left out."""
    try:
        graph = _graph(path.read_bytes())
        initializers: set[str] = set()
        inputs: list[TensorInfo] = []
        outputs: list[TensorInfo] = []
        for field, wire, value in protobuf_fields(graph):
            if wire != 2:
                continue
            if field == _GRAPH_INITIALIZER:
                for f, _, v in protobuf_fields(value):
                    if f == 8:
                        initializers.add(protobuf_text(v))
            elif field == 11:
                inputs.append(_tensor_info(value))
            elif field == 12:
                outputs.append(_tensor_info(value))
    except TooLarge as e:
        raise InputError(f"{path}: {e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a valid ONNX file ({e})") from None
    return [t for t in inputs if t.name not in initializers], outputs


# --- nodes OpenCV would crash on ----------------------------------------------------------------

# NodeProto's text fields, by field number; ValueInfoProto's name is its field 1.
_NODE_TEXT = {
    1: "a node's input",
    2: "a node's output",
    3: "a node's name",
    4: "a node's op type",
    7: "a node's domain",
}
_NODE_OP_TYPE = 4
_NOT_TEXT = "is not UTF-8 text"
_GRAPH_VALUE_INFO = 13
_ATTR_NAME, _ATTR_INT, _ATTR_INTS = 1, 3, 8  # AttributeProto
# Sliding-window operators: by their ONNX specs, strides, dilations, kernel sizes and groups are
# positive and pads are not negative.  OpenCV divides by the stride as it reads the file.
_WINDOW_OPS = frozenset(
    {"Conv", "ConvInteger", "ConvTranspose", "QLinearConv", "DeformConv"}
    | {"AveragePool", "LpPool", "MaxPool", "MaxUnpool", "MaxRoiPool"}
)
_POSITIVE = frozenset({"strides", "dilations", "kernel_shape", "group"})


def check_nodes(path: Path) -> None:
    """Refuse an ONNX file with a node that OpenCV's DNN module would crash the process on:

    - text that is not UTF-8 in a node's inputs, outputs, name, op type or domain, or in a
      value info's name: OpenCV quotes them in its error messages, and its Python binding
      crashes (a segmentation fault) on a message that is not UTF-8;
    - a convolution or pooling window with a stride, dilation, kernel size or group below 1,
      or a negative pad: OpenCV divides by the stride (a floating-point exception).

    Nodes in the graph, its subgraphs and the model's functions.  ONNX Runtime refuses such
    files itself.  Raises InputError naming the model and the problem.
    """
    try:
        problems = (_problem(kind, message) for kind, message in _nodes(path.read_bytes()))
        problem = next((p for p in problems if p), None)
    except TooLarge as e:
        raise InputError(f"{path}: {e}") from None
    except ValueError as e:
        raise InputError(f"{path}: not a valid ONNX file ({e})") from None
    if problem:
        raise InputError(f"{path}: not a valid ONNX file ({problem})")


def _nodes(model: bytes) -> Iterator[tuple[str, memoryview]]:
    """("node" | "value info", the message) for each in the graph, its subgraphs and the
    model's functions."""
    for field, wire, value in protobuf_fields(model):
        if wire != 2:
            continue
        if field == _MODEL_GRAPH:
            yield from _graph_nodes(value, 0)
        elif field == _MODEL_FUNCTIONS:
            for f, w, node in protobuf_fields(value):
                if f == _FUNCTION_NODE and w == 2:
                    yield from _node_and_subgraphs(node, 0)


def _graph_nodes(graph: memoryview, depth: int) -> Iterator[tuple[str, memoryview]]:
    if depth > MAX_SUBGRAPH_DEPTH:
        raise ValueError(f"subgraphs nested more than {MAX_SUBGRAPH_DEPTH} deep")
    for field, wire, value in protobuf_fields(graph):
        if wire != 2:
            continue
        if field == _GRAPH_NODE:
            yield from _node_and_subgraphs(value, depth)
        elif field == _GRAPH_VALUE_INFO:
            yield "value info", value


def _node_and_subgraphs(node: memoryview, depth: int) -> Iterator[tuple[str, memoryview]]:
    yield "node", node
    for field, wire, value in protobuf_fields(node):
        if field == _NODE_ATTRIBUTE and wire == 2:
            for f, w, graph in protobuf_fields(value):
                if f in _ATTR_GRAPHS and w == 2:
                    yield from _graph_nodes(graph, depth + 1)


def _problem(kind: str, message: memoryview) -> str | None:
    """What in one node or value info OpenCV would crash on, or None."""
    if kind == "value info":
        names = (v for f, w, v in protobuf_fields(message) if f == 1 and w == 2)
        return next((f"a value info's name {_NOT_TEXT}" for v in names if not _is_text(v)), None)
    op_type, attributes = "", []
    for field, wire, value in protobuf_fields(message):
        if wire != 2:
            continue
        if field in _NODE_TEXT:
            if not _is_text(value):
                return f"{_NODE_TEXT[field]} {_NOT_TEXT}"
            if field == _NODE_OP_TYPE:
                op_type = str(value, "utf-8")
        elif field == _NODE_ATTRIBUTE:
            attributes.append(value)
    if op_type not in _WINDOW_OPS:
        return None
    for attribute in attributes:
        name, values = _int_attribute(attribute)
        if (name in _POSITIVE and min(values, default=1) < 1) or (
            name == "pads" and min(values, default=0) < 0
        ):
            return f"a {op_type} node has {name} {values[:8]}"
    return None


def _is_text(value: memoryview) -> bool:
    try:
        protobuf_text(value)
    except UnicodeDecodeError:
        return False
    return True


def _int_attribute(attribute: memoryview) -> tuple[str, list[int]]:
    """An AttributeProto's name and its integer values (`i`, or `ints` packed or not)."""
    name, values = "", []
    for field, wire, value in protobuf_fields(attribute):
        if field == _ATTR_NAME and wire == 2:
            name = protobuf_text(value, "an attribute's name")
        elif field in (_ATTR_INT, _ATTR_INTS) and wire == 0:
            values.append(protobuf_int64(value))
        elif field == _ATTR_INTS and wire == 2:
            values.extend(protobuf_int64s(value))
    return name, values


# --- external data ---------------------------------------------------------------------------


def check_external_data(path: Path) -> None:
    """Refuse an ONNX file whose tensors point at data outside its own folder.

    A tensor stored outside the model names its file in `external_data["location"]`; ONNX
    Runtime (recent versions) refuses a location that escapes the model's folder, OpenCV reads
    it wherever it points.  Every location (initializers, sparse initializers, tensor
    attributes of nodes in the graph, its subgraphs, functions and training graphs) must be a
    relative name of an existing file that resolves, symlinks followed, inside the model's
    folder.  Raises InputError naming the model and the location.
    """
    try:
        locations = set(external_locations(path.read_bytes()))
    except TooLarge as e:
        raise InputError(f"{path}: {e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a valid ONNX file ({e})") from None
    folder = path.resolve().parent
    for location in sorted(locations):
        problem = _location_problem(location, folder)
        if problem:
            raise InputError(f"{path}: external data {location[:200]!r} {problem}")


def _location_problem(location: str, folder: Path) -> str | None:
    """Why `location` may not be read, or None when it names a file inside `folder`."""
    if not location or "\x00" in location or _ORT_MEMORY_TAG in location:
        return "is not a file name"
    if PurePosixPath(location).is_absolute() or PureWindowsPath(location).anchor:
        return "is an absolute path; external data must sit in the model's folder"
    target = (folder / location).resolve()
    if not target.is_relative_to(folder):
        return f"points outside the model's folder {folder}"
    if not target.is_file():
        return f"is missing from the model's folder {folder}"
    return None


def external_locations(model: bytes) -> Iterator[str]:
    """Every `external_data` location of every tensor anywhere in a serialized ModelProto."""
    for field, wire, value in protobuf_fields(model):
        if wire != 2:
            continue
        if field == _MODEL_GRAPH:
            yield from _graph_locations(value, 0)
        elif field == _MODEL_TRAINING:  # TrainingInfoProto: initialization=1, algorithm=2
            for f, w, graph in protobuf_fields(value):
                if f in (1, 2) and w == 2:
                    yield from _graph_locations(graph, 0)
        elif field == _MODEL_FUNCTIONS:
            yield from _function_locations(value, 0)


def _graph_locations(graph: memoryview, depth: int) -> Iterator[str]:
    if depth > MAX_SUBGRAPH_DEPTH:
        raise ValueError(f"subgraphs nested more than {MAX_SUBGRAPH_DEPTH} deep")
    for field, wire, value in protobuf_fields(graph):
        if wire != 2:
            continue
        if field == _GRAPH_INITIALIZER:
            yield from _tensor_locations(value)
        elif field == _GRAPH_SPARSE:
            yield from _sparse_locations(value)
        elif field == _GRAPH_NODE:
            yield from _node_locations(value, depth)


def _function_locations(function: memoryview, depth: int) -> Iterator[str]:
    for field, wire, value in protobuf_fields(function):
        if wire != 2:
            continue
        if field == _FUNCTION_NODE:
            yield from _node_locations(value, depth)
        elif field == _FUNCTION_ATTRIBUTE_PROTO:
            yield from _attribute_locations(value, depth)


def _node_locations(node: memoryview, depth: int) -> Iterator[str]:
    for field, wire, value in protobuf_fields(node):
        if field == _NODE_ATTRIBUTE and wire == 2:
            yield from _attribute_locations(value, depth)


def _attribute_locations(attribute: memoryview, depth: int) -> Iterator[str]:
    for field, wire, value in protobuf_fields(attribute):
        if wire != 2:
            continue
        if field in _ATTR_TENSORS:
            yield from _tensor_locations(value)
        elif field in _ATTR_SPARSE:
            yield from _sparse_locations(value)
        elif field in _ATTR_GRAPHS:
            yield from _graph_locations(value, depth + 1)


def _sparse_locations(sparse: memoryview) -> Iterator[str]:
    for field, wire, value in protobuf_fields(sparse):
        if field in (1, 2) and wire == 2:  # values, indices
            yield from _tensor_locations(value)


def _tensor_locations(tensor: memoryview) -> Iterator[str]:
    for field, wire, value in protobuf_fields(tensor):
        if field == _TENSOR_EXTERNAL_DATA and wire == 2:
            entry = {f: v for f, w, v in protobuf_fields(value) if w == 2}
            if protobuf_text(entry.get(1, b""), "external data key") == "location":
                yield protobuf_text(entry.get(2, b""), "external data location")
