"""Prove an exported file behaves like the Keras model it came from.

Every artifact runs on the check set through `edgecnn.runtime` (the code users deploy, not a
test-only path) and is compared with the Keras model by one of two gates.

Float files (`tflite-fp32`, `onnx`, `tflite-fp16`) compute what Keras computes up to float
rounding, so they must give the same top-1 answer on (almost) every image, and fp32 every
probability within 1e-4: anything else is a conversion bug.

Quantized files (`tflite-drq`, `tflite-int8`, `onnx-int8`) legitimately differ.  Every weight,
and in int8 every activation, is rounded to one of 256 levels, so a healthy file's probabilities
move by a few hundredths, and wherever the float model hesitates between two classes (a top-1
margin of a few hundredths) that is enough to swap its answer.  Such near-tie swaps go both
ways: an uncertain model (five classes at 56% accuracy, say) can swap 3% of its answers and keep
its accuracy to the image.  Top-1 agreement alone would refuse that file, so the quantized gate
asks what a real int8 failure (ranges that do not fit the activations, a saturating layer, a
wrong calibration) changes and rounding does not:

- accuracy: the change against Keras on the same images is judged against its own noise.  Only
  the images that exactly one of the two gets right move it (b: Keras only, c: the file only),
  so its standard error is sqrt(b + c) / n (McNemar); a drop is refused when it is larger than
  2 standard errors and more than 1 point;
- confident answers: where Keras is sure (top-1 margin p1 - p2 of at least 0.25), swapping
  the answer takes both top probabilities moving by 0.125 in opposite directions, several times
  what rounding does; at least 99% of those answers must stay;
- probabilities: for 95% of the images, no class probability moves by more than 0.15 (scores
  are what `edgecnn run --min-score` thresholds, so they must stay the model's own);
- classes: no class that Keras answers clearly (margin >= 0.1) on at least 5 images may lose
  half of those answers, and no class may gain a quarter of all answers, the signature of a
  collapsed int8 model that answers one class whatever it sees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.runtime.artifacts import FORMATS

# float formats: (minimum top-1 agreement, maximum |Δp| or None), from the registry
THRESHOLDS: dict[str, tuple[float, float | None]] = {
    f.name: (f.min_agreement, f.max_abs_diff) for f in FORMATS if f.gate == "float"
}
QUANTIZED = tuple(f.name for f in FORMATS if f.gate == "quantized")
DEBUG_BELOW = 0.995  # int8 agreement below which the per-layer error report is produced
_BATCH = 64


@dataclass(frozen=True)
class QuantizedGate:
    """Thresholds of the quantized formats' gate (the module docstring says why these)."""

    accuracy_floor: float = 0.01  # a drop of up to 1 point always passes...
    accuracy_sigmas: float = 2.0  # ...and so does one within 2 standard errors
    confident_margin: float = 0.25  # Keras top-1 margin from which an answer counts as sure
    confident_agreement: float = 0.99  # share of sure answers that must stay
    diff_quantile: float = 0.95  # share of images whose largest |Δp| is bounded...
    max_diff: float = 0.15  # ...by this
    class_margin: float = 0.1  # Keras margin from which an answer is no near-tie
    min_class_images: int = 5  # clear answers a class needs before it can count as lost
    min_class_kept: float = 0.5  # share of a class's clear answers that must stay
    max_share_gain: float = 0.25  # largest gain of one class's share of all answers


QUANTIZED_GATE = QuantizedGate()


