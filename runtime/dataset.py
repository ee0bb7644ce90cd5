"""Folder-per-class image datasets: listing, validation and decoding with the shared contract.

    data/
      cat/  0001.jpg 0002.png ...
      dog/  ...

Used by training, int8 calibration, export verification, `edgecnn eval` and benchmarks, so every
stage reads a folder the same way.  No TensorFlow here.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .contract import Contract
from .errors import ImageError, InputError
from .files import temp_file
from .metadata import CONTRACT_FILE
from .preprocess import image_files, to_pixels
from .progress import track

SEEDS = range(2**32)  # what numpy's and TensorFlow's seeding both accept


def check_seed(seed: int) -> None:
    """Refuse a seed that numpy or TensorFlow would refuse later, with a traceback."""
    if seed not in SEEDS:
        raise InputError(f"--seed must be between 0 and {SEEDS.stop - 1}, got {seed}")


@dataclass(frozen=True)
class Dataset:
    """The files of a folder-per-class dataset: `paths[i]` has class index `targets[i]`."""

    root: Path
    classes: tuple[str, ...]
    paths: tuple[Path, ...]
    targets: np.ndarray  # int64, one per path

    def __len__(self) -> int:
        return len(self.paths)

    def nothing_decoded(self) -> InputError:
        """The error for a dataset of which no file could be decoded."""
        return InputError(f"{self.root}: none of the {len(self)} image files could be decoded")

    def counts(self) -> dict[str, int]:
        binc = np.bincount(self.targets, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, binc)}

    def subset(self, indices: np.ndarray) -> Dataset:
        indices = np.asarray(indices, dtype=np.int64)
        return Dataset(
            self.root,
            self.classes,
            tuple(self.paths[i] for i in indices),
            self.targets[indices],
        )

    def fingerprint(self) -> str:
        """sha256 over relative paths, sizes and mtimes: changes when the data changes."""
        h = hashlib.sha256()
        for p in self.paths:
            st = p.stat()
            name = os.fsencode(p.relative_to(self.root))  # the name's bytes, UTF-8 or not
            h.update(name + f"\0{st.st_size}\0{int(st.st_mtime)}\n".encode())
        return h.hexdigest()[:16]

    def stratified_sample(self, n: int, seed: int) -> Dataset:
        """`n` files (all if fewer) spread over the classes in proportion, reproducibly."""
        check_seed(seed)
        if n >= len(self):
            return self
        rng = np.random.default_rng(seed)
        picked: list[np.ndarray] = []
        for cls in range(len(self.classes)):
            idx = np.flatnonzero(self.targets == cls)
            k = max(1, round(n * len(idx) / len(self)))
            picked.append(rng.permutation(idx)[: min(k, len(idx))])
        return self.subset(np.sort(np.concatenate(picked)))

    def stratified_split(self, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
        """(train, val): `fraction` of every class goes to val, reproducibly, and at least one
        image of every class goes to each side (a class of 3 at 0.2 splits 2 + 1)."""
        if not 0.0 < fraction < 1.0:
            raise InputError(f"--val-split must be between 0 and 1, got {fraction}")
        check_seed(seed)
        rng = np.random.default_rng(seed)
        val: list[np.ndarray] = []
        for cls in range(len(self.classes)):
            idx = rng.permutation(np.flatnonzero(self.targets == cls))
            if len(idx) < 2:
                raise InputError(
                    f"{self.root / self.classes[cls]}: class {self.classes[cls]!r} has "
                    f"{len(idx)} image(s); --val-split needs at least 2 a class (1 to train on, "
                    "1 to validate): add images or pass --val-dir"
                )
            k = min(max(int(round(len(idx) * fraction)), 1), len(idx) - 1)
            val.append(idx[:k])
        val_idx = np.sort(np.concatenate(val))
        train_idx = np.setdiff1d(np.arange(len(self)), val_idx)
        return self.subset(train_idx), self.subset(val_idx)


def list_dataset(root: str | os.PathLike, *, classes: tuple[str, ...] | None = None) -> Dataset:
    """List a folder-per-class dataset, refusing what cannot be trained or evaluated on.

    `classes` fixes the class order (e.g. a model's labels when evaluating); otherwise the
    sub-folder names sorted.  Files that are not images by extension are ignored here; files
    that fail to decode are reported later by `load_pixels`.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root}: no such folder")
    if not root.is_dir():
        raise InputError(f"{root}: is a file, expected a folder with one sub-folder per class")
    found = sorted(
        d.name
        for d in root.iterdir()
        if d.is_dir() and not d.name.startswith((".", "_")) and not _holds_runs(d)
    )
    if classes is None:
        if len(found) < 2:
            raise InputError(
                f"{root}: found {len(found)} class folder(s) {found}; need at least 2 "
                "(one sub-folder per class, e.g. cats/ and dogs/)"
            )
        classes = tuple(found)
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise InputError(
                f"{root}: class folder(s) {_some(unknown)} are not among the model's labels "
                f"{_some(list(classes))}"
            )
    paths: list[Path] = []
    targets: list[int] = []
    for idx, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        files = image_files(folder)
        if not files and len(found) and name in found:
            raise InputError(f"{folder}: class {name!r} has no image files")
        paths.extend(files)
        targets.extend([idx] * len(files))
    if not paths:
        if not found and image_files(root):
            raise InputError(
                f"{root}: holds images but no class folders named after the labels "
                f"{_some(list(classes))}; to classify images without labels, use edgecnn predict"
            )
        # no class folder was found: each one found holds images or was refused above
        shown = ", ".join(f"{c}/" for c in classes[:3]) + (", ..." if len(classes) > 3 else "")
        raise InputError(
            f"{root}: no class folders; expected a sub-folder of images for each of the "
            f"{len(classes)} classes ({shown})"
        )
    return Dataset(root, tuple(classes), tuple(paths), np.asarray(targets, dtype=np.int64))


