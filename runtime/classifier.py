"""`load(path)` -> `Classifier`: any exported model file behind one small object.

    clf = load("runs/cats/export/model_int8.tflite", threads=2)
    clf.predict(bgr_frame)            # [("cat", 0.93), ("dog", 0.07)]
    clf.probs(to_input(pixels, clf.contract))   # (N, C) float32, what eval/export/bench use

The labels and preprocessing contract come from the file itself; the shared `to_pixels` /
`to_input` turn frames into model input, written into buffers allocated once per classifier so
the per-frame path allocates nothing beyond what OpenCV's resize and the backend need.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .backends import Backend, check_threads, choose_backend, installed_backends
from .backends._onnxproto import check_external_data
from .contract import Contract
from .errors import BrokenModelError, InputError
from .metadata import model_kind, read_contract
from .preprocess import to_input, to_pixels
from .resolve import resolve_model

Image = Any  # a BGR/gray/BGRA array of any dtype, a path, or encoded bytes
Prediction = list[tuple[str, float]]


class MetadataWarning(UserWarning):
    """A model file carries no edgecnn contract; defaults (class_0..N-1, 0..255 RGB) are used."""


class Classifier:
    """One opened model file: preprocessing contract, labels and a backend.

    Not thread-safe (it reuses its input buffers); open one per thread.
    """

    def __init__(self, backend: Backend, contract: Contract, path: Path) -> None:
        self._backend = backend
        self._raw = contract.is_identity_scaling and backend.takes_raw_pixels
        self.contract = contract
        self.path = path
        self.labels: tuple[str, ...] = tuple(contract.labels)
        h, w = contract.height, contract.width
        self._pixels = np.empty((h, w, 3), dtype=np.uint8)
        self._input = np.empty((1, h, w, 3), dtype=np.float32)
        self._batch_input = np.empty((0, h, w, 3), dtype=np.float32)

    @property
    def backend(self) -> str:
        return self._backend.name

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def threads(self) -> int:
        return self._backend.threads

    @property
    def takes_raw_pixels(self) -> bool:
        """Whether `probs_pixels` hands uint8 pixels to the model as they are (no float step)."""
        return self._raw

    def describe(self) -> dict[str, Any]:
        """Backend, module/version, delegate, threads: what a benchmark should record."""
        return {"path": str(self.path), **self._backend.describe()}

    def __repr__(self) -> str:
        return (
            f"Classifier({str(self.path)!r}, backend={self.backend!r}, "
            f"labels={list(self.labels)}, input={self.contract.height}x{self.contract.width})"
        )

    # --- batches of model input ----------------------------------------------------------------

    def probs(self, x: np.ndarray) -> NDArray[np.float32]:
        """(N, H, W, 3) model input (what `to_input` makes) -> float32 (N, C) probabilities.

        The input is float32, or any dtype holding the same values.  A model that takes uint8
        pixels as they are (`takes_raw_pixels`) gets uint8 input unconverted: there model input
        and pixels are the same numbers (identity scaling), which is what `frame_input` gives it.
        """
        x = self._batch_of(x, "model input")
        if x.shape[0] == 0:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        if x.dtype == np.uint8 and self._raw:
            return self._checked(self._backend.run_pixels(x))
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        return self._checked(self._backend.run(x))

    def _batch_of(self, x: np.ndarray, what: str) -> np.ndarray:
        """`x` as an (N, H, W, 3) array of the model's size; InputError otherwise."""
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[None]
        expected = (self.contract.height, self.contract.width, 3)
        if x.ndim != 4 or x.shape[1:] != expected:
            raise InputError(
                f"{self.path}: expected {what} of shape (N, {expected[0]}, {expected[1]}, 3), "
                f"got {x.shape}"
            )
        return x

    def _checked(self, out: np.ndarray) -> NDArray[np.float32]:
        """The backend's probabilities, refused when they do not match the labels."""
        if out.shape[1] != self.num_classes:
            raise InputError(
                f"{self.path}: model gives {out.shape[1]} outputs but has {self.num_classes} labels"
            )
        return out

    def probs_pixels(self, pixels: np.ndarray, *, batch: int = 32) -> NDArray[np.float32]:
        """uint8 (N, H, W, 3) pixels (what `to_pixels`/`load_pixels` make) -> float32 (N, C),
        `batch` at a time so a large dataset is never converted to float all at once.

        A model that takes uint8 pixels as they are (int8 TFLite with uint8 I/O, identity
        scaling) gets them directly: same numbers as through `to_input` and `probs`, without
        the float conversion and re-quantisation.
        """
        pixels = self._batch_of(pixels, "pixels")
        n = pixels.shape[0]
        if n == 0:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        raw = pixels.dtype == np.uint8 and self._raw
        batch = max(1, int(batch))
        out = np.empty((n, self.num_classes), dtype=np.float32)
        for start in range(0, n, batch):
            chunk = pixels[start : start + batch]
            if not raw:
                chunk = to_input(chunk, self.contract, out=self._batch_buffer(len(chunk)))
            out[start : start + len(chunk)] = self.probs(chunk)
        return out

    # --- one frame at a time, in the classifier's own buffers ----------------------------------

    def frame_pixels(self, image: Image) -> NDArray[np.uint8]:
        """One image (any size, BGR/gray/BGRA, a path or bytes) -> uint8 (H, W, 3) RGB pixels
        at the model's size, written into this classifier's buffer (valid until the next call;
        `to_pixels(image, clf.contract)` makes a fresh array instead)."""
        return to_pixels(image, self.contract, out=self._pixels)

    def frame_input(self, pixels: np.ndarray) -> np.ndarray:
        """One frame's uint8 (H, W, 3) pixels at the model's size -> the (1, H, W, 3) model input
        `probs` takes: the pixels themselves (a view, no copy) for a model that takes them as
        they are, else float32 `to_input` written into this classifier's buffer (valid until
        the next call).  Splitting the frame path here lets a caller time preprocessing and
        inference apart."""
        if self._raw and pixels.dtype == np.uint8:
            return pixels[None]
        to_input(pixels, self.contract, out=self._input[0])
        return self._input

    def frame_probs(self, x: np.ndarray) -> NDArray[np.float32]:
        """One frame's model input (what `frame_input` returns) -> a fresh float32
        (num_classes,) row: `probs(x)[0]` without the batch checks, for a caller that calls it
        for every frame of a stream and has checked the model once with `probs`."""
        if x.dtype != np.uint8 or not self._raw:
            x = np.asarray(x, dtype=np.float32)
        return self._backend.run_frame(x)

    def _batch_buffer(self, n: int) -> np.ndarray:
        if self._batch_input.shape[0] != n:
            h, w = self.contract.height, self.contract.width
            self._batch_input = np.empty((n, h, w, 3), dtype=np.float32)
        return self._batch_input

    # --- images ---------------------------------------------------------------------------------

    def predict(self, image: Image, top_k: int | None = None) -> Prediction:
        """One image (BGR frame of any size/channels/dtype, a path, or bytes) -> the top-k
        `(label, score)` pairs, best first (all classes when top_k is None)."""
        x = self.frame_input(self.frame_pixels(image))
        return self._top(self.probs(x)[0], top_k)

    def predict_batch(self, images: Iterable[Image], top_k: int | None = None) -> list[Prediction]:
        """Several images in one backend call -> one top-k list per image."""
        images = list(images)
        if not images:
            return []
        x = self._batch_buffer(len(images))
        for i, image in enumerate(images):
            to_pixels(image, self.contract, out=self._pixels)
            to_input(self._pixels, self.contract, out=x[i])
        return [self._top(row, top_k) for row in self.probs(x)]

    def _top(self, probs: np.ndarray, top_k: int | None) -> Prediction:
        k = self.num_classes if top_k is None else _check_top_k(top_k)
        return ranked(probs, self.labels, k)


