"""The two image sets an export needs: calibration (int8 ranges) and check (verification).

Both go through the shared preprocessing (`edgecnn.runtime.dataset.load_pixels`), so the int8
representative dataset is exactly what the model takes: raw 0..255 RGB pixels as float32 when
the scaling lives inside the model (DESIGN, Known traps).  Defaults come from what training
recorded in the contract's `info` (`data_dir`, `val_dir` or `val_split` + `seed`); nothing
falls back silently: with no folder given and none recorded, the export stops and says so.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.runtime.contract import Contract
from edgecnn.runtime.dataset import Dataset, list_dataset, load_pixels
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.preprocess import to_input


@dataclass
class ImageSet:
    """Decoded images at model resolution plus where they came from (for the manifest)."""

    name: str
    pixels: np.ndarray  # uint8 N x H x W x 3
    targets: np.ndarray | None  # class indices in the model's label order, None if unknown
    source: dict[str, Any] = field(default_factory=dict)

    def inputs(self, contract: Contract, *, limit: int | None = None) -> np.ndarray:
        """float32 model input (the first `limit` images), exactly what the model takes."""
        return to_input(self.pixels[:limit], contract)

    def __len__(self) -> int:
        return len(self.pixels)


def calibration_set(
    contract: Contract,
    *,
    calib: str | os.PathLike | None,
    run_dir: Path | None,
    count: int,
    seed: int,
    progress: bool,
) -> ImageSet:
    """A seeded, class-stratified sample of `count` images for int8 calibration."""
    if count < 1:
        raise InputError(f"--calib-count must be at least 1, got {count}")
    if calib is not None:
        dataset = list_dataset(_existing_dir(calib, "--calib"))
        origin = "--calib"
    else:
        dataset, origin = _training_images(contract, run_dir)
    sample = dataset.stratified_sample(count, seed)
    decoded = load_pixels(sample, contract, desc="calibration images", progress=progress)
    return ImageSet(
        name="calibration",
        pixels=decoded.pixels,
        targets=None,
        source={
            "dir": str(dataset.root),
            "from": origin,
            "requested": count,
            "count": len(decoded.pixels),
            "available": len(dataset),
            "seed": seed,
            "classes": sample.counts(),
            "files_fingerprint": sample.fingerprint(),
            "pixels_sha256": _pixels_hash(decoded.pixels),
            "skipped": [f"{p}: {why}" for p, why in decoded.skipped],
        },
    )


def check_set(
    contract: Contract,
    *,
    check: str | os.PathLike | None,
    run_dir: Path | None,
    progress: bool,
) -> ImageSet:
    """The labelled images every artifact is verified on (default: the run's validation set)."""
    if check is not None:
        dataset = list_dataset(_existing_dir(check, "--check"), classes=contract.labels)
        origin = "--check"
    else:
        dataset, origin = _validation_images(contract, run_dir)
    decoded = load_pixels(dataset, contract, desc="check images", progress=progress)
    return ImageSet(
        name="check",
        pixels=decoded.pixels,
        targets=decoded.targets,
        source={
            "dir": str(dataset.root),
            "from": origin,
            "count": len(decoded.pixels),
            "classes": dataset.counts(),
            "files_fingerprint": dataset.fingerprint(),
            "skipped": [f"{p}: {why}" for p, why in decoded.skipped],
        },
    )


def _pixels_hash(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()[:16]


def _existing_dir(path: str | os.PathLike, option: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        what = "is a file" if path.exists() else "no such folder"
        raise InputError(
            f"{option} {path}: {what}; expected a folder with one sub-folder per class"
        )
    return path


def _recorded_dir(contract: Contract, key: str, run_dir: Path | None) -> Path | None:
    """A folder recorded by training, resolved against the cwd and then the run directory."""
    value = contract.info.get(key)
    if not value:
        return None
    path = Path(value)
    if path.is_absolute() or path.is_dir() or run_dir is None:
        return path
    beside = run_dir / path
    return beside if beside.is_dir() else path


def _val_split(contract: Contract) -> tuple[float, int] | None:
    split = contract.info.get("val_split")
    if split in (None, 0, 0.0):
        return None
    return float(split), int(contract.info.get("seed", 0))


def _training_images(contract: Contract, run_dir: Path | None) -> tuple[Dataset, str]:
    data_dir = _recorded_dir(contract, "data_dir", run_dir)
    if data_dir is None:
        raise InputError(
            "no --calib folder given and the model's contract records no training data folder "
            "(info.data_dir); pass --calib DIR with representative images"
        )
    if not data_dir.is_dir():
        raise InputError(
            f"the run's training images {data_dir} are gone (moved, or trained on another "
            "machine?); pass --calib DIR"
        )
    dataset = list_dataset(data_dir, classes=contract.labels)
    split = _val_split(contract) if not contract.info.get("val_dir") else None
    if split is not None:
        dataset = dataset.stratified_split(*split)[0]
        return dataset, "training images (train part of the run's val split)"
    return dataset, "training images"


def _validation_images(contract: Contract, run_dir: Path | None) -> tuple[Dataset, str]:
    val_dir = _recorded_dir(contract, "val_dir", run_dir)
    if val_dir is not None:
        if not val_dir.is_dir():
            raise InputError(f"the run's validation images {val_dir} are gone; pass --check DIR")
        return list_dataset(val_dir, classes=contract.labels), "validation images"
    data_dir = _recorded_dir(contract, "data_dir", run_dir)
    split = _val_split(contract)
    if data_dir is None or split is None:
        raise InputError(
            "no --check folder given and the model's contract records no validation images "
            "(info.val_dir or info.data_dir + info.val_split); pass --check DIR"
        )
    if not data_dir.is_dir():
        raise InputError(
            f"the run's training images {data_dir} are gone (moved, or trained on another "
            "machine?); pass --check DIR, and --calib DIR for the int8 formats"
        )
    dataset = list_dataset(data_dir, classes=contract.labels).stratified_split(*split)[1]
    return dataset, "validation images (the run's val split)"