def _some(names: list[str], most: int = 10) -> str:
    """The first `most` names for a one-line message, and how many more there are."""
    more = len(names) - most
    return ", ".join(names[:most]) + (f" and {more} more" if more > 0 else "")


# What marks a folder as edgecnn's output rather than photos: a run's contract, in the folder or
# up to two levels below it (runs/NAME/, and runs/demo/NAME/), or the checkpoint of a run under
# way, up to one level below.  `cd photos && edgecnn train .` writes runs/ inside the data folder.
_RUN_CHECKPOINT = Path("checkpoint") / "state.json"


def _holds_runs(folder: Path, depth: int = 2) -> bool:
    """Whether `folder` holds edgecnn runs: never a class, whatever images it holds (a run's
    confusion.png and training.png).  One listing a level, of sub-folders only: a class
    folder of many photos is not listed again for each marker."""
    if (folder / CONTRACT_FILE).is_file() or (depth >= 1 and (folder / _RUN_CHECKPOINT).is_file()):
        return True
    if depth == 0:
        return False
    try:
        with os.scandir(folder) as entries:
            below = [Path(e.path) for e in entries if e.is_dir()]
    except OSError:  # unreadable: no runs seen in it (listing the photos says what is wrong)
        return False
    return any(_holds_runs(sub, depth - 1) for sub in below)


@dataclass
class Decoded:
    """Decoded pixels of a dataset at model resolution, and what had to be skipped."""

    pixels: np.ndarray  # uint8 N x H x W x 3, contract colour order
    targets: np.ndarray  # int64 N
    paths: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    # with `load_pixels(digests=True)`, 8-byte digests of each image's pixels (uint64 N): the
    # same photo under two names, or in two folders, has the same digest
    digests: np.ndarray | None = None


def load_pixels(
    dataset: Dataset,
    contract: Contract,
    *,
    desc: str = "decoding",
    progress: bool | None = None,
    workers: int | None = None,
    into: str | os.PathLike | None = None,
    allow_none: bool = False,
    digests: bool = False,
) -> Decoded:
    """Decode every image once with the shared contract; undecodable files are skipped with a
    reason.  Raises InputError when nothing at all could be decoded, unless `allow_none` (a
    part of a bigger dataset: then no pixels and every file skipped).  `digests` also gives
    each image's pixel digest (`Decoded.digests`; about 1% of a decode).

    `into` decodes into that `.npy` file instead of memory, for datasets larger than memory:
    numpy's own format (`np.lib.format.open_memmap` writes the header and sizes the file), rows
    written with positional writes under a temporary name that is renamed only once complete.
    `Decoded.pixels` is then the file memory-mapped read-only (`np.load(mmap_mode="r")`);
    stream batches from it with `read_rows`.
    """
    n = len(dataset)
    shape = (n, contract.height, contract.width, 3)
    out = np.empty(shape, dtype=np.uint8) if into is None else None
    ok = np.zeros(n, dtype=bool)
    digest_of = np.zeros(n, dtype=np.uint64) if digests else None
    reasons: dict[int, str] = {}
    rows = _RowFile.create(Path(into), shape) if into is not None else None

    def work(i: int) -> int:
        try:
            pixels = to_pixels(dataset.paths[i], contract, out=None if out is None else out[i])
            ok[i] = True
        except ImageError as e:
            reasons[i] = str(e).split(": ", 1)[-1]
        except Exception as e:  # OpenCV can raise odd errors on hostile files; skip, not crash
            reasons[i] = f"{type(e).__name__}: {e}"
        else:
            if digest_of is not None:
                digest = hashlib.blake2b(pixels, digest_size=8).digest()
                digest_of[i] = int.from_bytes(digest, "little")
            if rows is not None:  # outside the try: a full disk is an error, not a bad image
                rows.write(i, pixels)
        return i

    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in track(pool.map(work, range(n)), n, desc, enabled=progress):
                pass
        keep = np.flatnonzero(ok)
        if keep.size == 0 and not allow_none:
            raise dataset.nothing_decoded()
        if rows is not None:
            pixels = rows.finish(keep)
        else:
            pixels = out[keep] if keep.size < n else out
    finally:
        if rows is not None:
            rows.discard()
    return Decoded(
        pixels=pixels,
        targets=dataset.targets[keep],
        paths=[dataset.paths[i] for i in keep],
        skipped=[(dataset.paths[i], reasons[i]) for i in sorted(reasons)],
        digests=None if digest_of is None else digest_of[keep],
    )


