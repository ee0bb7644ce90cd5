"""`edgecnn._onnx_graph`: ONNX graphs and shapes read without the onnx package (what a device
profiles with), checked against the onnx package's own shape inference."""

from __future__ import annotations

import numpy as np
import pytest

from edgecnn._onnx_graph import read_graph
from edgecnn.profile import profile
from edgecnn.runtime.errors import InputError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper, shape_inference  # noqa: E402


def _const(name: str, values, dtype=np.int64):
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def _weights(name: str, shape) -> TensorProto:
    rng = np.random.default_rng(len(name))
    return numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)


def _model(nodes, initializers, *, opset: int = 18, output: str = "out") -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 20, 24, 3])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        initializer=initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _classifier() -> onnx.ModelProto:
    """NHWC input with an open batch through the operators exported classifiers use, plus
    shape arithmetic (Shape -> Gather -> Unsqueeze -> Concat -> Reshape) and windows whose
    sizes need ceil mode, padding, strides, dilations and groups to come out right."""
    n = helper.make_node
    nodes = [
        n("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        n("Mul", ["nchw", "scale"], ["scaled"]),
        n("Conv", ["scaled", "w1", "b1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        n("Clip", ["c1", "lo", "hi"], ["r1"]),
        n("Conv", ["r1", "wdw"], ["dw"], group=8, kernel_shape=[3, 3], auto_pad="SAME_UPPER"),
        n("Conv", ["dw", "w2"], ["c2"], dilations=[2, 2]),
        n("MaxPool", ["c2"], ["p"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        n("Pad", ["p", "pads"], ["padded"]),
        n("Resize", ["padded", "", "scales"], ["up"], mode="nearest"),
        n("Slice", ["up", "starts", "ends", "axes", "steps"], ["flipped"]),
        n("Split", ["flipped", "split"], ["left", "right"], axis=1),
        n("Concat", ["right", "left", "left"], ["cat"], axis=1),
        n("ReduceMean", ["cat", "hw"], ["gap"], keepdims=1),
        n("Shape", ["gap"], ["shape"]),
        n("Gather", ["shape", "first"], ["batch"], axis=0),
        n("Unsqueeze", ["batch", "zero"], ["batch1"]),
        n("Concat", ["batch1", "minus_one"], ["target"], axis=0),
        n("Reshape", ["gap", "target"], ["flat"]),
        n("Gemm", ["flat", "wfc", "bfc"], ["logits"], transB=1),
        n("Flatten", ["logits"], ["logits2"], axis=1),
        n("MatMul", ["logits2", "wmm"], ["mm"]),
        n("Softmax", ["mm"], ["out"]),
    ]
    inits = [
        _const("scale", [1 / 255], np.float32),
        _weights("w1", (8, 3, 3, 3)),
        _weights("b1", (8,)),
        _const("lo", 0.0, np.float32),
        _const("hi", 6.0, np.float32),
        _weights("wdw", (8, 1, 3, 3)),
        _weights("w2", (6, 8, 3, 3)),
        _const("pads", [0, 0, 1, 0, 0, 0, 0, 1]),
        _const("scales", [1, 1, 2, 2], np.float32),
        _const("starts", [-1]),
        _const("ends", [-(2**63)]),
        _const("axes", [3]),
        _const("steps", [-1]),
        _const("split", [2, 4]),
        _const("hw", [2, 3]),
        _const("first", 0),
        _const("zero", [0]),
        _const("minus_one", [-1]),
        _weights("wfc", (5, 8)),
        _weights("bfc", (5,)),
        _weights("wmm", (5, 3)),
    ]
    return _model(nodes, inits)


def _reference_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """onnx's inferred shapes for the model at batch 1 (the batch the profile counts)."""
    fixed = onnx.ModelProto.FromString(model.SerializeToString())
    for vi in fixed.graph.input:
        for dim in vi.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.dim_value = 1
    inferred = shape_inference.infer_shapes(fixed, strict_mode=True, data_prop=True).graph
    out = {}
    for vi in [*inferred.input, *inferred.value_info, *inferred.output]:
        out[vi.name] = tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
    return out


def test_shapes_match_onnx_shape_inference(tmp_path):
    model = _classifier()
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    graph = read_graph(path)
    reference = _reference_shapes(model)
    produced = [o for node in model.graph.node for o in node.output]
    assert {name: graph.shapes[name] for name in produced} == {
        name: reference[name] for name in produced
    }
    assert graph.unknown_ops() == []
    assert graph.shapes["c2"] == (1, 6, 6, 8) and graph.shapes["p"] == (1, 6, 3, 4)  # ceil mode
    assert graph.inputs == ["image"] and graph.outputs == ["out"]


def test_profile_counts_macs_from_the_inferred_shapes(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_classifier(), str(path))
    rep = profile(path)
    macs = {r["name"] or r["op"]: r["macs"] for r in rep["layers"] if r["macs"]}
    # conv1: 8x10x12 outputs x 3x3x3; depthwise: 8x10x12 x 3x3; conv2 (dilated): 6x6x8 x 8x3x3;
    # Gemm with transB: 5 outputs x 8 inputs; MatMul: 3 x 5
    assert sorted(macs.values()) == sorted(
        [8 * 10 * 12 * 27, 8 * 10 * 12 * 9, 6 * 6 * 8 * 72, 5 * 8, 3 * 5]
    )
    weights = 8 * 27 + 8 + 8 * 9 + 6 * 72 + 5 * 8 + 5 + 5 * 3
    float_constants = 1 + 2 + 4  # the 1/255 scale, the clip bounds, the resize scales
    assert rep["total"]["params"] == weights + float_constants
    assert rep["notes"] == []


def test_an_operator_without_a_rule_is_named_and_left_out(tmp_path):
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Mystery", ["nchw"], ["odd"], domain="com.example"),
        helper.make_node("Conv", ["odd", "w"], ["out"]),
    ]
    model = _model(nodes, [_weights("w", (4, 3, 3, 3))])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    path = tmp_path / "odd.onnx"
    onnx.save(model, str(path))
    graph = read_graph(path)
    assert graph.shapes["nchw"] == (1, 3, 20, 24) and graph.shapes["odd"] is None
    assert graph.unknown_ops() == ["Conv", "Mystery"]
    rep = profile(path)
    assert rep["total"]["params"] == 4 * 27
    assert any("Conv, Mystery" in note for note in rep["notes"])


def test_older_opsets_take_axes_and_pads_as_attributes(tmp_path):
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Pad", ["nchw"], ["padded"], pads=[0, 0, 2, 1, 0, 0, 2, 1]),
        helper.make_node("ReduceMean", ["padded"], ["gap"], axes=[2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["gap"], ["u"], axes=[0]),
        helper.make_node("Squeeze", ["u"], ["out"], axes=[0]),
    ]
    model = _model(nodes, [], opset=10)
    path = tmp_path / "old.onnx"
    onnx.save(model, str(path))
    graph = read_graph(path)
    reference = _reference_shapes(model)
    for name in ("padded", "gap", "u", "out"):
        assert graph.shapes[name] == reference[name], name
    assert graph.shapes["padded"] == (1, 3, 24, 26)


@pytest.mark.parametrize("content", [b"", b"\x08\x07\x3a\xff\xff\xff\x0f", b"not an onnx file"])
def test_unreadable_file_is_an_input_error(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(InputError, match="not a readable ONNX model"):
        read_graph(path)
