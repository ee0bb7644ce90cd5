"""`edgecnn train` on bad input: exit 2 with one line and nothing written, or skip and report."""

from __future__ import annotations

import json
import re
import shutil

import cv2
import numpy as np
import pytest
from _train_fixtures import tiny_split

from edgecnn.cli import main
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.formatting import shown

pytest.importorskip("keras")

FAST_ARGS = ["--arch", "seed", "--img-size", "32", "--epochs", "1", "--batch", "16", "--quiet"]


def _fails(capsys, argv: list[str], *expected: str) -> str:
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("edgecnn train: error: ")
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def _png(path, h: int, w: int) -> None:
    cv2.imwrite(str(path), np.full((h, w, 3), 127, np.uint8))


def test_missing_folder(tmp_path, capsys):
    out = tmp_path / "run"
    _fails(capsys, [str(tmp_path / "nope"), "--out", str(out)], "nope", "no such folder")
    assert not out.exists()


def test_fewer_than_two_classes(tmp_path, capsys):
    (tmp_path / "d" / "cats").mkdir(parents=True)
    _png(tmp_path / "d" / "cats" / "a.png", 16, 16)
    out = tmp_path / "run"
    _fails(capsys, [str(tmp_path / "d"), "--out", str(out)], "need at least 2")
    assert not out.exists()


def test_empty_class(tmp_path, capsys):
    train_dir, _ = tiny_split(tmp_path / "d", classes=2, train=3, val=1)
    (train_dir / "zzz_empty").mkdir()
    out = tmp_path / "run"
    _fails(capsys, [str(train_dir), "--out", str(out)], "zzz_empty", "no image files")
    assert not out.exists()


def test_zero_decodable_images(tmp_path, capsys):
    for cls in ("a", "b"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "d" / cls / f"{i}.jpg").write_text("not really a JPEG, just text\n")
    out = tmp_path / "run"
    _fails(capsys, [str(tmp_path / "d"), "--out", str(out)], "could be decoded")
    assert not out.exists()


def test_val_dir_with_unknown_class(tmp_path, capsys):
    train_dir, val_dir = tiny_split(tmp_path / "d", classes=2, train=3, val=1)
    (val_dir / "zebra").mkdir()
    _png(val_dir / "zebra" / "z.png", 16, 16)
    out = tmp_path / "run"
    _fails(capsys, [str(train_dir), "--val-dir", str(val_dir), "--out", str(out)], "zebra")
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--batch", "-2"], "--batch must be at least 1, got -2"),
        (["--seed", "-1"], "--seed must be between 0 and 4294967295, got -1"),
        (["--val-split", "1.5"], "--val-split"),
        (["--img-size", "8"], "--img-size"),
        (["--weights", "missing.weights.h5"], "weights file not found"),
    ],
)
def test_bad_options(tmp_path, capsys, argv, expected):
    train_dir, _ = tiny_split(tmp_path / "d", classes=2, train=3, val=1)
    out = tmp_path / "run"
    _fails(capsys, [str(train_dir), "--out", str(out), *argv], expected)
    assert not out.exists()


def test_existing_run_is_refused_unless_resume_or_force(tmp_path, capsys):
    train_dir, val_dir = tiny_split(tmp_path / "d", classes=2, train=8, val=3)
    out = tmp_path / "run"
    argv = [str(train_dir), "--val-dir", str(val_dir), "--out", str(out), *FAST_ARGS]
    assert main(["train", *argv]) == 0
    before = (out / "model.keras").stat().st_mtime_ns
    _fails(capsys, argv, str(out), "--resume", "--force")
    _fails(capsys, [*argv, "--resume"], "finished run", "nothing to resume")
    assert (out / "model.keras").stat().st_mtime_ns == before  # untouched by the refusals
    assert main(["train", *argv, "--force"]) == 0
    assert (out / "model.keras").stat().st_mtime_ns != before


def test_resume_without_a_run(tmp_path, capsys):
    train_dir, _ = tiny_split(tmp_path / "d", classes=2, train=3, val=1)
    _fails(
        capsys, [str(train_dir), "--out", str(tmp_path / "none"), "--resume"], "nothing to resume"
    )


