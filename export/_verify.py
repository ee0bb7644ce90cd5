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


def keras_probs(model, inputs: np.ndarray) -> np.ndarray:
    """Reference probabilities from the Keras model in inference mode."""
    out = [
        np.asarray(model(inputs[i : i + _BATCH], training=False), dtype=np.float32)
        for i in range(0, len(inputs), _BATCH)
    ]
    return np.concatenate(out)


def artifact_probs(path: Path, inputs: np.ndarray, *, threads: int | None = None) -> tuple[np.ndarray, str]:
    """Probabilities of an exported file through `edgecnn.runtime.load(...).probs`."""
    clf = _load(path, threads)
    out = [np.asarray(clf.probs(inputs[i : i + _BATCH]), dtype=np.float32)
           for i in range(0, len(inputs), _BATCH)]
    return np.concatenate(out), str(clf.backend)


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
    try:
        from edgecnn.runtime import load
    except ImportError:  # runtime not built yet: a minimal stand-in with the same `probs`
        return _MinimalClassifier(path, threads)
    return load(path, threads=threads)


class _MinimalClassifier:
    """Stand-in for `edgecnn.runtime.load` while the runtime is being written."""

    def __init__(self, path: Path, threads: int | None) -> None:
        self.path = Path(path)
        if self.path.suffix == ".onnx":
            import onnxruntime as ort

            self.backend = "onnx"
            self._session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        else:
            from ai_edge_litert.interpreter import Interpreter

            self.backend = "tflite"
            self._interp = Interpreter(model_path=str(path), num_threads=threads or 2)

    def probs(self, x: np.ndarray) -> np.ndarray:
        if self.backend == "onnx":
            return self._session.run(None, {"image": x.astype(np.float32)})[0]
        it = self._interp
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        it.resize_tensor_input(inp["index"], list(x.shape))
        it.allocate_tensors()
        scale, zero = inp["quantization"]
        if inp["dtype"] != np.float32:
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])
        it.set_tensor(inp["index"], x)
        it.invoke()
        y = it.get_tensor(out["index"])
        scale, zero = out["quantization"]
        if out["dtype"] != np.float32:
            y = (y.astype(np.float32) - zero) * scale
        return y
