"""The faster training graph of `edge` (edgecnn._train_graph): same weights, same outputs."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from _train_fixtures import FAST, tiny_split

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from edgecnn import _train_graph, train  # noqa: E402
from edgecnn.models import EdgeConfig, build_edge, build_model  # noqa: E402

RNG = np.random.default_rng(0)


def _pixels(n: int, size: int) -> np.ndarray:
    return RNG.uniform(0, 255, (n, size, size, 3)).astype(np.float32)


def _layer_types(model) -> set[str]:
    return {type(layer).__name__ for layer in model.layers}


@pytest.mark.parametrize(
    ("img_size", "sizes"),
    [(40, [40]), (48, [48]), (None, [36, 50, 61])],  # last stage 5 (odd) and 3; any size
)
def test_training_graph_gives_the_saved_nets_outputs_from_the_same_weights(img_size, sizes):
    keras.utils.set_random_seed(1)
    config = EdgeConfig(dropout=0.0)
    fast = build_edge(3, img_size, config=config, training_graph=True)
    plain = build_edge(3, img_size, config=config)
    assert {"FusedBatchNorm", "EveryOther"} <= _layer_types(fast)
    assert not {"FusedBatchNorm", "EveryOther"} & _layer_types(plain)
    strided = [
        layer.name
        for layer in fast.layers
        if isinstance(layer, keras.layers.DepthwiseConv2D) and layer.strides != (1, 1)
    ]
    assert strided == []  # every strided depthwise conv became stride 1 + EveryOther
    # a few training steps move the BatchNorm statistics away from their initial values
    fast.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = _pixels(8, sizes[0])
    fast.fit(x, np.arange(8) % 3, epochs=2, batch_size=4, verbose=0)
    plain.set_weights(fast.get_weights())
    for size in sizes:
        x = _pixels(4, size)
        np.testing.assert_allclose(
            fast.predict(x, verbose=0), plain.predict(x, verbose=0), atol=1e-5
        )


@pytest.mark.parametrize("size", [12, 13])
def test_every_other_samples_the_grid_of_a_stride_two_same_conv(size):
    x = tf.constant(_pixels(2, size))
    strided = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False)
    unit = keras.layers.DepthwiseConv2D(3, strides=1, padding="same", use_bias=False)
    strided.build(x.shape)
    unit.build(x.shape)
    unit.set_weights(strided.get_weights())
    out = _train_graph.EveryOther()(unit(x))
    assert out.shape == (2, (size + 1) // 2, (size + 1) // 2, 3)
    np.testing.assert_allclose(out.numpy(), strided(x).numpy(), rtol=1e-6, atol=1e-3)


def test_fused_batch_norm_trains_like_keras_batch_norm():
    x = tf.constant(RNG.normal(2.0, 3.0, (8, 6, 6, 5)).astype(np.float32))
    upstream = tf.constant(RNG.normal(size=(8, 6, 6, 5)).astype(np.float32))
    fused = _train_graph.FusedBatchNorm(momentum=0.9)
    ref = keras.layers.BatchNormalization(momentum=0.9)
    fused.build(x.shape)
    ref.build(x.shape)
    ref.set_weights(
        [w + RNG.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in ref.get_weights()]
    )
    fused.set_weights(ref.get_weights())

    def step(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.nn.relu6(y) * upstream)
        return [y, *tape.gradient(loss, [x, layer.gamma, layer.beta])]

    for got, want in zip(step(fused), step(ref)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)
    # moving statistics moved by the same (biased-variance) update, so inference agrees too
    for got, want in zip(fused.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(fused.moving_mean.numpy(), 0.0)
    np.testing.assert_allclose(
        fused(x, training=False).numpy(), ref(x, training=False).numpy(), rtol=1e-5, atol=1e-5
    )


def test_edge_trains_the_fast_graph_and_saves_standard_keras_layers_only(tmp_path):
    train_dir, val_dir = tiny_split(tmp_path / "data", train=10, val=4)
    run = train(train_dir, val_dir=val_dir, out=tmp_path / "run", **{**FAST, "arch": "edge"})
    with zipfile.ZipFile(run.model_path) as zf:
        config = json.loads(zf.read("config.json"))
    saved = json.dumps(config)
    assert "FusedBatchNorm" not in saved and "EveryOther" not in saved
    assert '"BatchNormalization"' in saved
    # the arch spec is what routes train() to the fast graph; other archs build as before
    assert not {"FusedBatchNorm"} & _layer_types(build_model("seed", 2, 32, training_graph=True))