def read_rows(pixels: np.ndarray, indices) -> np.ndarray:
    """`pixels[indices]` as an ordinary in-memory array, for `pixels` memory-mapped from a `.npy`
    file (what `load_pixels(into=...)` returns) read with positional reads.

    Reading through the mapping would give the same values, but every page a mapping touches
    counts toward the process's resident memory until it is unmapped, so streaming an epoch
    through it makes the process look as large as the file.  Positional reads go through the
    OS page cache just the same (memory the kernel reclaims under pressure) and the process
    holds only the rows asked for.  Consecutive rows are read in one call.
    """
    if not isinstance(pixels, np.memmap):
        return pixels[indices]
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    out = np.empty((len(idx), *pixels.shape[1:]), dtype=pixels.dtype)
    if idx.size == 0:
        return out
    if idx.min() < 0 or idx.max() >= len(pixels):
        raise IndexError(f"row index out of range for {len(pixels)} rows: {idx.min()}..{idx.max()}")
    row = out[0].nbytes
    order = np.argsort(idx, kind="stable")
    ascending = idx[order]
    bounds = [0, *(np.flatnonzero(np.diff(ascending) != 1) + 1).tolist(), idx.size]
    order_list, flat = order.tolist(), memoryview(out).cast("B")
    fd = os.open(pixels.filename, os.O_RDONLY)
    try:
        for a, b in zip(bounds[:-1], bounds[1:]):  # runs of consecutive rows in the file
            offset = pixels.offset + int(ascending[a]) * row
            targets = [flat[j * row : (j + 1) * row] for j in order_list[a:b]]
            # one call scatters the run's rows straight into their places in `out`
            if _preadv is None or _preadv(fd, targets, offset) != row * (b - a):
                block = _pread_exact(fd, row * (b - a), offset)
                out[order[a:b]] = np.frombuffer(block, pixels.dtype).reshape(-1, *out.shape[1:])
    finally:
        os.close(fd)
    return out


_preadv = getattr(os, "preadv", None)  # Linux, BSD, macOS 11+; else read and copy


def _pread_exact(fd: int, size: int, offset: int) -> bytes:
    data = os.pread(fd, size, offset)
    while len(data) < size:
        more = os.pread(fd, size - len(data), offset + len(data))
        if not more:
            raise OSError(f"decoded cache file ends early: wanted {size} bytes at {offset}")
        data += more
    return data


def _pwrite_all(fd: int, data, offset: int) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


class _RowFile:
    """A uint8 `.npy` being filled row by row under a temporary name beside `path`."""

    _CHUNK_BYTES = 256 << 10  # compaction copies this much at a time (read twice: bytes, rows)

    def __init__(self, path: Path, tmp: Path, offset: int, row: int) -> None:
        self.path, self.tmp, self.offset, self.row = path, tmp, offset, row
        self.fd = os.open(tmp, os.O_WRONLY)

    @classmethod
    def create(cls, path: Path, shape: tuple[int, ...]) -> _RowFile:
        tmp = _new_npy(path, shape)
        return cls(path, tmp, np.load(tmp, mmap_mode="r").offset, int(np.prod(shape[1:])))

    def write(self, i: int, pixels: np.ndarray) -> None:
        _pwrite_all(self.fd, np.ascontiguousarray(pixels), self.offset + i * self.row)

    def finish(self, keep: np.ndarray) -> np.memmap:
        """Keep rows `keep` (all of them, or the decodable ones copied into a second file),
        rename the result to `path` and return it memory-mapped read-only."""
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        full = np.load(self.tmp, mmap_mode="r")
        if keep.size < len(full):
            shape = (keep.size, *full.shape[1:])
            kept = _new_npy(self.path, shape)
            offset = np.load(kept, mmap_mode="r").offset
            chunk = max(1, self._CHUNK_BYTES // self.row)
            fd = os.open(kept, os.O_WRONLY)
            try:
                for start in range(0, keep.size, chunk):
                    block = read_rows(full, keep[start : start + chunk])
                    _pwrite_all(fd, block, offset + start * self.row)
                os.fsync(fd)
            finally:
                os.close(fd)
            self.tmp.unlink()
            self.tmp = kept
        del full
        os.replace(self.tmp, self.path)
        return np.load(self.path, mmap_mode="r")

    def discard(self) -> None:
        """Remove the temporary file (after `finish`, or when decoding failed)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.tmp.unlink(missing_ok=True)


def _new_npy(path: Path, shape: tuple[int, ...]) -> Path:
    """A new uint8 `.npy` of `shape` beside `path` under a temporary name: numpy writes the
    header and sizes the file (sparse: no zeros are written)."""
    fd, tmp = temp_file(path, suffix=".npy")
    os.close(fd)
    np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)  # unmapped at once
    return tmp