@dataclass(frozen=True)
class Criterion:
    """One check of the gate: its measured value, its limit and what it says."""

    name: str
    value: float
    limit: float
    rule: str  # ">=" or "<=": how value must compare with limit
    passed: bool
    says: str  # one phrase for the console and the refusal message
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Parity:
    """How an artifact compares with the Keras model on the check set."""

    gate: str  # "float" or "quantized"
    images: int
    agreement: float
    max_abs_diff: float
    accuracy: float
    reference_accuracy: float
    backend: str
    criteria: tuple[Criterion, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.criteria)

    def failures(self) -> list[Criterion]:
        return [c for c in self.criteria if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["criteria"] = [c.to_dict() for c in self.criteria]
        return {**out, "passed": self.passed}

    def summary(self) -> str:
        """One line: the figures, then the first failed checks (`criteria` has all of them)."""
        head = (
            f"accuracy {self.accuracy:.2%} (Keras {self.reference_accuracy:.2%}), "
            f"agreement {self.agreement:.2%}, max |Δp| {self.max_abs_diff:.2g} "
            f"on {self.images} images"
        )
        failed = self.failures()
        more = f"; {len(failed) - 2} more failed checks" if len(failed) > 2 else ""
        return head + "".join(f"; {c.says}" for c in failed[:2]) + more


def keras_probs(model, pixels: np.ndarray, contract) -> np.ndarray:
    """Reference probabilities from the Keras model in inference mode, batch by batch."""
    from edgecnn.runtime.preprocess import to_input

    out = [
        np.asarray(
            model(to_input(pixels[i : i + _BATCH], contract), training=False), dtype=np.float32
        )
        for i in range(0, len(pixels), _BATCH)
    ]
    return np.concatenate(out)


def artifact_probs(
    path: Path, pixels: np.ndarray, *, threads: int | None = None
) -> tuple[np.ndarray, str]:
    """Probabilities of an exported file through `edgecnn.runtime.load(...)`: `probs_pixels`
    applies the shared `to_input` and calls `probs` batch by batch."""
    clf = _load(path, threads)
    return np.asarray(clf.probs_pixels(pixels, batch=_BATCH), dtype=np.float32), str(clf.backend)


def compare(
    fmt: str,
    probs: np.ndarray,
    reference: np.ndarray,
    targets: np.ndarray,
    *,
    backend: str,
    labels: Sequence[str] | None = None,
) -> Parity:
    """Judge an artifact's probabilities against Keras' on the same labelled images.

    Args:
        fmt: the artifact's format; picks the float or the quantized gate.
        probs: the artifact's (N, C) probabilities.
        reference: Keras' (N, C) probabilities.
        targets: the N true class indices.
        backend: the runtime backend that produced `probs` (recorded).
        labels: class names for the messages (default: class indices).

    Example:
        >>> compare("tflite-int8", int8_probs, keras_probs, targets, backend="tflite").passed
        True
    """
    finite = probs.shape == reference.shape and bool(np.all(np.isfinite(probs)))
    if not finite:
        probs = np.full(reference.shape, np.nan, dtype=np.float32)
    names = list(labels) if labels is not None else [str(i) for i in range(reference.shape[1])]
    top, ref_top = probs.argmax(axis=1), reference.argmax(axis=1)
    agreement = float(np.mean(top == ref_top))
    max_diff = float(np.nan_to_num(np.max(np.abs(probs - reference)), nan=np.inf))
    outputs = _finite(finite, probs.shape, reference.shape)
    if fmt in QUANTIZED:
        gate = "quantized"
        criteria = (outputs, *_quantized(probs, reference, targets, names, QUANTIZED_GATE))
    else:
        gate = "float"
        criteria = (outputs, *_float(agreement, max_diff, THRESHOLDS[fmt]))
    return Parity(
        gate=gate,
        images=len(targets),
        agreement=agreement,
        max_abs_diff=max_diff,
        accuracy=float(np.mean(top == targets)),
        reference_accuracy=float(np.mean(ref_top == targets)),
        backend=backend,
        criteria=criteria,
    )


# --- the criteria --------------------------------------------------------------------------


def _finite(finite: bool, shape: tuple, expected: tuple) -> Criterion:
    says = (
        "finite outputs" if finite else f"outputs not finite (shape {shape}, expected {expected})"
    )
    return Criterion("finite_outputs", float(finite), 1.0, ">=", finite, says, {})


def _float(agreement: float, max_diff: float, limits: tuple[float, float | None]):
    """The float formats' gate: the same answers, and (fp32) the same probabilities."""
    min_agreement, max_allowed = limits
    ok = agreement >= min_agreement
    yield Criterion(
        "agreement",
        agreement,
        min_agreement,
        ">=",
        ok,
        f"agreement {agreement:.2%} {'≥' if ok else '<'} {min_agreement:.1%} required",
        {},
    )
    if max_allowed is not None:
        ok = max_diff <= max_allowed
        yield Criterion(
            "max_abs_diff",
            max_diff,
            max_allowed,
            "<=",
            ok,
            f"max |Δp| {max_diff:.3g} {'≤' if ok else '>'} {max_allowed:g} allowed",
            {},
        )


def _quantized(
    probs: np.ndarray,
    reference: np.ndarray,
    targets: np.ndarray,
    labels: list[str],
    gate: QuantizedGate,
) -> tuple[Criterion, ...]:
    top, ref_top = probs.argmax(axis=1), reference.argmax(axis=1)
    ordered = np.sort(reference, axis=1)
    margin = ordered[:, -1] - ordered[:, -2] if reference.shape[1] > 1 else ordered[:, -1]
    return (
        accuracy_change(top, ref_top, targets, gate=gate),
        confident_agreement(top, ref_top, margin, gate=gate),
        probability_shift(probs, reference, gate=gate),
        lost_classes(top, ref_top, margin, labels, gate=gate),
        dominant_class(top, ref_top, labels, gate=gate),
    )


def accuracy_change(
    top: np.ndarray, ref_top: np.ndarray, targets: np.ndarray, *, gate: QuantizedGate
) -> Criterion:
    """The file's accuracy minus Keras', refused only when the drop is beyond its noise."""
    n = max(len(targets), 1)
    right, ref_right = top == targets, ref_top == targets
    b = int(np.sum(ref_right & ~right))  # only Keras right
    c = int(np.sum(right & ~ref_right))  # only the file right
    change = (c - b) / n
    se = math.sqrt(b + c) / n
    allowed = max(gate.accuracy_floor, gate.accuracy_sigmas * se)
    ok = change >= -allowed - 1e-12
    accuracy, ref_accuracy = float(np.mean(right)), float(np.mean(ref_right))
    return Criterion(
        "accuracy_change",
        change,
        -allowed,
        ">=",
        ok,
        f"accuracy change {_points(change)} ± {se * 100:.1f} points"
        if ok
        else f"accuracy {accuracy:.1%} vs Keras {ref_accuracy:.1%} "
        f"({_points(change)} ± {se * 100:.1f} points, {_points(-allowed)} allowed)",
        {
            "accuracy": accuracy,
            "reference_accuracy": ref_accuracy,
            "keras_only_right": b,
            "file_only_right": c,
            "standard_error": se,
            "floor": gate.accuracy_floor,
            "sigmas": gate.accuracy_sigmas,
        },
    )


def confident_agreement(
    top: np.ndarray, ref_top: np.ndarray, margin: np.ndarray, *, gate: QuantizedGate
) -> Criterion:
    """Share of the answers Keras is sure of (margin >= confident_margin) that stay."""
    sure = margin >= gate.confident_margin
    n = int(np.sum(sure))
    flipped = int(np.sum(sure & (top != ref_top)))
    allowed = math.floor((1.0 - gate.confident_agreement) * n + 1e-9)
    ok = flipped <= allowed
    kept = 1.0 - flipped / n if n else 1.0
    says = (
        f"{flipped} of {n} confident answers changed (margin ≥ {gate.confident_margin:g}, "
        f"{allowed} allowed)"
        if not ok
        else f"{kept:.1%} of {n} confident answers kept"
        if n
        else "no confident answers to keep"
    )
    return Criterion(
        "confident_agreement",
        kept,
        gate.confident_agreement,
        ">=",
        ok,
        says,
        {"margin": gate.confident_margin, "images": n, "changed": flipped, "allowed": allowed},
    )


def probability_shift(
    probs: np.ndarray, reference: np.ndarray, *, gate: QuantizedGate
) -> Criterion:
    """The `diff_quantile` quantile over images of each image's largest |Δp|."""
    per_image = np.nan_to_num(np.max(np.abs(probs - reference), axis=1), nan=np.inf)
    value = float(np.quantile(per_image, gate.diff_quantile, method="higher"))
    ok = value <= gate.max_diff
    share = f"{gate.diff_quantile:.0%}"
    says = (
        f"|Δp| ≤ {value:.2g} on {share} of images"
        if ok
        else f"|Δp| up to {value:.2g} on {share} of images ({gate.max_diff:g} allowed)"
    )
    detail = {"quantile": gate.diff_quantile, "mean": float(np.mean(per_image))}
    return Criterion("probability_shift", value, gate.max_diff, "<=", ok, says, detail)


def lost_classes(
    top: np.ndarray,
    ref_top: np.ndarray,
    margin: np.ndarray,
    labels: list[str],
    *,
    gate: QuantizedGate,
) -> Criterion:
    """Classes whose clear Keras answers (no near-ties) the file mostly gives to another."""
    clear = margin >= gate.class_margin
    lost: dict[str, float] = {}
    for k, name in enumerate(labels):
        mine = clear & (ref_top == k)
        n = int(np.sum(mine))
        if n >= gate.min_class_images:
            kept = float(np.mean(top[mine] == k))
            if kept < gate.min_class_kept:
                lost[name] = kept
    ok = not lost
    listed = ", ".join(f"{name!r} ({kept:.0%} kept)" for name, kept in lost.items())
    says = "no class lost" if ok else f"class answers lost: {listed}"
    detail = {
        "classes": lost,
        "margin": gate.class_margin,
        "min_images": gate.min_class_images,
        "min_kept": gate.min_class_kept,
    }
    return Criterion("lost_classes", float(len(lost)), 0.0, "<=", ok, says, detail)


def dominant_class(
    top: np.ndarray, ref_top: np.ndarray, labels: list[str], *, gate: QuantizedGate
) -> Criterion:
    """The largest gain of one class's share of all answers, file minus Keras."""
    n, k = max(len(top), 1), len(labels)
    share = np.bincount(top, minlength=k)[:k] / n
    ref_share = np.bincount(ref_top, minlength=k)[:k] / n
    worst = int(np.argmax(share - ref_share))
    gain = float(share[worst] - ref_share[worst])
    ok = gain <= gate.max_share_gain
    says = (
        f"largest class share gain {gain:+.0%}"
        if ok
        else f"{share[worst]:.0%} of answers are {labels[worst]!r} (Keras {ref_share[worst]:.0%})"
    )
    detail = {
        "class": labels[worst],
        "share": float(share[worst]),
        "reference_share": float(ref_share[worst]),
    }
    return Criterion("dominant_class", gain, gate.max_share_gain, "<=", ok, says, detail)


def _points(change: float) -> str:
    return f"{change * 100:+.1f}".replace("-", "−")


def _load(path: Path, threads: int | None):
    from edgecnn.runtime import load

    return load(path, threads=threads)
