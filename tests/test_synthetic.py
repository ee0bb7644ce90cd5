"""The built-in dataset: layout, determinism, and that colour alone does not give the class."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from edgecnn.runtime.dataset import list_dataset
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.preprocess import read_image
from edgecnn.synthetic import SHAPES, generate, generate_split


def _digest(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_layout_sizes_and_formats(tmp_path):
    root = generate(tmp_path / "d", classes=4, per_class=6, size=40, seed=3)
    ds = list_dataset(root)
    assert ds.classes == tuple(sorted(list(SHAPES)[:4]))
    assert ds.counts() == {c: 6 for c in ds.classes}
    suffixes = {p.suffix for p in ds.paths}
    assert suffixes == {".png", ".jpg"}
    for p in ds.paths[:5]:
        assert read_image(p).shape == (40, 40, 3)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generate(tmp_path / "a", classes=3, per_class=4, size=32, seed=7)
    b = generate(tmp_path / "b", classes=3, per_class=4, size=32, seed=7)
    c = generate(tmp_path / "c", classes=3, per_class=4, size=32, seed=8)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_split_is_disjoint(tmp_path):
    train_dir, val_dir = generate_split(
        tmp_path, classes=2, train_per_class=5, val_per_class=3, size=24, seed=0
    )
    assert list_dataset(train_dir).counts() == {"circle": 5, "square": 5}
    assert list_dataset(val_dir).counts() == {"circle": 3, "square": 3}
    train_hashes = set(_digest(train_dir).values())
    assert not train_hashes & set(_digest(val_dir).values())


def test_mean_colour_does_not_separate_classes(tmp_path):
    """A nearest-class-mean classifier on mean RGB stays near chance: shape must be learned."""
    root = generate(tmp_path / "d", classes=3, per_class=60, size=32, seed=0)
    ds = list_dataset(root)
    feats = np.stack([read_image(p).reshape(-1, 3).mean(0) for p in ds.paths])
    y = ds.targets
    train = np.arange(len(y)) % 2 == 0
    centroids = np.stack([feats[train & (y == k)].mean(0) for k in range(3)])
    pred = np.argmin(((feats[~train, None] - centroids) ** 2).sum(-1), axis=1)
    assert (pred == y[~train]).mean() < 0.55  # chance is 0.33


@pytest.mark.parametrize(
    "kwargs",
    [{"classes": 1}, {"classes": ["circle", "blob"]}, {"per_class": 0}, {"formats": ("gif",)}],
)
def test_bad_options(tmp_path, kwargs):
    with pytest.raises(InputError):
        generate(tmp_path, **kwargs)


def test_a_failed_write_leaves_the_folder_clean(tmp_path):
    """Images go through a temp file + rename: when the final name is taken by a folder, the
    write fails and no half-written or temp file is left behind."""
    blocked = tmp_path / "circle" / "circle_0000.png"
    blocked.mkdir(parents=True)
    with pytest.raises(OSError):
        generate(tmp_path, classes=2, per_class=1, size=16)
    assert [p.name for p in (tmp_path / "circle").iterdir()] == ["circle_0000.png"]
    assert blocked.is_dir()
