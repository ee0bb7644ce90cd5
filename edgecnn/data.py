"""Training data: decode once with the shared contract, cache, augment on the fly with tf ops.

1. `prepare(...)` lists the folders (`edgecnn.runtime.dataset`), splits off validation (a
   `--val-dir` or a seeded stratified `--val-split`), screens out images too small to carry
   anything, and decodes every image ONCE with the runtime's own `to_pixels` into uint8 tensors
   at model resolution (training images at the training resolution when the net trains at a
   lower one than it runs at).  Train and serve share that function, so there is no skew.
2. `train_dataset(...)` turns the cached tensors into an endless, seeded `tf.data` pipeline:
   each epoch is a stateless shuffle, each batch is gathered from the cache and augmented with
   batched tf ops (one affine warp for flip + zoom + rotation + shift, then colour jitter).
   Augmentation therefore never enters the model, and the same seed gives the same batches
   (also after `--resume`, because epoch `e` always draws from seed `(seed, e)`).

This is why training is fast on a CPU: no JPEG is decoded twice, and the per-batch work is a
handful of vectorised ops instead of per-image Python.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.runtime.contract import Contract
from edgecnn.runtime.dataset import Dataset, Decoded, list_dataset, load_pixels
from edgecnn.runtime.errors import InputError

MIN_SIDE = 8  # images smaller than this on either side carry no usable content
_EPOCH_LIMIT = 1_000_000  # the training stream is endless in practice; fit() counts the steps


@dataclass(frozen=True)
class Augment:
    """Random augmentation applied to training batches (never to validation, never in the model).

    `zoom` crops in by up to that fraction, `rotation` is in degrees either way, `shift` is a
    fraction of the image size; the colour terms are relative jitters.  `Augment.none()` turns
    everything off.
    """

    flip: bool = True
    zoom: float = 0.2
    rotation: float = 12.0
    shift: float = 0.08
    brightness: float = 0.15
    contrast: float = 0.2
    saturation: float = 0.2

    @classmethod
    def none(cls) -> Augment:
        return cls(False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass
class Splits:
    """Decoded train/validation data, plus everything the run's report needs to say about it."""

    contract: Contract
    train: Decoded
    val: Decoded
    fingerprint: str
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.contract.labels

    def class_weights(self) -> dict[int, float] | None:
        """Balanced weights `n / (k * count)` when the training classes are imbalanced."""
        counts = np.bincount(self.train.targets, minlength=len(self.classes)).astype(np.float64)
        if counts.max() <= 1.1 * counts.min():
            return None
        weights = counts.sum() / (len(counts) * counts)
        return {i: float(w) for i, w in enumerate(weights)}


def prepare(
    data_dir: str | os.PathLike,
    *,
    img_size: int,
    val_dir: str | os.PathLike | None = None,
    val_split: float = 0.2,
    seed: int = 0,
    progress: bool | None = None,
    train_size: int | None = None,
) -> Splits:
    """List, split, screen and decode the training data at `img_size` (see the module docstring).

    `train_size` decodes the training images at that size instead (validation stays at
    `img_size`): for nets trained at a lower resolution than they run at.

    The returned `Splits.contract` is the preprocessing contract (labels = sorted class folders)
    that the data was decoded with, and that the trained model will carry.

    Raises InputError for anything that makes training impossible: a missing folder, fewer than
    2 classes, an empty class, no decodable image, or a class left with no usable image.
    """
    train_set = list_dataset(data_dir)
    if val_dir is not None:
        val_set = list_dataset(val_dir, classes=train_set.classes)
        source = {"data_dir": str(Path(data_dir)), "val_dir": str(Path(val_dir))}
    else:
        train_set, val_set = train_set.stratified_split(val_split, seed)
        source = {"data_dir": str(Path(data_dir)), "val_split": val_split}
    fingerprint = _fingerprint(train_set, val_set)
    train_set, small_train = screen_small(train_set)
    val_set, small_val = screen_small(val_set)
    contract = Contract(labels=train_set.classes, height=img_size, width=img_size)
    train_contract = contract
    if train_size is not None and train_size != img_size:
        train_contract = replace(contract, height=train_size, width=train_size)
    train = load_pixels(train_set, train_contract, desc="decoding train", progress=progress)
    val = load_pixels(val_set, contract, desc="decoding val", progress=progress)
    _require_every_class(train, train_set.classes, "training")
    return Splits(
        contract=contract,
        train=train,
        val=val,
        fingerprint=fingerprint,
        skipped=[*small_train, *train.skipped, *small_val, *val.skipped],
        source=source,
    )


def _fingerprint(train: Dataset, val: Dataset) -> str:
    import hashlib

    return hashlib.sha256(f"{train.fingerprint()}:{val.fingerprint()}".encode()).hexdigest()[:16]


