"""The `edge` net's whitened stem: a frozen first layer of the training photos' patch PCA."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _train_fixtures import FAST, interrupt_at, tiny_split, train_refuses

from edgecnn import train
from edgecnn.cli import main
from edgecnn.models import build_model, set_whitened_stem, sign_pairs, stem_whitening_kernel
from edgecnn.training import TrainingInterrupted

pytest.importorskip("keras")


def _patches(pixels: np.ndarray, k: int = 3) -> np.ndarray:
    """Every k x k patch, flattened in Conv2D kernel order (rows, columns, channels)."""
    from numpy.lib.stride_tricks import sliding_window_view

    x = pixels.astype(np.float64) / 127.5 - 1.0
    windows = sliding_window_view(x, (k, k), axis=(1, 2))  # (N, H', W', C, k, k)
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, k * k * x.shape[-1])


def _smooth_photos(n: int = 40, size: int = 24) -> np.ndarray:
    """Random images with correlated neighbouring pixels and channels, plus noise well above
    the eigenvalue floor (`WHITEN_EPS`) in every direction."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (n, size, size, 1))
    x = (x + np.roll(x, 1, 1) + np.roll(x, 1, 2)) / 3
    tint = rng.uniform(0.6, 1.0, (n, 1, 1, 3))
    return np.clip(x * tint + rng.normal(0, 20, (n, size, size, 3)), 0, 255).astype(np.uint8)


def test_kernel_whitens_the_photos_patches():
    photos = _smooth_photos()
    kernel = stem_whitening_kernel(photos, 32)
    assert kernel.shape == (3, 3, 3, 32) and kernel.dtype == np.float32
    w = kernel.reshape(27, 32)
    np.testing.assert_array_equal(w[:, 16:], -w[:, :16])  # each component with both signs
    patches = _patches(photos)
    responses = (patches - patches.mean(axis=0)) @ w[:, :16]
    cov = np.cov(responses.T)
    # unit variance, uncorrelated: a sample of the patches estimated what all of them show
    np.testing.assert_allclose(np.diag(cov), 1.0, atol=0.05)
    assert np.abs(cov - np.diag(np.diag(cov))).max() < 0.05
    # largest components first: the raw patches vary most along the first filter
    raw = np.var(patches @ (w[:, :16] / np.linalg.norm(w[:, :16], axis=0)), axis=0)
    assert raw[0] == raw.max() and raw[0] > 10 * raw[-1]


def test_kernel_only_for_widths_it_can_fill():
    photos = _smooth_photos(4, 8)
    assert stem_whitening_kernel(photos, 54) is not None  # 27 components, both signs
    assert stem_whitening_kernel(photos, 56) is None
    assert stem_whitening_kernel(photos, 31) is None


def test_set_whitened_stem_freezes_the_edge_stem_and_skips_other_nets():
    photos = _smooth_photos()
    edge = build_model("edge", 2, 32)
    assert set_whitened_stem(edge, photos, seed=3)
    stem, signs = edge.get_layer("stem_conv"), edge.get_layer("stem_signs")
    assert not stem.trainable and not signs.trainable
    # edge's stem: the 16 leading components of 7x7 patches, then [I, -I] for both signs
    expected = stem_whitening_kernel(photos, 32, 7, seed=3)
    np.testing.assert_array_equal(stem.get_weights()[0], expected[..., :16])
    np.testing.assert_array_equal(signs.get_weights()[0], sign_pairs(16))
    seed = build_model("seed", 2, 32)
    before = [w.copy() for w in seed.get_weights()]
    assert not set_whitened_stem(seed, photos)
    assert all(np.array_equal(a, b) for a, b in zip(before, seed.get_weights(), strict=True))


def test_stem_and_signs_compute_what_one_conv_holding_both_signs_would():
    import keras

    photos = _smooth_photos(size=32)
    edge = build_model("edge", 2, 32)
    assert set_whitened_stem(edge, photos, seed=1)
    x = photos[:3].astype(np.float32)
    ours = keras.Model(edge.input, edge.get_layer("stem_signs").output)(x)
    both = keras.layers.Conv2D(32, 7, strides=2, padding="same", use_bias=False)
    both.build((None, 32, 32, 3))
    both.kernel.assign(stem_whitening_kernel(photos, 32, 7, seed=1))
    np.testing.assert_allclose(ours, both(x / 127.5 - 1.0), atol=1e-5)


