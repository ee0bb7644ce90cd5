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