def ranked(probs: np.ndarray, labels: Sequence[str], k: int) -> Prediction:
    """The `k` best `(label, score)` pairs of one row of probabilities, best first: ties in
    label order, a NaN score last, scores as Python floats.  Sorting a short Python list is a few
    times cheaper than `np.argsort` on the few classes a model usually has, and the live loop
    calls this once a frame."""
    scores = probs.tolist()
    if len(scores) > 64 or any(s != s for s in scores):  # numpy ranks a NaN last
        order = np.argsort(-probs, kind="stable")[:k].tolist()
    else:
        order = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)[:k]
    return [(labels[i], scores[i]) for i in order]


def _check_top_k(top_k: int) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise InputError(f"top_k must be a positive integer, got {top_k!r}")
    return int(top_k)


# --- load ----------------------------------------------------------------------------------------


def load(path: str | os.PathLike, backend: str = "auto", threads: int | None = None) -> Classifier:
    """Open a model file (`.tflite`, `.onnx`, `.keras`, or a run directory) for inference.

    `backend` is "auto" (by file type and what is installed) or one of tflite/onnx/opencv/keras;
    `threads` defaults to every core available to the process.  Labels and preprocessing come
    from the file's embedded contract; a file without one gets class_0..N-1 and a warning.

    Example:
        >>> clf = load("runs/cats/export/model_int8.tflite", threads=2)  # doctest: +SKIP
        >>> clf.predict("cat.jpg", top_k=1)  # doctest: +SKIP
        [('cat', 0.97)]
    """
    threads = check_threads(threads)
    path = resolve_model(path, backend=backend)
    kind = model_kind(path)
    candidates = _candidates(kind, backend, path)
    contract = read_contract(path)  # before opening: a corrupt .onnx fails here with one line
    if kind == "onnx":
        check_external_data(path)  # before ONNX Runtime or OpenCV reads any file it names
    opened = _open_first(candidates, path, threads)
    if contract is None:
        contract = _assumed_contract(opened, path)
    _check_fits(opened, contract, path)
    return Classifier(opened, contract, path)


