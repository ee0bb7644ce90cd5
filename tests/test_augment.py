"""Training augmentation (`edgecnn.augment`): seeded, within range, and off when asked to be."""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest

from edgecnn.augment import Augment

tf = pytest.importorskip("tensorflow")

from edgecnn.augment import augment_batch, camera_shifts, downscale_upscale, gaussian_blur  # noqa: E402

CAMERA = Augment(
    white_balance=0.3, exposure=2.0, grayscale=0.2, blur=1.5, low_res=0.4, noise=10.0, camera_p=0.5
)
# everything off: each test turns on what it checks
ONLY_CAMERA = {"flip": False, **{f.name: 0.0 for f in fields(Augment) if f.name != "flip"}}


def photos(n: int = 16, size: int = 24) -> np.ndarray:
    """Smooth random colour photos (float32 0..255), so blur and resizing have something to keep."""
    rng = np.random.default_rng(0)
    small = rng.uniform(40, 215, (n, 6, 6, 3)).astype(np.float32)
    return tf.image.resize(small, (size, size), method="bilinear").numpy()


def run(x: np.ndarray, aug: Augment, seed=(3, 7)) -> np.ndarray:
    return augment_batch(tf.constant(x), aug, tf.constant(seed, tf.int64)).numpy()


def camera_only(**options) -> Augment:
    return Augment(**{**ONLY_CAMERA, **options})


