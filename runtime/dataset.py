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
from .preprocess import is_image_file, to_pixels
from .progress import track


@dataclass(frozen=True)
class Dataset:
    """The files of a folder-per-class dataset: `paths[i]` has class index `targets[i]`."""

    root: Path
    classes: tuple[str, ...]
    paths: tuple[Path, ...]
    targets: np.ndarray  # int64, one per path

    def __len__(self) -> int:
        return len(self.paths)

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
            h.update(f"{p.relative_to(self.root)}\0{st.st_size}\0{int(st.st_mtime)}\n".encode())
        return h.hexdigest()[:16]

    def stratified_sample(self, n: int, seed: int) -> Dataset:
        """`n` files (all if fewer) spread over the classes in proportion, reproducibly."""
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
        d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith((".", "_"))
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
                f"{root}: class folder(s) {unknown} are not among the model's labels {list(classes)}"
            )
    paths: list[Path] = []
    targets: list[int] = []
    for idx, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))
        if not files and len(found) and name in found:
            raise InputError(f"{folder}: class {name!r} has no image files")
        paths.extend(files)
        targets.extend([idx] * len(files))
    if not paths:
        raise InputError(f"{root}: no image files found in {list(classes)}")
    return Dataset(root, tuple(classes), tuple(paths), np.asarray(targets, dtype=np.int64))


@dataclass
class Decoded:
    """Decoded pixels of a dataset at model resolution, and what had to be skipped."""

    pixels: np.ndarray  # uint8 N x H x W x 3, contract colour order
    targets: np.ndarray  # int64 N
    paths: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def load_pixels(
    dataset: Dataset,
    contract: Contract,
    *,
    desc: str = "decoding",
    progress: bool | None = None,
    workers: int | None = None,
) -> Decoded:
    """Decode every image once with the shared contract; undecodable files are skipped with a
    reason.  Raises InputError when nothing at all could be decoded."""
    n = len(dataset)
    out = np.empty((n, contract.height, contract.width, 3), dtype=np.uint8)
    ok = np.zeros(n, dtype=bool)
    reasons: dict[int, str] = {}

    def work(i: int) -> int:
        try:
            to_pixels(dataset.paths[i], contract, out=out[i])
            ok[i] = True
        except ImageError as e:
            reasons[i] = str(e).split(": ", 1)[-1]
        except Exception as e:  # OpenCV can raise odd errors on hostile files; skip, not crash
            reasons[i] = f"{type(e).__name__}: {e}"
        return i

    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in track(pool.map(work, range(n)), n, desc, enabled=progress):
            pass
    keep = np.flatnonzero(ok)
    if keep.size == 0:
        raise InputError(f"{dataset.root}: none of the {n} image files could be decoded")
    return Decoded(
        pixels=out[keep] if keep.size < n else out,
        targets=dataset.targets[keep],
        paths=[dataset.paths[i] for i in keep],
        skipped=[(dataset.paths[i], reasons[i]) for i in sorted(reasons)],
    )
