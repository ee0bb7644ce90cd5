"""Prove an exported file behaves like the Keras model it came from.

Every artifact runs on the check set through `edgecnn.runtime` (the code users deploy, not a
test-only path) and is compared with the Keras model: accuracy, top-1 agreement and the largest
absolute difference in any class probability.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# (minimum top-1 agreement, maximum |Δp| or None)
THRESHOLDS: dict[str, tuple[float, float | None]] = {
    "tflite-fp32": (0.999, 1e-4),
    "onnx": (0.999, 1e-4),
    "tflite-fp16": (0.995, None),
    "tflite-drq": (0.98, None),
    "tflite-int8": (0.98, None),
    "onnx-int8": (0.98, None),
}
DEBUG_BELOW = 0.995  # int8 agreement below which the per-layer error report is produced
_BATCH = 64


@dataclass(frozen=True)
class Parity:
    """How an artifact compares with the Keras model on the check set."""

    images: int
    agreement: float
    max_abs_diff: float
    accuracy: float
    reference_accuracy: float
    min_agreement: float
    max_abs_diff_allowed: float | None
    backend: str

    @property
    def passed(self) -> bool:
        if not np.isfinite(self.max_abs_diff) or self.agreement < self.min_agreement:
            return False
        return self.max_abs_diff_allowed is None or self.max_abs_diff <= self.max_abs_diff_allowed

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}

    def summary(self) -> str:
        limit = f"≥ {self.min_agreement:.1%}"
        if self.max_abs_diff_allowed is not None:
            limit += f" and max |Δp| ≤ {self.max_abs_diff_allowed:g}"
        return (
            f"agreement {self.agreement:.2%}, max |Δp| {self.max_abs_diff:.3g}, "
            f"accuracy {self.accuracy:.2%} (Keras {self.reference_accuracy:.2%}) "
            f"on {self.images} images; required {limit}"
        )


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
) -> Parity:
    min_agreement, max_diff = THRESHOLDS[fmt]
    if probs.shape != reference.shape or not np.all(np.isfinite(probs)):
        probs = np.full(reference.shape, np.nan, dtype=np.float32)
    top = probs.argmax(axis=1)
    ref_top = reference.argmax(axis=1)
    return Parity(
        images=len(targets),
        agreement=float(np.mean(top == ref_top)),
        max_abs_diff=float(np.nan_to_num(np.max(np.abs(probs - reference)), nan=np.inf)),
        accuracy=float(np.mean(top == targets)),
        reference_accuracy=float(np.mean(ref_top == targets)),
        min_agreement=min_agreement,
        max_abs_diff_allowed=max_diff,
        backend=backend,
    )


def _load(path: Path, threads: int | None):
    from edgecnn.runtime import load

    return load(path, threads=threads)
