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
3. Above a memory budget (`cache_mb`, default `default_cache_mb()`: a quarter of the memory
   this process may use) the decoded photos go to `.npy` files on disk instead
   (`load_pixels(into=...)`), and the same pipelines gather each batch from them
   (`read_rows`): same batches, same augmentation seeds, same results; the OS page cache keeps
   the hot part of the file in memory that the kernel can take back.

This is why training is fast on a CPU: no JPEG is decoded twice, and the per-batch work is a
handful of vectorised ops instead of per-image Python.
"""

from __future__ import annotations

import glob
import math
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.augment import Augment, augment_batch
from edgecnn.runtime.contract import Contract
from edgecnn.runtime.dataset import Dataset, Decoded, list_dataset, load_pixels, read_rows
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.formatting import size

MIN_SIDE = 8  # images smaller than this on either side carry no usable content
_EPOCH_LIMIT = 1_000_000  # the training stream is endless in practice; fit() counts the steps
# The decoded cache's default budget is this share of the memory the process may use.  In memory
# the photos are held twice while training (numpy's array and TensorFlow's copy of it), so a
# quarter leaves half of the memory to TensorFlow, the model and everything else.
CACHE_SHARE = 0.25
_MB = 1 << 20


@dataclass
class Splits:
    """Decoded train/validation data, plus everything the run's report needs to say about it."""

    contract: Contract
    train: Decoded
    val: Decoded
    fingerprint: str
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)
    cache: Path | None = None  # the folder of the on-disk cache, when the photos are on disk

    def close(self) -> None:
        """Remove the on-disk cache's folder (no-op for photos in memory); `train` calls this
        when the run ends, however it ends."""
        if self.cache is not None:
            shutil.rmtree(self.cache, ignore_errors=True)

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
    cache_mb: float | None = None,
    cache_beside: str | os.PathLike | None = None,
) -> Splits:
    """List, split, screen and decode the training data at `img_size` (see the module docstring).

    `train_size` decodes the training images at that size instead (validation stays at
    `img_size`): for nets trained at a lower resolution than they run at.

    `cache_mb` is the memory budget of the decoded photos in MB (2**20 bytes; None:
    `default_cache_mb()`).  When train + validation would take more, they are decoded into
    `train.npy` and `val.npy` in a new folder beside `cache_beside` (`<name>.decoded-HOST-PID-*`;
    None: in the system's temp folder), one line on stderr says so, and `Splits.close()`
    removes it.  Folders left beside it by ended processes of this host are removed first.

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
    need = _decoded_bytes(len(train_set), train_contract) + _decoded_bytes(len(val_set), contract)
    budget = default_cache_mb() if cache_mb is None else cache_mb
    if math.isnan(budget):  # every comparison with NaN is False: it would pass the check below
        raise InputError(f"--cache-mb must be a number of MB, got {cache_mb}")
    if budget < 0:
        raise InputError(f"--cache-mb must be >= 0, got {cache_mb}")
    cache = None
    if need > budget * _MB:
        cache = _cache_folder(cache_beside)
        print(
            f"decoded photos take {size(need)}, over the {size(budget * _MB)} cache budget "
            f"(--cache-mb): cached on disk in {cache}",
            file=sys.stderr,
        )
    same_size = train_contract == contract  # then the pixels' digests find shared photos
    try:
        train = load_pixels(
            train_set,
            train_contract,
            desc="decoding train",
            progress=progress,
            into=cache / "train.npy" if cache else None,
            digests=same_size,
        )
        val = load_pixels(
            val_set,
            contract,
            desc="decoding val",
            progress=progress,
            into=cache / "val.npy" if cache else None,
            digests=same_size,
        )
        _require_every_class(train, train_set.classes, "training")
        _warn_shared_photos(train, val)
    except BaseException:
        if cache is not None:
            shutil.rmtree(cache, ignore_errors=True)
        raise
    return Splits(
        contract=contract,
        train=train,
        val=val,
        fingerprint=fingerprint,
        skipped=[*small_train, *train.skipped, *small_val, *val.skipped],
        source=source,
        cache=cache,
    )


def _warn_shared_photos(train: Decoded, val: Decoded) -> None:
    """One line on stderr when validation photos are training photos too: `--val-dir` naming
    the training folder, or the same photo under two names (copies are common in collected
    datasets). Their accuracy says little of new photos. Found by the decoded pixels' digests,
    or by the files when training decodes at another size (`--train-size`)."""
    if train.digests is not None and val.digests is not None:
        seen = set(train.digests.tolist())
        shared = sum(d in seen for d in val.digests.tolist())
        what = "has the same pixels as a training photo", "have the same pixels as training photos"
    else:
        seen = {os.path.realpath(p) for p in train.paths}
        shared = sum(os.path.realpath(p) in seen for p in val.paths)
        what = "is a training file too", "are training files too"
    if shared:
        print(
            f"edgecnn train: warning: {shared} of the {len(val.paths)} validation photos "
            f"{what[shared > 1]}: validation accuracy will flatter the model",
            file=sys.stderr,
        )


def default_cache_mb() -> int:
    """The decoded photos' default memory budget in MB: `CACHE_SHARE` (a quarter) of the
    memory this process may use, physical RAM or its cgroup's limit when lower (a container's
    limit, which /proc/meminfo does not show)."""
    return int(_memory_bytes() * CACHE_SHARE) // _MB


def _memory_bytes() -> int:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf names: assume a small machine
        total = 4096 * _MB
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if limit.isdigit():  # cgroup v2 says "max" when there is no limit
            total = min(total, int(limit))
    return total


def _decoded_bytes(count: int, contract: Contract) -> int:
    return count * contract.height * contract.width * 3


def _cache_folder(beside: str | os.PathLike | None) -> Path:
    """A new folder `<beside>.decoded-HOST-PID-XXXXXXXX` for this process's disk cache, after
    removing those beside it whose process on this host has ended (a killed run's leftovers)."""
    if beside is None:
        parent, name = Path(tempfile.gettempdir()), "edgecnn"
    else:
        parent, name = Path(beside).parent, Path(beside).name
    parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().replace("-", "_")
    prefix = f"{name}.decoded-{host}-"
    for old in parent.glob(f"{glob.escape(prefix)}*"):
        pid = old.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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
    gather = _gather(pixels)
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
        x = tf.cast(gather(ix), tf.float32)
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

    ys = np.asarray(targets, dtype=np.int32)
    if not isinstance(pixels, np.memmap):
        ds = tf.data.Dataset.from_tensor_slices((pixels, ys))
        ds = ds.batch(batch).map(lambda x, y: (tf.cast(x, tf.float32), y))
        return _with_options(ds.prefetch(tf.data.AUTOTUNE))
    n, gather, ys = len(pixels), _gather(pixels), tf.constant(ys)

    def load(start):
        ix = tf.range(start, tf.minimum(start + batch, n))
        return tf.cast(gather(ix), tf.float32), tf.gather(ys, ix)

    ds = tf.data.Dataset.range(0, n, batch).map(load)
    return _with_options(ds.prefetch(tf.data.AUTOTUNE))


def _gather(pixels: np.ndarray):
    """`ix -> pixels[ix]` as a tf op: `tf.gather` from a constant for photos in memory,
    `read_rows` through `tf.numpy_function` for photos on disk (a `np.memmap`)."""
    import tensorflow as tf

    if not isinstance(pixels, np.memmap):
        px = tf.constant(pixels)
        return lambda ix: tf.gather(px, ix)
    shape = [None, *pixels.shape[1:]]

    def gather(ix):
        x = tf.numpy_function(lambda i: read_rows(pixels, i), [ix], tf.uint8, stateful=False)
        return tf.ensure_shape(x, shape)

    return gather


def _with_options(ds):
    import tensorflow as tf

    opts = tf.data.Options()
    # Shard by batch across workers under MultiWorkerMirroredStrategy; a no-op on one host.
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    opts.deterministic = True
    return ds.with_options(opts)
