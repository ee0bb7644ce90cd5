"""The decoded-photo cache on disk (`--cache-mb`): the memory budget holds while decoding, the
files are numpy's own and complete, and training from them gives the same run as in memory."""

from __future__ import annotations

import csv
import os
import socket
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from _train_fixtures import FAST, tiny_split

from edgecnn.data import _MB, CACHE_SHARE, default_cache_mb, prepare
from edgecnn.runtime.dataset import read_rows
from edgecnn.runtime.errors import InputError
from edgecnn.synthetic import generate_split

IMG = 64  # decoded at 64x64: 12 KiB a photo
BUDGET_MB = 1.0
# What the disk path may allocate beyond the budget while decoding: the listing, Pillow's header
# reads, the few photos being decoded at once (a few KiB each here) and, when a photo could not be
# decoded, the 256 KiB chunks (held twice) that copy the good rows into the final file.
SLACK_MB = 1.0


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """240 small photos (3 MiB decoded at 64x64, three times the budget) and one corrupt file."""
    root = tmp_path_factory.mktemp("photos")
    train_dir, val_dir = generate_split(
        root, classes=3, train_per_class=60, val_per_class=20, size=48, seed=0
    )
    (train_dir / "circle" / "zz_corrupt.jpg").write_bytes(b"not a jpeg")
    return train_dir, val_dir


def _peak_mb(fn):
    """`fn()`'s result and the peak of Python and numpy allocations while it ran (numpy
    reports its buffers to tracemalloc)."""
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak / _MB


def test_decoding_stays_under_the_budget_and_gives_the_same_pixels(photos, tmp_path, capsys):
    train_dir, val_dir = photos
    beside = tmp_path / "run"
    host = socket.gethostname().replace("-", "_")
    dead = tmp_path / f"run.decoded-{host}-999999999-x"  # beyond any pid: a killed run's folder
    live = tmp_path / f"run.decoded-{host}-{os.getpid()}-x"  # a live process's: left alone
    dead.mkdir()
    live.mkdir()

    def decode(**kw):
        return prepare(train_dir, val_dir=val_dir, img_size=IMG, progress=False, **kw)

    memory, memory_peak = _peak_mb(lambda: decode(cache_mb=1000))
    disk, disk_peak = _peak_mb(lambda: decode(cache_mb=BUDGET_MB, cache_beside=beside))
    decoded_mb = (memory.train.pixels.nbytes + memory.val.pixels.nbytes) / _MB
    assert decoded_mb > 2.5 * BUDGET_MB
    assert memory_peak > decoded_mb > BUDGET_MB
    assert disk_peak < BUDGET_MB + SLACK_MB, (disk_peak, memory_peak)

    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "cached on disk in" in lines[0], lines
    listed = 181 + 60  # the budget is checked before decoding: the corrupt file counts
    assert str(disk.cache) in lines[0] and f"take {listed * IMG * IMG * 3 / _MB:.1f} MB" in lines[0]
    assert disk.cache.parent == tmp_path and disk.cache.name.startswith("run.decoded-")
    assert not dead.exists() and live.exists()
    # numpy's own files, complete (the corrupt photo's row compacted away), nothing temporary
    assert sorted(p.name for p in disk.cache.iterdir()) == ["train.npy", "val.npy"]
    assert [p for _, p in disk.skipped] == [p for _, p in memory.skipped]
    assert len(disk.skipped) == 1
    for part in ("train", "val"):
        mem, on_disk = getattr(memory, part), getattr(disk, part)
        assert isinstance(on_disk.pixels, np.memmap) and not on_disk.pixels.flags.writeable
        np.testing.assert_array_equal(np.load(disk.cache / f"{part}.npy"), mem.pixels)
        np.testing.assert_array_equal(on_disk.targets, mem.targets)
        assert on_disk.paths == mem.paths
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(memory.train.pixels))[:37]
    np.testing.assert_array_equal(read_rows(disk.train.pixels, idx), memory.train.pixels[idx])
    np.testing.assert_array_equal(
        read_rows(disk.val.pixels, np.arange(5, 40)), memory.val.pixels[5:40]
    )
    disk.close()
    assert not disk.cache.exists()


def test_within_the_budget_the_photos_stay_in_memory(photos, tmp_path, capsys):
    train_dir, val_dir = photos
    splits = prepare(
        train_dir, val_dir=val_dir, img_size=32, cache_mb=1.0, cache_beside=tmp_path / "run"
    )
    assert splits.cache is None and not isinstance(splits.train.pixels, np.memmap)
    assert list(tmp_path.iterdir()) == []
    assert "cached on disk" not in capsys.readouterr().err
    with pytest.raises(InputError, match="--cache-mb must be >= 0"):
        prepare(train_dir, val_dir=val_dir, img_size=32, cache_mb=-1)
    with pytest.raises(InputError, match="--cache-mb must be a number of MB, got nan"):
        prepare(train_dir, val_dir=val_dir, img_size=32, cache_mb=float("nan"))


def test_default_budget_is_a_quarter_of_the_memory():
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert CACHE_SHARE == 0.25
    assert 0 < default_cache_mb() <= physical * CACHE_SHARE / _MB


def _history(run_dir: Path) -> list[dict]:
    with open(run_dir / "history.csv") as f:
        return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in csv.DictReader(f)]


def test_training_from_disk_matches_training_in_memory(tmp_path, capsys):
    """The same seed gives the same history and weights, bit for bit: the batches, their order
    and the augmentation seeds do not depend on where the decoded photos live.  The disk run
    goes through the command line, so this also checks that --cache-mb reaches training."""
    keras = pytest.importorskip("keras")
    from edgecnn import train
    from edgecnn.cli import main

    train_dir, val_dir = tiny_split(tmp_path / "data")
    settings = {**FAST, "epochs": 2}
    memory = train(train_dir, val_dir=val_dir, out=tmp_path / "memory", **settings)
    capsys.readouterr()
    argv = ["train", str(train_dir), "--val-dir", str(val_dir), "--out", str(tmp_path / "disk")]
    argv += ["--arch", settings["arch"], "--img-size", str(settings["img_size"])]
    argv += ["--epochs", "2", "--batch", str(settings["batch"]), "--quiet", "--cache-mb", "0"]
    assert main(argv) == 0

    err = capsys.readouterr().err.strip().splitlines()
    disk_lines = [line for line in err if "cached on disk in" in line]
    assert len(disk_lines) == 1, err
    assert str(tmp_path / "disk.decoded-") in disk_lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "disk", "memory"]  # removed
    assert _history(tmp_path / "disk") == _history(memory.path)
    in_memory, on_disk = (
        keras.models.load_model(path, compile=False).get_weights()
        for path in (memory.model_path, tmp_path / "disk" / "model.keras")
    )
    assert len(in_memory) == len(on_disk)
    for a, b in zip(in_memory, on_disk):
        np.testing.assert_array_equal(a, b)
