"""Pass criteria of the aarch64 check: how close the emulated device must come to x86.

Four comparisons for one model file on one userland, each giving a `Verdict`:

- same pixels (`compare_raw`): both sides run the same preprocessed input tensors through the
  backend's raw `run`.  Integer files must give bit-identical outputs (the int8 kernels are
  exact on every CPU); float files may differ by rounding only, within `FLOAT_TOLERANCE`.
- end to end (`compare_end_to_end`): each side decodes and resizes the photos itself
  (`edgecnn predict`).  A different top-1 is allowed only where x86 itself was undecided (top-2
  margin below `NEAR_TIE`) and on at most `MAX_FLIP_FRACTION` of the images.
- eval (`compare_eval`): `edgecnn eval` on the same photos on both sides counts the same images,
  and its number of correct answers moves by no more than predict's top-1 changes there.
- live loop (`compare_live`): on the device, `edgecnn run --jsonl` labels a clip frame by frame
  like `edgecnn predict` labels the same frames (decoded on the device; near-ties as above).

Pure functions over numpy arrays and parsed JSON, so they are tested without an emulator.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

FLOAT_TOLERANCE = 1e-5  # max |Δ| of float outputs fed the same input tensors
NEAR_TIE = 0.05  # x86 top-1 minus top-2 probability below which a different top-1 is excused
MAX_FLIP_FRACTION = 0.01  # share of images whose top-1 may differ end to end


@dataclass(frozen=True)
class Verdict:
    """One comparison: whether it passed, its figures for the result line, and why it failed."""

    ok: bool
    figures: str
    reason: str = ""


@dataclass(frozen=True)
class Predictions:
    """Class probabilities of `edgecnn predict --json` output, one row per image."""

    images: tuple[str, ...]
    labels: tuple[str, ...]
    probs: np.ndarray  # float64 (n_images, n_labels) in `labels` order

    @property
    def top1(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def margins(self) -> np.ndarray:
        """Top-1 minus top-2 probability of every image (1.0 for a one-class model)."""
        if self.probs.shape[1] < 2:
            return np.ones(len(self.probs))
        top2 = np.sort(self.probs, axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0]

    def top1_labels(self) -> list[str]:
        return [self.labels[i] for i in self.top1]

    def under(self, folder: str) -> Predictions:
        """Only the images inside `folder` (one predict call covers photos and clip frames)."""
        prefix = folder.rstrip("/") + "/"
        return self._keep([i for i, image in enumerate(self.images) if image.startswith(prefix)])

    def only(self, images: set[str]) -> Predictions:
        """Only the images named in `images`, in this object's order."""
        return self._keep([i for i, image in enumerate(self.images) if image in images])

    def _keep(self, rows: list[int]) -> Predictions:
        return Predictions(tuple(self.images[i] for i in rows), self.labels, self.probs[rows])


def parse_predictions(doc: dict[str, Any]) -> Predictions:
    """`edgecnn predict --json` output -> `Predictions`; classes missing from an image's top-k
    get probability 0, so call predict with `--top-k` of at least the number of labels."""
    labels = tuple(doc["labels"])
    index = {label: i for i, label in enumerate(labels)}
    results = doc["results"]
    probs = np.zeros((len(results), len(labels)))
    for row, result in enumerate(results):
        for p in result["predictions"]:
            probs[row, index[p["label"]]] = p["score"]
    return Predictions(tuple(r["image"] for r in results), labels, probs)


def allowed_flips(n: int) -> int:
    """How many of `n` images may change top-1 end to end."""
    return math.floor(n * MAX_FLIP_FRACTION + 1e-9)


def compare_raw(reference: np.ndarray, device: np.ndarray, *, exact: bool) -> Verdict:
    """Outputs of the same input tensors on x86 (`reference`) and the device."""
    if reference.shape != device.shape:
        return Verdict(False, "shape mismatch", f"outputs {device.shape}, x86 {reference.shape}")
    n = len(reference)
    if exact:
        same = np.array_equal(reference, device)
        if same:
            return Verdict(True, "bit-identical")
        rows = int((reference != device).reshape(n, -1).any(axis=1).sum())
        diff = float(np.abs(reference.astype(np.float64) - device).max())
        return Verdict(
            False,
            f"{rows}/{n} differ",
            f"int8 outputs differ on {rows} of {n} images (max |Δ| {diff:.3g}), "
            "expected bit-identical",
        )
    diff = float(np.abs(reference.astype(np.float64) - device).max()) if n else 0.0
    if diff <= FLOAT_TOLERANCE:
        return Verdict(True, f"max|Δ| {diff:.1e}")
    return Verdict(
        False,
        f"max|Δ| {diff:.1e}",
        f"float outputs differ by up to {diff:.3g} > {FLOAT_TOLERANCE:g}",
    )