def screen_small(dataset: Dataset) -> tuple[Dataset, list[tuple[Path, str]]]:
    """Drop images smaller than MIN_SIDE px on a side (read from the header, no decoding).

    Files whose header cannot be read are kept: `load_pixels` decodes them and reports why they
    fail, so every skip has one reason.
    """
    try:
        from PIL import Image
    except ImportError:  # Pillow is in [train]; without it tiny images are simply upscaled
        return dataset, []
    keep: list[int] = []
    skipped: list[tuple[Path, str]] = []
    for i, path in enumerate(dataset.paths):
        try:
            with Image.open(path) as im:
                w, h = im.size
        except Exception:  # Pillow raises many types on garbage; load_pixels will explain
            keep.append(i)
            continue
        if min(w, h) < MIN_SIDE:
            skipped.append((path, f"{w}x{h} pixels is too small to train on (min {MIN_SIDE}px)"))
        else:
            keep.append(i)
    if not skipped:
        return dataset, []
    if not keep:
        raise InputError(f"{dataset.root}: every image is smaller than {MIN_SIDE}x{MIN_SIDE} px")
    return dataset.subset(np.asarray(keep)), skipped


def _require_every_class(decoded: Decoded, classes: tuple[str, ...], what: str) -> None:
    counts = np.bincount(decoded.targets, minlength=len(classes))
    empty = [c for c, n in zip(classes, counts) if n == 0]
    if empty:
        raise InputError(
            f"no usable {what} images left for class(es) {empty} after skipping bad files"
        )


# --- tf.data -----------------------------------------------------------------------------------


def steps_per_epoch(n: int, batch: int) -> int:
    return max(1, math.ceil(n / batch))


def train_dataset(
    pixels: np.ndarray,
    targets: np.ndarray,
    *,
    batch: int,
    seed: int,
    augment: Augment | None = None,
    start_epoch: int = 0,
    class_weights: dict[int, float] | None = None,
):
    """An endless stream of augmented float32 batches `(x, y[, w])`; fit with steps_per_epoch.

    Epoch `e` is a stateless permutation drawn from `(seed, e)` and batch `b` of it is augmented
    with seed `(seed, e * 100003 + b)`, so batches are identical across runs and resumes.
    """
    import tensorflow as tf

    aug = augment if augment is not None else Augment()
    n = len(pixels)
    px = tf.constant(pixels)
    ys = tf.constant(np.asarray(targets, dtype=np.int32))
    ws = None
    if class_weights:
        table = np.asarray([class_weights[i] for i in range(len(class_weights))], np.float32)
        ws = tf.constant(table[np.asarray(targets)])

    def epoch_batches(epoch):
        order = tf.argsort(tf.random.stateless_uniform([n], seed=tf.stack([seed, epoch])))
        idx = tf.data.Dataset.from_tensor_slices(order).batch(batch)
        return idx.enumerate().map(lambda b, ix: (epoch, b, ix))

    def make_batch(epoch, b, ix):
        x = tf.cast(tf.gather(px, ix), tf.float32)
        x = augment_batch(x, aug, tf.stack([seed + 1, epoch * 100_003 + b]))
        y = tf.gather(ys, ix)
        if ws is None:
            return x, y
        return x, y, tf.gather(ws, ix)

    ds = tf.data.Dataset.range(start_epoch, _EPOCH_LIMIT).flat_map(epoch_batches)
    ds = ds.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _with_options(ds.prefetch(tf.data.AUTOTUNE))


def eval_dataset(pixels: np.ndarray, targets: np.ndarray, *, batch: int):
    """Validation batches: the cached pixels as float32, in order, no augmentation."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((pixels, np.asarray(targets, dtype=np.int32)))
    ds = ds.batch(batch).map(lambda x, y: (tf.cast(x, tf.float32), y))
    return _with_options(ds.prefetch(tf.data.AUTOTUNE))


def _with_options(ds):
    import tensorflow as tf

    opts = tf.data.Options()
    # Shard by batch across workers under MultiWorkerMirroredStrategy; a no-op on one host.
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    opts.deterministic = True
    return ds.with_options(opts)


def augment_batch(x, aug: Augment, seed):
    """Augment a float32 NHWC batch of 0..255 pixels with stateless random ops from `seed`.

    Flip, zoom, rotation and shift are composed into one affine matrix per image and applied in
    a single `ImageProjectiveTransformV3` (reflect padding), then brightness/contrast/saturation.
    """
    import tensorflow as tf

    shape = tf.shape(x)
    bsz, h, w = shape[0], shape[1], shape[2]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=8)

    def uniform(i, lo, hi):
        return tf.random.stateless_uniform([bsz], seed=seeds[i], minval=lo, maxval=hi)

    geometric = aug.flip or aug.zoom or aug.rotation or aug.shift
    if geometric:
        hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
        flip = tf.where(uniform(0, 0.0, 1.0) < 0.5, -1.0, 1.0) if aug.flip else tf.ones([bsz])
        scale = uniform(1, 1.0 - aug.zoom, 1.0)
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
    return tf.clip_by_value(x, 0.0, 255.0)