def test_a_stem_without_signs_layer_holds_both_signs_itself():
    from edgecnn import models

    photos = _smooth_photos()
    config = models.EdgeConfig(stem_kernel=5, stem_signs=False)  # a 5x5 stem conv, no signs layer
    net = models.build_edge(2, 32, config=config)
    assert set_whitened_stem(net, photos, seed=2)
    kernel = net.get_layer("stem_conv").get_weights()[0]
    np.testing.assert_array_equal(kernel, stem_whitening_kernel(photos, 32, 5, seed=2))


def _stem(model_path, *, nested: bool = True) -> np.ndarray:
    """The stem kernel of a saved model (`nested`: the net inside the two-view model)."""
    import keras

    from edgecnn import _train_graph  # noqa: F401  (registers the checkpoint's layers)

    model = keras.models.load_model(model_path)
    net = model.get_layer("edge") if nested else model
    return net.get_layer("stem_conv").get_weights()[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_split(tmp_path_factory.mktemp("whiten") / "data", classes=2, train=10, val=4)


def test_edge_trains_with_the_whitened_stem_frozen_through_resume(data, tmp_path):
    from edgecnn.data import prepare

    train_dir, val_dir = data
    out = tmp_path / "run"
    options = {**FAST, "arch": "edge", "epochs": 2}
    with pytest.raises(TrainingInterrupted):
        train(train_dir, val_dir=val_dir, out=out, callbacks=[interrupt_at(1)], **options)
    pixels = prepare(train_dir, img_size=32, val_dir=val_dir, seed=0, progress=False).train.pixels
    expected = stem_whitening_kernel(pixels, 32, 7, seed=0)[..., :16]
    np.testing.assert_array_equal(_stem(out / "checkpoint" / "last.keras", nested=False), expected)
    run = train(train_dir, val_dir=val_dir, out=out, resume=True, **options)
    assert [int(r["epoch"]) for r in run.history] == [1, 2]
    np.testing.assert_array_equal(_stem(run.model_path), expected)  # set once, never trained
    assert json.loads((out / "edgecnn.json").read_text())["info"]["whiten_stem"] is True


def test_no_whiten_stem_trains_the_stem_from_random_initialisation(data, tmp_path):
    train_dir, val_dir = data
    out = tmp_path / "run"
    assert main(["train", str(train_dir), "--val-dir", str(val_dir), "--out", str(out),
                 "--arch", "edge", "--img-size", "32", "--epochs", "1", "--quiet",
                 "--no-whiten-stem"]) == 0  # fmt: skip
    from edgecnn.data import prepare

    pixels = prepare(train_dir, img_size=32, val_dir=val_dir, seed=0, progress=False).train.pixels
    whitened = stem_whitening_kernel(pixels, 32, 7, seed=0)[..., :16]
    w = _stem(out / "model.keras")
    assert w.shape == whitened.shape and not np.allclose(w, whitened, atol=0.1)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--arch", "seed", "--whiten-stem"], "seed has no stem to whiten"),
        (["--arch", "edge", "--whiten-stem", "--weights", "w.weights.h5"], "contradict"),
    ],
)
def test_whiten_stem_refused_where_it_cannot_apply(data, tmp_path, capsys, argv, expected):
    train_dir, _ = data
    train_refuses(capsys, train_dir, tmp_path / "run", argv, expected)


def test_a_stem_too_wide_to_whiten_is_refused_before_training(data, tmp_path, monkeypatch):
    import dataclasses
    import functools

    from edgecnn import models
    from edgecnn.runtime.errors import InputError

    config = models.EdgeConfig(stem=64, stem_kernel=3)  # 64 filters > 2 x 27 components
    wide = functools.partial(models.build_edge, config=config)
    spec = dataclasses.replace(models.ARCHITECTURES["edge"], name="wide", build=wide)
    monkeypatch.setitem(models.ARCHITECTURES, "wide", spec)
    train_dir, val_dir = data
    out = tmp_path / "run"
    with pytest.raises(InputError, match="--no-whiten-stem"):
        train(train_dir, val_dir=val_dir, out=out, **{**FAST, "arch": "wide"})
    assert not out.exists()