def compare_end_to_end(reference: Predictions, device: Predictions) -> Verdict:
    """`edgecnn predict` on the same photos, each side decoding them itself."""
    problem = _mismatch(reference, device)
    if problem:
        return Verdict(False, "not comparable", problem)
    n = len(reference.images)
    flips = reference.top1 != device.top1
    n_flips = int(flips.sum())
    firm = flips & (reference.margins >= NEAR_TIE)
    diff = float(np.abs(reference.probs - device.probs).max()) if n else 0.0
    figures = f"top-1 {n - n_flips}/{n}, max|Δp| {diff:.1e}"
    if firm.any():
        worst = int(np.flatnonzero(firm)[np.argmax(reference.margins[firm])])
        return Verdict(
            False,
            figures,
            f"{int(firm.sum())} top-1 change(s) where x86 was sure, e.g. {reference.images[worst]} "
            f"({reference.top1_labels()[worst]} by {reference.margins[worst]:.3f} on x86, "
            f"{device.top1_labels()[worst]} here)",
        )
    if n_flips > allowed_flips(n):
        return Verdict(
            False,
            figures,
            f"{n_flips} near-tie top-1 changes in {n} images, at most {allowed_flips(n)} allowed",
        )
    return Verdict(True, figures)


def _mismatch(reference: Predictions, device: Predictions) -> str:
    if reference.labels != device.labels:
        return f"labels {list(device.labels)}, x86 {list(reference.labels)}"
    if reference.images != device.images:
        return (
            f"{len(device.images)} images predicted, x86 {len(reference.images)} (or other files)"
        )
    return ""


def compare_eval(reference: dict[str, Any], device: dict[str, Any], *, flips: int) -> Verdict:
    """`edgecnn eval --json` reports of x86 and the device on the same photos; `flips` is the
    number of those photos whose top-1 changed between x86 and the device in `edgecnn predict`."""
    n, n_device = int(reference["count"]), int(device["count"])
    acc, acc_device = float(reference["accuracy"]), float(device["accuracy"])
    figures = (
        f"{acc_device:.1%} = x86" if acc_device == acc else f"{acc_device:.1%} (x86 {acc:.1%})"
    )
    if n_device != n:
        return Verdict(False, figures, f"eval counted {n_device} images, x86 {n}")
    moved = abs(round(acc_device * n) - round(acc * n))
    if moved > flips:
        return Verdict(
            False,
            figures,
            f"eval accuracy {acc_device:.2%} vs {acc:.2%} on x86: {moved} answers moved, "
            f"but predict saw {flips} top-1 change(s)",
        )
    return Verdict(True, figures)


def compare_live(run_labels: Sequence[str], frames: Predictions) -> Verdict:
    """Labels of `edgecnn run --jsonl` on a clip against `edgecnn predict` on its frames (saved
    as lossless images in frame order)."""
    n = len(frames.images)
    figures = f"{len(run_labels)} frames"
    if len(run_labels) != n:
        return Verdict(False, figures, f"run gave {len(run_labels)} frames, the clip has {n}")
    predicted = frames.top1_labels()
    differ = np.array([a != b for a, b in zip(run_labels, predicted)], dtype=bool)
    firm = differ & (frames.margins >= NEAR_TIE)
    figures = f"{n - int(differ.sum())}/{n} frames"
    if firm.any():
        i = int(np.flatnonzero(firm)[0])
        return Verdict(
            False,
            figures,
            f"frame {i}: run says {run_labels[i]}, predict {predicted[i]} "
            f"(margin {frames.margins[i]:.3f})",
        )
    if int(differ.sum()) > allowed_flips(n):
        return Verdict(False, figures, f"{int(differ.sum())} near-tie frames differ in {n}")
    return Verdict(True, figures)


def jsonl_labels(text: str) -> list[str]:
    """The `label` of every frame object `edgecnn run --jsonl -` printed (one a frame, in order:
    a file source without `--realtime` drops no frame)."""

    return [json.loads(line)["label"] for line in text.splitlines() if line.startswith("{")]


def top1_changes(reference: Predictions, device: Predictions) -> int:
    """How many images changed top-1 between the two (0 when they are not comparable)."""
    if _mismatch(reference, device):
        return 0
    return int((reference.top1 != device.top1).sum())