def test_out_is_a_foreign_folder(tmp_path, capsys):
    train_dir, _ = tiny_split(tmp_path / "d", classes=2, train=3, val=1)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    _fails(
        capsys, [str(train_dir), "--out", str(tmp_path / "mine"), "--force"], "not an edgecnn run"
    )
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_bad_files_are_skipped_and_reported(tmp_path, capsys):
    train_dir, val_dir = tiny_split(tmp_path / "d", classes=2, train=8, val=3)
    cls = train_dir / "circle"
    good = (cls / "circle_0000.png").read_bytes()
    ok, jpg = cv2.imencode(".jpg", cv2.imread(str(cls / "circle_0001.jpg")))
    (cls / "corrupt.png").write_bytes(good[:16] + bytes(range(256)) * 4)
    (cls / "truncated.jpg").write_bytes(jpg.tobytes()[: len(jpg) // 3])
    (cls / "text.jpg").write_text("hello, I am a text file\n")
    (cls / "\x1b[2Jescape.jpg").write_text("a name that would clear the terminal\n")
    _png(cls / "one_pixel.png", 1, 1)
    big = np.zeros((4000, 6000, 3), np.uint8)
    big[:, :3000] = (0, 0, 255)
    cv2.imwrite(str(cls / "huge.jpg"), big)
    (cls / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")
    (cls / "saved_from_a_browser.jfif").write_bytes(jpg.tobytes())  # a JPEG by another name

    out = tmp_path / "run"
    argv = [str(train_dir), "--val-dir", str(val_dir), "--out", str(out), *FAST_ARGS]
    assert main(["train", *argv]) == 0
    err = capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    skipped = {
        p.rsplit("/", 1)[-1]: reason
        for p, reason in ((s["path"], s["reason"]) for s in metrics["skipped"])
    }
    assert {"corrupt.png", "text.jpg", "one_pixel.png", "IMG_0001.HEIC"} <= set(skipped)
    assert "\x1b[2Jescape.jpg" in skipped and "\x1b" not in err  # shown escaped, not run
    assert "\\x1b[2Jescape.jpg" in err
    assert "1x1" in skipped["one_pixel.png"]
    assert "HEIC/HEIF photo" in skipped["IMG_0001.HEIC"]
    assert "convert it to JPEG" in skipped["IMG_0001.HEIC"]
    assert "huge.jpg" not in skipped  # handled: decoded and downscaled like any photo
    for name in skipped:
        assert shown(name) in err  # printed too
    # Everything not skipped was trained on: 8 good + huge + the .jfif (+ truncated, if its part
    # decodes).
    assert "saved_from_a_browser.jfif" not in skipped
    trained = metrics["class_counts"]["train"]["circle"]
    assert trained == 8 + 1 + 1 + ("truncated.jpg" not in skipped)


def test_resume_needs_out(tmp_path, capsys):
    train_dir, _ = tiny_split(tmp_path / "d", classes=2, train=3, val=1)
    _fails(capsys, [str(train_dir), "--resume"], "--resume needs --out")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"resume": True, "force": True}, "contradict each other"),
        ({"batch": 0}, "--batch must be at least 1"),
        ({"patience": 0}, "patience must be at least 1"),
        ({"seed": 2**32}, "--seed must be between 0 and 4294967295"),
        ({"strategy": "tpu"}, "unknown strategy 'tpu'"),
        ({"resume": True}, "--resume needs --out"),
    ],
)
def test_conflicting_options_are_refused_when_the_options_are_made(tmp_path, options, expected):
    """`TrainOptions` refuses them, so `train(DATA, **options)` fails before reading DATA."""
    from edgecnn import train
    from edgecnn.training import TrainOptions

    with pytest.raises(InputError, match=re.escape(expected)):
        TrainOptions(**options)
    with pytest.raises(InputError, match=re.escape(expected)):
        train(tmp_path / "missing", **options)


def test_an_out_folder_that_cannot_be_made_is_one_line(tmp_path, capsys):
    train_dir, _ = tiny_split(tmp_path / "d", classes=2, train=3, val=1)
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder is wanted")
    line = _fails(capsys, [str(train_dir), "--out", str(blocker / "run"), *FAST_ARGS])
    assert line == f"edgecnn train: error: {blocker / 'run'}: cannot be made, {blocker} is a file"


def test_validation_photos_that_are_training_photos_are_warned_about(tmp_path, capsys):
    """The same folder given twice, or a training photo copied into validation under another
    name: one warning line with the count, and the run goes on."""
    train_dir, val_dir = tiny_split(tmp_path / "d", classes=2, train=4, val=2)
    copied = next((train_dir / "circle").iterdir())
    shutil.copy(copied, val_dir / "circle" / "renamed_copy.png")
    cases = [
        (train_dir, "8 of the 8 validation photos have the same pixels as training photos"),
        (val_dir, "1 of the 5 validation photos has the same pixels as a training photo"),
    ]
    for i, (val, text) in enumerate(cases):
        out = tmp_path / f"run{i}"
        argv = [str(train_dir), "--val-dir", str(val), "--out", str(out), *FAST_ARGS]
        assert main(["train", *argv]) == 0
        warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
        assert warning == [
            f"edgecnn train: warning: {text}: validation accuracy will flatter the model"
        ]
        assert (out / "model.keras").is_file()
    argv = [str(train_dir), "--val-dir", str(val_dir), "--out", str(tmp_path / "clean")]
    (val_dir / "circle" / "renamed_copy.png").unlink()
    assert main(["train", *argv, *FAST_ARGS]) == 0
    assert "warning" not in capsys.readouterr().err
