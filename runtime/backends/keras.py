"""`.keras` files through Keras/TensorFlow, imported only when this backend is chosen.

The reference for parity checks and the "TensorFlow path" in cold-start benchmarks.  The model
is called directly (`model(x, training=False)`), not through `model.predict`, which builds a
tf.data pipeline and a progress bar per call and is ~10x slower for single frames.
"""

from __future__ import annotations

import importlib
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError, MissingDependencyError
from .base import Backend, nhwc_shape, probs_2d

_CHUNK = 64  # bound memory on large evaluation batches


def _import_keras():
    try:
        return importlib.import_module("keras")
    except ImportError:
        raise MissingDependencyError("tensorflow/keras", "train", "running .keras files") from None


def _set_tf_threads(threads: int) -> None:
    """Size TensorFlow's thread pools; only possible before TF's runtime starts."""
    try:
        tf = importlib.import_module("tensorflow")
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except (ImportError, RuntimeError):
        pass  # another backend (JAX/torch) or TF already initialised: keep its pools


class KerasBackend(Backend):
    name = "keras"
    kinds = ("keras",)
    packages = ("keras",)
    extra = "train"

    def __init__(self, path: Path, threads: int, model: Any, keras: Any) -> None:
        self.path = path
        self.threads = threads
        self._model = model
        self._to_numpy = keras.ops.convert_to_numpy
        self.version = f"keras {keras.__version__} ({keras.backend.backend()})"
        shape = model.inputs[0].shape if getattr(model, "inputs", None) else None
        if shape is None or len(model.inputs) != 1:
            raise InputError(f"{path}: expected a model with 1 image input")
        self.input_shape = nhwc_shape(list(shape), source=str(path))
        out = model.outputs[0].shape if getattr(model, "outputs", None) else None
        self.num_classes = int(out[-1]) if out is not None and out[-1] else None

    @classmethod
    def open(cls, path: Path, *, threads: int) -> KerasBackend:
        if not zipfile.is_zipfile(path):
            raise InputError(f"{path}: not a .keras archive (corrupt, truncated or another format)")
        keras = _import_keras()
        if keras.backend.backend() == "tensorflow":
            _set_tf_threads(threads)
        try:
            model = keras.saving.load_model(path, compile=False)
        except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile) as e:
            text = str(e).strip()
            reason = text.splitlines()[0][:300] if text else type(e).__name__
            raise InputError(f"{path}: cannot load Keras model ({reason})") from None
        return cls(path, threads, model, keras)

    def run(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        n = x.shape[0]
        parts = [
            self._to_numpy(self._model(x[i : i + _CHUNK], training=False))
            for i in range(0, n, _CHUNK)
        ]
        out = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        return probs_2d(out, n, source=str(self.path))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "module": self.version}
