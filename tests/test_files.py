"""`write_atomic`, which every report and artifact goes through: whole files or nothing, and
never a rename over something that is not the file the user named."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from edgecnn.runtime.errors import InputError
from edgecnn.runtime.files import check_output, write_atomic


def test_a_file_is_replaced_whole_and_no_temp_file_stays(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")
    write_atomic(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")
    with pytest.raises(TypeError):
        write_atomic(path, object())  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_symlink_is_followed_and_kept(tmp_path):
    """`--json /dev/stdout` with stdout redirected to a file is this case: /dev/stdout is a
    link, and renaming over it would replace the machine's /dev/stdout (as root)."""
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "report.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_atomic(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new"
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "real" / "later.json")
    write_atomic(dangling, "made")
    assert dangling.is_symlink() and (tmp_path / "real" / "later.json").read_text() == "made"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_a_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    write_atomic(fifo, b"through the pipe")
    reader.join(timeout=30)
    assert received == [b"through the pipe"]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["out.fifo"]


def test_an_output_that_is_an_input_file_is_refused_also_through_a_link(tmp_path):
    model = tmp_path / "model.tflite"
    model.write_bytes(b"weights")
    link = tmp_path / "link.tflite"
    link.symlink_to(model)
    for given in (model, link):
        with pytest.raises(InputError, match=r"^--json .*: that is the model; writing there"):
            check_output("--json", given, files={"the model": model})
    other = tmp_path / "report.json"
    other.write_text("{}")
    for harmless in (other, tmp_path / "new.json", "-", None, "/dev/null"):
        check_output("--json", harmless, files={"the model": model})
    assert model.read_bytes() == b"weights"


def test_an_output_that_is_a_photo_of_the_dataset_is_refused(tmp_path):
    """By its name in the folder, or where a link in the folder points (the shared dataset
    behind a folder of links); a report in the dataset folder that is not a photo passes."""
    shared = tmp_path / "shared"
    shared.mkdir()
    photo = shared / "cat.1.jpg"
    photo.write_bytes(b"jpeg")
    data = tmp_path / "data"
    (data / "cat").mkdir(parents=True)
    (data / "cat" / "cat.1.jpg").symlink_to(photo)
    (data / "cat" / "cat.2.jpg").write_bytes(b"jpeg")
    for given in (data / "cat" / "cat.1.jpg", data / "cat" / "cat.2.jpg"):
        with pytest.raises(InputError, match=r"that is a photo of .*data; writing there"):
            check_output("--json", given, photos_in=data)
    beside = tmp_path / "link_to_photo.jpg"  # outside the folder, pointing into it
    beside.symlink_to(data / "cat" / "cat.2.jpg")
    with pytest.raises(InputError, match="that is a photo of"):
        check_output("--plot", beside, photos_in=data)
    (data / "eval.json").write_text("{}")
    check_output("--json", data / "eval.json", photos_in=data)
    assert photo.read_bytes() == b"jpeg"


def test_an_empty_output_name_or_a_folder_is_refused(tmp_path):
    with pytest.raises(InputError, match="^--json is empty; give a file name$"):
        check_output("--json", "")
    with pytest.raises(InputError, match=r"^--record .*: that is a folder; give a file name$"):
        check_output("--record", tmp_path)


def test_a_temp_file_that_cannot_be_made_is_reported_under_the_name_asked_for(
    tmp_path, monkeypatch
):
    import errno
    import tempfile

    def read_only(*, dir, prefix, suffix):
        raise OSError(
            errno.EROFS, "Read-only file system", os.path.join(dir, prefix + "x" + suffix)
        )

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OSError) as e:
        write_atomic(tmp_path / "plot.png", b"png")
    assert e.value.errno == errno.EROFS and e.value.filename == str(tmp_path / "plot.png")
