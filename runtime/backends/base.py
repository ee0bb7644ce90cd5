"""The one small interface every runtime backend implements.

A backend opens one model file and turns a float32 NHWC batch (the output of
`edgecnn.runtime.to_input`) into float32 class probabilities: `run`.  A backend whose model takes
uint8 0..255 pixels as they are (`takes_raw_pixels`) also has `run_pixels`, which feeds uint8
pixels without the float detour.  Everything else — preprocessing, labels, top-k, which of the
two to call — lives in `Classifier`, so adding a backend means one module and one registry line.
"""

from __future__ import annotations

import importlib.util
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ..contract import MAX_INPUT_SIDE
from ..errors import InputError


class Backend(ABC):
    """An opened model file.

    Subclasses set the class attributes and implement `open` and `run`.  `input_shape` is
    (H, W, C) with None for dimensions the file leaves open; `num_classes` is None when the file
    does not say.
    """

    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]]  # model file kinds (see metadata.model_kind) it can run
    packages: ClassVar[tuple[str, ...]]  # importable names, any one of which makes it available
    extra: ClassVar[str]  # pip extra that installs it: edgecnn[<extra>]

    path: Path
    threads: int
    input_shape: tuple[int | None, int | None, int | None]
    num_classes: int | None
    version: str

    @classmethod
    def is_available(cls) -> bool:
        """Whether one of the backend's packages is installed (checked without importing it)."""
        return any(_spec_exists(p) for p in cls.packages)

    @classmethod
    @abstractmethod
    def open(cls, path: Path, *, threads: int) -> Backend:
        """Open `path` for inference with `threads` CPU threads; InputError if it cannot."""

    @abstractmethod
    def run(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """float32 (N, H, W, 3) model input -> float32 (N, num_classes) probabilities."""

    @property
    def takes_raw_pixels(self) -> bool:
        """Whether the model's input tensor is uint8 0..255 pixels as they are (an int8 TFLite
        file with uint8 I/O: scale 1, zero point 0), so that `run_pixels` can feed them without
        the float detour, which would be an exact round trip."""
        return False

    def run_pixels(self, pixels: NDArray[np.uint8]) -> NDArray[np.float32]:
        """uint8 (N, H, W, 3) pixels fed to the model as they are -> float32 (N, num_classes)
        probabilities; only where `takes_raw_pixels` is true."""
        raise NotImplementedError(
            f"{self.path}: the {self.name} backend runs float32 model input only "
            "(its model does not take uint8 pixels as they are)"
        )

    def run_frame(self, x: np.ndarray) -> NDArray[np.float32]:
        """One frame's (1, H, W, 3) model input -> a fresh float32 (num_classes,) row.

        `x` is float32, or uint8 pixels where `takes_raw_pixels`.  The live loop calls this for
        every frame; a backend may override it with a path that skips the batch bookkeeping of
        `run` and `run_pixels` (same numbers).
        """
        out = self.run_pixels(x) if x.dtype == np.uint8 else self.run(x)
        return np.array(out[0], dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        """What is running, for reports and benchmarks (module, delegate, threads, ...)."""
        return {"backend": self.name, "version": self.version, "threads": self.threads}


def _spec_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def default_threads() -> int:
    """All cores the process may use: the device is ours while the classifier runs."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


# More threads than the biggest machines' cores only slow a run down, and far more crash it: at
# 100,000 LiteRT segfaults and ONNX Runtime spends minutes creating them.
MAX_THREADS = 256


def check_threads(threads: int | None) -> int:
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise InputError(f"threads must be an integer from 1 to {MAX_THREADS}, got {threads!r}")
    return threads


def nhwc_shape(dims: list[Any], *, source: str) -> tuple[int | None, int | None, int | None]:
    """(H, W, C) from a 4-d NHWC input shape whose entries may be ints, -1, None or names."""
    if len(dims) != 4:
        raise InputError(f"{source}: expected a 4-d NHWC image input, found shape {list(dims)}")
    hwc = tuple(int(d) if isinstance(d, (int, np.integer)) and d > 0 else None for d in dims[1:])
    if hwc[2] not in (None, 3):
        raise InputError(
            f"{source}: expected an NHWC input with 3 channels, found shape {list(dims)} "
            "(channels-first models are not supported)"
        )
    if any(d is not None and d > MAX_INPUT_SIDE for d in hwc[:2]):
        raise InputError(
            f"{source}: input shape {list(dims)} is larger than {MAX_INPUT_SIDE} pixels a side"
        )
    return hwc  # type: ignore[return-value]


def probs_2d(out: np.ndarray, n: int, *, source: str) -> np.ndarray:
    """Check and flatten a backend's output to float32 (n, C)."""
    out = np.asarray(out)
    if out.ndim != 2:
        out = out.reshape(out.shape[0], -1) if out.ndim > 2 and out.shape[0] == n else out
    if out.ndim != 2 or out.shape[0] != n:
        raise InputError(f"{source}: expected a (batch, classes) output, got shape {out.shape}")
    return out.astype(np.float32, copy=False)
