"""Strided convs on a photo's few channels, traced as space-to-depth for the int8 TFLite file."""

from __future__ import annotations

import numpy as np
import pytest

from edgecnn.export import _space_to_depth as s2d


def _conv_model(kernel: int, size: tuple[int, int], *, channels: int = 3, **conv_options):
    """A model of one Conv2D (bias and ReLU, so the rewrite must keep both) with random weights."""
    import keras

    options = {"strides": 2, "padding": "same", "activation": "relu", **conv_options}
    inputs = keras.Input((*size, channels))
    conv = keras.layers.Conv2D(8, kernel, **options)
    model = keras.Model(inputs, conv(inputs))
    rng = np.random.default_rng(kernel)
    conv.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in conv.get_weights()])
    return model, conv


@pytest.mark.parametrize("kernel", [3, 4, 5, 6, 7, 9])
@pytest.mark.parametrize("size", [(32, 32), (30, 34)])
def test_the_block_conv_computes_the_strided_conv(kernel, size, monkeypatch):
    monkeypatch.setattr(s2d, "MIN_KERNEL", 3)  # check the arithmetic for small kernels too
    model, conv = _conv_model(kernel, size)
    x = np.random.default_rng(0).normal(size=(2, *size, 3)).astype(np.float32)
    expected = np.asarray(model(x))
    with s2d.space_to_depth_convs(model) as rewritten:
        assert rewritten == 1
        got = np.asarray(model(x))
    assert got.shape == expected.shape == (2, size[0] // 2, size[1] // 2, 8)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    assert "call" not in vars(conv)  # the layer is itself again afterwards
    assert not np.array_equal(got, expected)  # another computation, not the layer's own call


def test_an_odd_size_runs_the_layer_as_it_is():
    model, _ = _conv_model(7, (31, 32))
    x = np.random.default_rng(0).normal(size=(1, 31, 32, 3)).astype(np.float32)
    expected = np.asarray(model(x))
    with s2d.space_to_depth_convs(model):
        np.testing.assert_array_equal(np.asarray(model(x)), expected)


@pytest.mark.parametrize(
    "kernel, channels, options",
    [
        (3, 3, {}),  # 3x3: about 1% of a MobileNetV3, left as it is
        (7, 16, {}),  # channels enough for the kernels' blocks
        (7, 3, {"strides": 1}),
        (7, 3, {"padding": "valid"}),
        (7, 3, {"strides": 1, "dilation_rate": 2}),
    ],
)
def test_only_large_stride_two_same_convs_on_few_channels_qualify(kernel, channels, options):
    model, conv = _conv_model(kernel, (32, 32), channels=channels, **options)
    assert not s2d.qualifies(conv)
    with s2d.space_to_depth_convs(model) as rewritten:
        assert rewritten == 0
    assert s2d.qualifies(_conv_model(7, (32, 32))[1])


def test_nested_models_are_searched():
    import keras

    inner, conv = _conv_model(7, (32, 32))
    inputs = keras.Input((32, 32, 3))
    outer = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inner(inputs)))
    with s2d.space_to_depth_convs(outer) as rewritten:
        assert rewritten == 1 and "call" in vars(conv)
    assert "call" not in vars(conv)


@pytest.mark.slow
def test_the_edge_int8_file_runs_the_stem_as_a_block_conv_with_the_same_answers(monkeypatch):
    from contextlib import nullcontext

    from edgecnn.export import _tflite
    from edgecnn.models import build_model
    from edgecnn.runtime.backends.tflite import find_interpreter
    from edgecnn.runtime.contract import Contract
    from edgecnn.runtime.tflite_graph import describe

    size = 32
    model = build_model("edge", 2, size)
    contract = Contract(labels=("a", "b"), height=size, width=size)
    rng = np.random.default_rng(0)
    calib = rng.integers(0, 256, (32, size, size, 3)).astype(np.float32)
    x = rng.integers(0, 256, (40, size, size, 3)).astype(np.float32)

    def int8_file() -> tuple[bytes, np.ndarray, list[tuple[int, ...]], list[str]]:
        """The int8 file, its probabilities for `x`, the shapes of its 4-d tensors, and the
        ops XNNPACK (the default delegate) leaves to TFLite's own kernels."""
        data = _tflite.convert(model, contract, "tflite-int8", calib_inputs=calib, int8_io="float")
        interpreter = find_interpreter()[0](model_content=data, num_threads=1)
        interpreter.allocate_tensors()
        (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
        probs = []
        for image in x:
            interpreter.set_tensor(inp["index"], image[None])
            interpreter.invoke()
            probs.append(interpreter.get_tensor(out["index"])[0])
        filters = [
            tuple(d["shape"]) for d in interpreter.get_tensor_details() if len(d["shape"]) == 4
        ]
        return data, np.array(probs), filters, _undelegated_ops(data)

    block, block_probs, block_filters, block_undelegated = int8_file()
    monkeypatch.setattr(_tflite, "space_to_depth_convs", lambda model: nullcontext())
    plain, plain_probs, plain_filters, plain_undelegated = int8_file()

    assert describe(block)["float_ops"] == []
    assert block_undelegated == plain_undelegated  # XNNPACK runs the block form's reshapes too
    assert (16, 4, 4, 12) in block_filters and (16, 4, 4, 12) not in plain_filters
    assert (16, 7, 7, 3) in plain_filters and (16, 7, 7, 3) not in block_filters
    # the same integer sums; calibration sees the stem's float outputs to rounding, so a scale
    # may differ in its last bits and move a rare value by one level
    np.testing.assert_array_equal(block_probs.argmax(1), plain_probs.argmax(1))
    assert np.abs(block_probs - plain_probs).max() <= 2 / 256


def _undelegated_ops(data: bytes) -> list[str]:
    """The ops of an int8 file that XNNPACK does not take (with every tensor kept, it takes one
    op per delegate node, each node with that op's outputs: tests/test_int8_kernels.py)."""
    import warnings

    from edgecnn.runtime.backends.tflite import find_interpreter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # preserve_all_tensors warns it is for debugging
        interpreter = find_interpreter()[0](
            model_content=data, num_threads=1, experimental_preserve_all_tensors=True
        )
    interpreter.allocate_tensors()
    nodes = interpreter._get_ops_details()
    delegated = {tuple(n["outputs"]) for n in nodes if n["op_name"] == "DELEGATE"}
    assert delegated, "no XNNPACK delegate applied"
    return sorted(
        n["op_name"]
        for n in nodes
        if n["op_name"] != "DELEGATE" and tuple(n["outputs"]) not in delegated
    )
