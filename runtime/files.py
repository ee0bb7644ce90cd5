"""Atomic file writes shared by every stage: a temp file in the same folder, then `os.replace`,
so a crash or a bad input never leaves a half-written artifact under its final name.

A symlink is followed first, so the file it points to is replaced, not the link. A device, FIFO
or socket (`--json /dev/stdout`, a named pipe) is written in place: renaming a file over it
would replace the node itself (`/dev/stdout` is a link, so as root, for every user).
"""

from __future__ import annotations

import functools
import os
import stat
import tempfile
from pathlib import Path

from .errors import InputError


@functools.cache
def _umask() -> int:
    # Reading the umask means setting it; do it once, not on every write from every thread.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_public(fd: int) -> None:
    """Give a temp file the mode a normal file would get (0o666 less the umask), not mkstemp's
    owner-only 0o600: exported models are meant to be copied and shared."""
    os.fchmod(fd, 0o666 & ~_umask())


def temp_file(path: Path, *, suffix: str = ".partial") -> tuple[int, Path]:
    """An open temp file beside `path` (hidden, same folder so `os.replace` is atomic).  An
    error names `path`, the file the user asked for, not the hidden name."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    except OSError as e:  # a read-only disk, a folder that went: say which file it was for
        raise OSError(e.errno, e.strerror, str(path)) from None
    make_public(fd)
    return fd, Path(tmp)


def is_special(path: str | os.PathLike) -> bool:
    """Whether `path` is, or links to, something that is neither a file nor a folder: a
    device (`/dev/stdout`, `/dev/null`), a FIFO or a socket."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # missing, or a dangling link: a file will be made
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def final_path(path: str | os.PathLike) -> Path:
    """Where a file written to `path` by temp file and rename must go: through symlinks."""
    return Path(os.path.realpath(path))


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write bytes (or UTF-8 text) to `path` atomically (in place when `is_special`)."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    if is_special(path):
        with open(path, "wb") as f:
            f.write(data)
        return
    path = final_path(path)
    fd, tmp = temp_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_output(
    option: str,
    output: str | os.PathLike | None,
    *,
    files: dict[str, str | os.PathLike | None] | None = None,
    photos_in: str | os.PathLike | None = None,
) -> None:
    """InputError, before any work, for an output file that cannot or must not be written: an
    empty name, a folder, or one of the command's own inputs: one of `files` (what it is -> its
    path, e.g. {"the model": ...}; the same file through any link) or a photo under the folder
    `photos_in` (by its name there or where a link points).  None (not asked for), "-"
    (stdout), new files, devices and FIFOs (`--json /dev/stdout`) pass."""
    from .preprocess import is_image_file

    if output is None or os.fspath(output) == "-":
        return
    if not os.fspath(output).strip():
        raise InputError(f"{option} is empty; give a file name")
    out = Path(output)
    if out.is_dir():
        raise InputError(f"{option} {out}: that is a folder; give a file name")
    if not out.exists() or is_special(out):
        return
    for what, given in (files or {}).items():
        if given is not None and _same_file(out, given):
            raise InputError(f"{option} {out}: that is {what}; writing there would destroy it")
    if photos_in is not None and os.path.isdir(photos_in) and is_image_file(out):
        folder = Path(photos_in)
        if _inside(Path(os.path.abspath(out)), Path(os.path.abspath(folder))) or _inside(
            final_path(out), final_path(folder)
        ):
            raise InputError(
                f"{option} {out}: that is a photo of {folder}; writing there would destroy it"
            )


def _same_file(a: Path, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    return path != folder and path.is_relative_to(folder)