def _candidates(kind: str, backend: str, path: Path) -> list[type[Backend]]:
    """The backend asked for, or for `auto` every installed one for this kind, fastest first."""
    first = choose_backend(kind, backend, path=path)  # raises when nothing installed can
    return installed_backends(kind) if backend == "auto" else [first]


def _open_first(candidates: list[type[Backend]], path: Path, threads: int) -> Backend:
    """Open with the first candidate whose engine can run the file.

    An installed engine may still refuse a valid file (OpenCV's DNN module cannot run some QDQ
    int8 layouts); `auto` then moves on to the next installed backend, and only when none can
    does it fail, with every backend's one-line reason.  A file an engine found malformed
    (BrokenModelError) is refused at once: the next engine may check less, and crash on it."""
    reasons = []
    for cls in candidates:
        try:
            return cls.open(path, threads=threads)
        except BrokenModelError:
            raise
        except InputError as e:
            if len(candidates) == 1:
                raise
            reasons.append(f"{cls.name}: {str(e).removeprefix(f'{path}: ')}")
    raise InputError(f"{path}: no installed backend can run this file ({'; '.join(reasons)})")


def _assumed_contract(backend: Backend, path: Path) -> Contract:
    h, w, _ = backend.input_shape
    n = backend.num_classes
    if not h or not w or not n:
        raise InputError(
            f"{path}: no edgecnn metadata in the file, and its input size/number of classes "
            f"cannot be read (input {backend.input_shape}, classes {n})"
        )
    warnings.warn(
        f"{path}: no edgecnn metadata; assuming labels class_0..class_{n - 1}, "
        f"{h}x{w} RGB input with pixels 0..255",
        MetadataWarning,
        stacklevel=3,
    )
    return Contract.default(n, h, w)


def _check_fits(backend: Backend, contract: Contract, path: Path) -> None:
    """The embedded contract must describe the graph it sits in."""
    h, w, _ = backend.input_shape
    if (h and h != contract.height) or (w and w != contract.width):
        raise InputError(
            f"{path}: metadata says input {contract.height}x{contract.width} "
            f"but the model takes {h}x{w}"
        )
    n = backend.num_classes
    if n and n != contract.num_classes:
        raise InputError(
            f"{path}: metadata lists {contract.num_classes} labels but the model has {n} outputs"
        )
