"""Which files of a folder count as photos: the same rule for training, `eval` and `predict`."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecnn.commands.predict import _expand
from edgecnn.runtime.dataset import list_dataset
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.preprocess import image_files


def _photo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), 127, np.uint8))
    return path


def _class_folder(folder: Path) -> list[Path]:
    """A class folder as copied from a NAS or a Mac: photos, and thumbnails beside them.
    Returns the photos."""
    photos = [_photo(folder / "a.jpg"), _photo(folder / "2024" / "b.png")]
    _photo(folder / "@eaDir" / "a.jpg" / "SYNOPHOTO_THUMB_XL.jpg")  # Synology thumbnails
    _photo(folder / ".thumbnails" / "a.jpg")
    _photo(folder / "2024" / ".@__thumb" / "b.png")  # QNAP thumbnails
    _photo(folder / "__MACOSX" / "c.jpg")
    (folder / "._a.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble resource fork")
    (folder / "notes.txt").write_text("not a photo")
    return photos


def test_hidden_and_thumbnail_folders_are_not_photos(tmp_path):
    cats = _class_folder(tmp_path / "data" / "cats")
    dogs = _class_folder(tmp_path / "data" / "dogs")
    assert image_files(tmp_path / "data" / "cats") == sorted(cats)

    ds = list_dataset(tmp_path / "data")
    assert ds.classes == ("cats", "dogs")
    assert list(ds.paths) == sorted(cats) + sorted(dogs)
    assert ds.counts() == {"cats": 2, "dogs": 2}

    assert _expand([str(tmp_path / "data")]) == sorted(str(p) for p in cats + dogs)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX symlinks and FIFOs")
def test_links_are_followed_to_files_only(tmp_path):
    """A symlinked photo counts; a symlinked folder is not entered (a link to a parent would
    loop); a FIFO named like a photo would block a reader forever and is left out."""
    real = _photo(tmp_path / "elsewhere" / "real.jpg")
    folder = tmp_path / "data" / "cats"
    own = _photo(folder / "own.jpg")
    (folder / "linked.jpg").symlink_to(real)
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    (folder / "broken.jpg").symlink_to(tmp_path / "gone.jpg")
    os.mkfifo(folder / "pipe.jpg")
    assert image_files(folder) == [folder / "linked.jpg", own]


def test_folders_of_edgecnn_runs_are_not_classes(tmp_path):
    """`cd photos && edgecnn train .` puts runs/ inside the data folder; the next run must not
    train a class "runs" on the first run's confusion.png and training.png."""
    data = tmp_path / "photos"
    cats, dogs = _class_folder(data / "cats"), _class_folder(data / "dogs")
    for run in (data / "runs" / "photos-edge-1", data / "runs" / "demo" / "train"):
        _photo(run / "confusion.png")
        (run / "edgecnn.json").write_text("{}")
    (data / "runs" / "photos-edge-2" / "checkpoint").mkdir(parents=True)  # a run under way
    (data / "runs" / "photos-edge-2" / "checkpoint" / "state.json").write_text("{}")
    (data / "other-runs" / "photos-edge-2" / "checkpoint").mkdir(parents=True)
    (data / "other-runs" / "photos-edge-2" / "checkpoint" / "state.json").write_text("{}")
    ds = list_dataset(data)
    assert ds.classes == ("cats", "dogs")
    assert list(ds.paths) == sorted(cats) + sorted(dogs)
    assert list_dataset(data, classes=("cats", "dogs")).classes == ("cats", "dogs")


def test_a_file_name_that_is_not_utf8_is_listed_and_fingerprinted(tmp_path):
    """Names are bytes on Linux: a photo copied from another system's encoding is still data."""
    root = os.fsencode(tmp_path)
    for name in (b"cat/caf\xe9.jpg", b"cat/b.jpg", b"dog/a.jpg", b"dog/b.jpg"):
        os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
        with open(os.path.join(root, name), "wb") as f:
            f.write(b"jpeg bytes")
    ds = list_dataset(tmp_path)
    assert len(ds) == 4
    before = ds.fingerprint()
    assert len(before) == 16
    os.rename(os.path.join(root, b"cat/caf\xe9.jpg"), os.path.join(root, b"cat/cafe.jpg"))
    assert list_dataset(tmp_path).fingerprint() != before


def test_many_unknown_class_folders_make_one_short_line(tmp_path):
    """1,500 folders of the wrong names made a 12 KB line; ten names and a count say enough."""
    for i in range(40):
        (tmp_path / f"breed_{i:02d}").mkdir()
        (tmp_path / f"breed_{i:02d}" / "a.jpg").write_bytes(b"jpeg")
    labels = tuple(f"label_{i:02d}" for i in range(25))
    with pytest.raises(InputError) as e:
        list_dataset(tmp_path, classes=labels)
    message = str(e.value)
    assert "breed_09 and 30 more are not among the model's labels" in message
    assert message.endswith("label_09 and 15 more") and len(message) < 500
    with pytest.raises(
        InputError, match=r"named after the labels label_00, .*label_09 and 15 more;"
    ):
        list_dataset(tmp_path / "breed_00", classes=labels)
