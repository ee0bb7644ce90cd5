"""Training-batch augmentation: batched, stateless tf ops drawn from one seed per batch.

`augment_batch(x, aug, seed)` turns a float32 NHWC batch of 0..255 pixels into an augmented one:

1. geometry: flip, zoom, rotation and shift composed into one affine warp per image;
2. colour jitter: brightness, contrast, saturation;
3. camera degradations, each applied to an image with probability `Augment.camera_p` (so most
   photos stay clean): white balance, exposure, grayscale, gaussian blur, low resolution
   (downscale then upscale) and sensor noise.  They mirror the shifts of
   `edgecnn.runtime.shifts` at model resolution, so the net meets other cameras' photos in
   training; `docs/edge-recipe.md` records what they changed.

Every random number comes from `tf.random.stateless_*` ops keyed by the batch's seed, so the same
seed gives the same batch on every run and every resume.  The camera ops draw from a seed folded
off the batch's own, so turning them off leaves steps 1-2 exactly as they were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_NO_CAMERA = {
    "zoom_out": 0.0,
    "white_balance": 0.0,
    "exposure": 0.0,
    "grayscale": 0.0,
    "blur": 0.0,
    "low_res": 0.0,
    "noise": 0.0,
    "camera_p": 0.0,
}


@dataclass(frozen=True)
class Augment:
    """Random augmentation applied to training batches (never to validation, never in the model).

    `zoom` crops in by up to that fraction and `zoom_out` shows up to that fraction more around
    the photo (reflected); `rotation` is in degrees either way, `shift` a fraction of the image
    size; the colour terms are relative jitters.

    Camera degradations (each applied to an image with probability `camera_p`):
    `white_balance` is the largest colour temperature change (red gain `1 + t`, blue gain
    `1 - t`, `|t| <=` it), `exposure` the largest change of light in stops either way (gamma 2.2
    as in sRGB), `blur` the largest gaussian sigma in pixels, `low_res` the smallest downscale
    factor before scaling back up, `noise` the largest noise standard deviation in grey levels.
    `grayscale` is its own probability.  `Augment.none()` turns everything off;
    `Augment.previous()` is the default before the camera degradations (zoom 0.2, shift 0.08).
    The defaults and what they were chosen over: `docs/edge-recipe.md`, "Photos from elsewhere".
    """

    flip: bool = True
    zoom: float = 0.3
    rotation: float = 12.0
    shift: float = 0.12
    brightness: float = 0.15
    contrast: float = 0.2
    saturation: float = 0.2
    zoom_out: float = 0.15
    white_balance: float = 0.3
    exposure: float = 2.0
    grayscale: float = 0.1
    blur: float = 1.5
    low_res: float = 0.4
    noise: float = 10.0
    camera_p: float = 0.25

    def __post_init__(self) -> None:
        for name in ("zoom", "zoom_out", "grayscale", "camera_p", "low_res"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Augment.{name} must be within 0..1, got {value}")
        for name in ("white_balance", "exposure", "blur", "noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"Augment.{name} must be >= 0, got {getattr(self, name)}")
        if self.white_balance >= 1.0:
            raise ValueError(f"Augment.white_balance must be < 1, got {self.white_balance}")

    @classmethod
    def none(cls) -> Augment:
        return cls(False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, **_NO_CAMERA)

    @classmethod
    def previous(cls) -> Augment:
        return cls(zoom=0.2, shift=0.08, **_NO_CAMERA)

    @property
    def camera(self) -> bool:
        """Whether any camera degradation can fire."""
        ops = (self.white_balance, self.exposure, self.blur, self.low_res, self.noise)
        return bool(self.grayscale) or (self.camera_p > 0 and any(ops))


def augment_batch(x, aug: Augment, seed):
    """Augment a float32 NHWC batch of 0..255 pixels with stateless random ops from `seed`.

    Flip, zoom, rotation and shift are composed into one affine matrix per image and applied in
    a single `ImageProjectiveTransformV3` (reflect padding), then brightness/contrast/saturation,
    then the camera degradations (`camera_shifts`).
    """
    import tensorflow as tf

    shape = tf.shape(x)
    bsz, h, w = shape[0], shape[1], shape[2]
    seed = tf.cast(seed, tf.int64)
    seeds = tf.random.experimental.stateless_split(seed, num=8)

    def uniform(i, lo, hi):
        return tf.random.stateless_uniform([bsz], seed=seeds[i], minval=lo, maxval=hi)

    geometric = aug.flip or aug.zoom or aug.zoom_out or aug.rotation or aug.shift
    if geometric:
        hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
        flip = tf.where(uniform(0, 0.0, 1.0) < 0.5, -1.0, 1.0) if aug.flip else tf.ones([bsz])
        scale = uniform(1, 1.0 - aug.zoom, 1.0 + aug.zoom_out)
        theta = uniform(2, -aug.rotation, aug.rotation) * (math.pi / 180.0)
        tx = uniform(3, -aug.shift, aug.shift) * wf
        ty = uniform(4, -aug.shift, aug.shift) * hf
        cos, sin = tf.cos(theta) * scale, tf.sin(theta) * scale
        # output pixel (x, y) samples input centre + R(theta) * scale * Flip * (p - centre) + t
        m00, m01, m10, m11 = flip * cos, -sin, flip * sin, cos
        cx, cy = (wf - 1.0) / 2.0, (hf - 1.0) / 2.0
        a2 = cx + tx - m00 * cx - m01 * cy
        b2 = cy + ty - m10 * cx - m11 * cy
        zeros = tf.zeros([bsz])
        transforms = tf.stack([m00, m01, a2, m10, m11, b2, zeros, zeros], axis=1)
        x = tf.raw_ops.ImageProjectiveTransformV3(
            images=x,
            transforms=transforms,
            output_shape=tf.stack([h, w]),
            fill_value=0.0,
            interpolation="BILINEAR",
            fill_mode="REFLECT",
        )
    if aug.brightness or aug.contrast or aug.saturation:
        per_image = [bsz, 1, 1, 1]
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        contrast = tf.reshape(uniform(5, 1.0 - aug.contrast, 1.0 + aug.contrast), per_image)
        bright = tf.reshape(uniform(6, -aug.brightness, aug.brightness) * 255.0, per_image)
        x = (x - mean) * contrast + mean + bright
        gray = tf.reduce_mean(x, axis=3, keepdims=True)
        sat = tf.reshape(uniform(7, 1.0 - aug.saturation, 1.0 + aug.saturation), per_image)
        x = gray + (x - gray) * sat
    x = tf.clip_by_value(x, 0.0, 255.0)
    if aug.camera:
        x = camera_shifts(x, aug, tf.random.experimental.stateless_fold_in(seed, 1))
    return x


# Seeds of the camera ops, one stream each: adding an op never changes another's draws.
_WB, _EXPOSURE, _GRAY, _BLUR, _LOW_RES, _NOISE = range(6)
_DRAWS = 3  # per op: whether it fires on each image, its strength, its noise


def camera_shifts(x, aug: Augment, seed):
    """The camera degradations of `aug` on a float32 NHWC 0..255 batch, seeded by `seed`.

    Each op fires on an image with probability `aug.camera_p` (grayscale: `aug.grayscale`) and
    is computed on those images only, so its cost scales with the probability.  Blur sigma and
    the low-resolution factor are drawn once per batch (one kernel, one resize); every other
    strength once per image.  Returns 0..255.
    """
    import tensorflow as tf

    bsz = tf.shape(x)[0]
    streams = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=6 * _DRAWS)

    def draw(op, k, shape, lo=0.0, hi=1.0):
        return tf.random.stateless_uniform(
            shape, seed=streams[op * _DRAWS + k], minval=lo, maxval=hi
        )

    def on_some(op, p, change):
        """`change(images, picked)` on the images that op `op` fires on (probability `p`),
        computed on those images only; `picked` indexes them in the batch."""
        picked = tf.where(draw(op, 0, [bsz]) < p)[:, 0]
        return tf.cond(  # convolutions mis-shape an empty batch: skip it
            tf.size(picked) > 0,
            lambda: tf.tensor_scatter_nd_update(
                x, picked[:, None], change(tf.gather(x, picked), picked)
            ),
            lambda: x,
        )

    def per_image(op, lo, hi, picked):
        return tf.reshape(tf.gather(draw(op, 1, [bsz], lo, hi), picked), [-1, 1, 1, 1])

    p = aug.camera_p
    if aug.white_balance and p:
        wb = aug.white_balance

        def white_balance(images, picked):
            t = per_image(_WB, -wb, wb, picked)
            gains = tf.concat([1.0 + t, tf.ones_like(t), 1.0 - t], axis=-1)  # R, G, B (or B, G, R)
            return images * gains

        x = on_some(_WB, p, white_balance)
    if aug.exposure and p:

        def exposure(images, picked):
            stops = per_image(_EXPOSURE, -aug.exposure, aug.exposure, picked)
            return images * tf.pow(2.0, stops / 2.2)  # light x 2^stops through gamma 2.2

        x = on_some(_EXPOSURE, p, exposure)
    x = tf.clip_by_value(x, 0.0, 255.0)
    if aug.grayscale:

        def grayscale(images, picked):
            return tf.broadcast_to(tf.reduce_mean(images, axis=3, keepdims=True), tf.shape(images))

        x = on_some(_GRAY, aug.grayscale, grayscale)
    if aug.blur and p:
        sigma = draw(_BLUR, 1, [], min(0.5, aug.blur), aug.blur)
        radius = math.ceil(2.5 * aug.blur)
        x = on_some(_BLUR, p, lambda images, _: gaussian_blur(images, sigma, radius=radius))
    if aug.low_res and p:
        factor = draw(_LOW_RES, 1, [], aug.low_res, 1.0)
        x = on_some(_LOW_RES, p, lambda images, _: downscale_upscale(images, factor))
    if aug.noise and p:
        noise_seed = streams[_NOISE * _DRAWS + 2]

        def noise(images, picked):
            std = per_image(_NOISE, 0.0, aug.noise, picked)
            return images + std * tf.random.stateless_normal(tf.shape(images), seed=noise_seed)

        x = on_some(_NOISE, p, noise)
    return tf.clip_by_value(x, 0.0, 255.0)


def gaussian_blur(x, sigma, *, radius: int):
    """A separable gaussian blur of scalar `sigma` pixels (mirrored edges) on an NHWC batch."""
    import tensorflow as tf

    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    taps = tf.exp(-0.5 * tf.square(offsets / tf.maximum(sigma, 1e-3)))
    taps /= tf.reduce_sum(taps)
    channels = tf.shape(x)[3]
    rows = tf.tile(tf.reshape(taps, [-1, 1, 1, 1]), [1, 1, channels, 1])
    cols = tf.tile(tf.reshape(taps, [1, -1, 1, 1]), [1, 1, channels, 1])
    pad = [[0, 0], [radius, radius], [radius, radius], [0, 0]]
    x = tf.pad(x, pad, mode="SYMMETRIC")  # REFLECT refuses an empty batch
    x = tf.nn.depthwise_conv2d(x, rows, strides=[1, 1, 1, 1], padding="VALID")
    return tf.nn.depthwise_conv2d(x, cols, strides=[1, 1, 1, 1], padding="VALID")


def downscale_upscale(x, factor):
    """An NHWC batch at `factor` of its size (area average), scaled back up bilinearly: a
    lower-resolution sensor's photo."""
    import tensorflow as tf

    size = tf.shape(x)[1:3]
    small = tf.maximum(1, tf.cast(tf.round(tf.cast(size, tf.float32) * factor), tf.int32))
    return tf.image.resize(tf.image.resize(x, small, method="area"), size, method="bilinear")