def changed(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per image: whether any pixel differs by more than float rounding."""
    return np.abs(x - y).reshape(len(x), -1).max(axis=1) > 1e-3


def test_the_same_seed_gives_the_same_batch_and_another_seed_another():
    x = photos()
    a, b, c = run(x, CAMERA), run(x, CAMERA), run(x, CAMERA, seed=(3, 8))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.dtype == np.float32 and a.shape == x.shape
    assert a.min() >= 0.0 and a.max() <= 255.0


def test_camera_ops_off_leave_the_geometric_and_colour_augmentation_unchanged():
    x = photos()
    previous = Augment.previous()
    base = run(x, previous)
    # strengths without a probability (and a probability without strengths) do nothing
    for aug in (
        replace(previous, white_balance=0.3, blur=1.0),
        replace(previous, camera_p=1.0),
        replace(Augment(), camera_p=0.0, grayscale=0.0, zoom=0.2, shift=0.08, zoom_out=0.0),
    ):
        assert not aug.camera
        np.testing.assert_array_equal(run(x, aug), base)
    assert not np.array_equal(run(x, replace(previous, noise=5.0, camera_p=1.0)), base)


def test_the_default_adds_camera_degradations_and_wider_crops_to_the_previous_recipe():
    default, previous = Augment(), Augment.previous()
    assert default.camera and not previous.camera
    assert (previous.zoom, previous.shift, previous.zoom_out) == (0.2, 0.08, 0.0)
    assert (default.zoom, default.shift, default.zoom_out) == (0.3, 0.12, 0.15)
    x = photos(n=200, size=8)
    hit = changed(run(x, previous), run(x, default)).mean()
    assert hit > 0.9  # the wider crops move every image; the camera ops fire on some
    same = {f.name for f in fields(Augment)} - {"zoom", "shift", "zoom_out", "camera_p"}
    same -= {"white_balance", "exposure", "grayscale", "blur", "low_res", "noise"}
    assert all(getattr(default, n) == getattr(previous, n) for n in same)


def test_no_augmentation_returns_the_batch():
    x = photos()
    np.testing.assert_allclose(run(x, Augment.none()), x, atol=1e-4)
    np.testing.assert_allclose(run(x, camera_only()), x, atol=1e-4)


def test_each_op_fires_on_about_camera_p_of_the_images():
    x = photos(n=400, size=8)
    for op in ({"noise": 8.0}, {"exposure": 2.0}, {"white_balance": 0.3}):
        hit = changed(x, run(x, camera_only(**op, camera_p=0.25))).mean()
        assert 0.17 < hit < 0.33, (op, hit)
    hit = changed(x, run(x, camera_only(grayscale=0.1))).mean()
    assert 0.05 < hit < 0.15


def test_white_balance_gains_red_and_blue_in_opposite_directions_within_the_range():
    x = np.full((64, 4, 4, 3), 100.0, np.float32)
    y = run(x, camera_only(white_balance=0.3, camera_p=1.0))[:, 0, 0]
    red, green, blue = y[:, 0] / 100.0, y[:, 1] / 100.0, y[:, 2] / 100.0
    np.testing.assert_allclose(green, 1.0, atol=1e-5)
    np.testing.assert_allclose(red - 1.0, 1.0 - blue, atol=1e-4)
    assert np.abs(red - 1.0).max() <= 0.3 + 1e-5
    assert (red > 1.1).any() and (red < 0.9).any()


def test_exposure_scales_light_by_up_to_its_stops_in_gamma_2_2():
    x = np.full((64, 4, 4, 3), 100.0, np.float32)
    gain = run(x, camera_only(exposure=2.0, camera_p=1.0))[:, 0, 0, 0] / 100.0
    stops = 2.2 * np.log2(gain)
    assert stops.min() >= -2.0 - 1e-3 and stops.max() <= 2.0 + 1e-3
    assert stops.min() < -1.0 and stops.max() > 1.0


def test_grayscale_makes_the_channels_equal_and_keeps_the_mean():
    x = photos()
    y = run(x, camera_only(grayscale=1.0))
    np.testing.assert_allclose(y[..., 0], y[..., 2], atol=1e-4)
    np.testing.assert_allclose(y[..., 0], x.mean(axis=3), atol=1e-3)


def test_blur_smooths_edges_and_keeps_flat_areas():
    edge = np.zeros((1, 16, 16, 3), np.float32)
    edge[:, :, 8:] = 200.0
    y = gaussian_blur(tf.constant(edge), tf.constant(1.5), radius=4).numpy()
    assert y.shape == edge.shape
    np.testing.assert_allclose(y[0, :, 0], 0.0, atol=1e-3)  # far from the edge: unchanged
    np.testing.assert_allclose(y[0, :, 15], 200.0, atol=1e-3)
    assert 0.0 < y[0, 8, 7, 0] < 100.0 < y[0, 8, 8, 0] < 200.0  # the step is now a ramp
    np.testing.assert_allclose(y.mean(), edge.mean(), rtol=1e-3)


def test_low_resolution_loses_detail_but_keeps_size_and_mean():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    y = downscale_upscale(tf.constant(x), tf.constant(0.5)).numpy()
    assert y.shape == x.shape
    assert np.abs(np.diff(y, axis=2)).mean() < 0.5 * np.abs(np.diff(x, axis=2)).mean()
    assert abs(y.mean() - x.mean()) < 1.0
    flat = np.full((1, 20, 20, 3), 77.0, np.float32)
    np.testing.assert_allclose(downscale_upscale(tf.constant(flat), 0.4).numpy(), 77.0, atol=1e-3)


def test_noise_has_at_most_the_requested_deviation():
    x = np.full((64, 16, 16, 3), 128.0, np.float32)
    y = run(x, camera_only(noise=10.0, camera_p=1.0))
    std = (y - x).reshape(64, -1).std(axis=1)
    assert std.max() < 10.0 * 1.15 and std.max() > 6.0
    assert abs((y - x).mean()) < 0.5


def test_camera_shifts_run_inside_a_tf_function():
    x = tf.constant(photos(n=4))
    fn = tf.function(lambda x, s: camera_shifts(x, CAMERA, s))
    a = fn(x, tf.constant([1, 2], tf.int64)).numpy()
    b = fn(x, tf.constant([1, 2], tf.int64)).numpy()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "options",
    [{"zoom": 1.5}, {"camera_p": -0.1}, {"grayscale": 2.0}, {"noise": -1.0}, {"white_balance": 1}],
)
def test_out_of_range_settings_are_refused(options):
    with pytest.raises(ValueError, match=next(iter(options))):
        Augment(**options)


def test_a_batch_where_no_image_or_every_image_is_picked_works():
    x = photos(n=2)
    rare = camera_only(blur=1.0, low_res=0.5, noise=5.0, grayscale=1e-6, camera_p=1e-6)
    np.testing.assert_allclose(run(x, rare), x, atol=1e-4)
    every = run(x, camera_only(blur=1.0, low_res=0.5, noise=5.0, grayscale=1.0, camera_p=1.0))
    assert changed(x, every).all()
