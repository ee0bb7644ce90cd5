"""`.onnx` files through ONNX Runtime on the CPU execution provider.

Graph optimisation is switched fully on and the intra-op thread pool is sized explicitly (ONNX
Runtime would otherwise take every core and spin).  QDQ int8 files keep float input/output, so
nothing is quantised here; a file with a uint8 image input is fed the 0..255 pixels as uint8.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import BrokenModelError, InputError, MissingDependencyError, first_line
from .base import Backend, nhwc_shape, probs_2d

# ONNX Runtime's exceptions for a valid file it cannot run (an operator or type it has no
# kernel for): another engine may.  Every other load failure (InvalidProtobuf, InvalidGraph,
# InvalidArgument, Fail: a failed check of the graph, its shapes or attributes) means the file
# is malformed.
_UNSUPPORTED = frozenset({"NotImplemented", "EPFail"})


def _import_ort():
    try:
        return importlib.import_module("onnxruntime")
    except ImportError:
        raise MissingDependencyError("onnxruntime", "onnx", "running .onnx files") from None


class OnnxBackend(Backend):
    name = "onnx"
    kinds = ("onnx",)
    packages = ("onnxruntime",)
    extra = "onnx"

    def __init__(self, path: Path, threads: int, session: Any, version: str) -> None:
        self.path = path
        self.threads = threads
        self.version = version
        self._session = session
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1:
            raise InputError(f"{path}: expected 1 image input, found {len(inputs)}")
        self._input_name = inputs[0].name
        self._output_names = [outputs[0].name]
        self.input_shape = nhwc_shape(list(inputs[0].shape), source=str(path))
        if inputs[0].type not in ("tensor(float)", "tensor(uint8)"):
            raise InputError(f"{path}: unsupported input type {inputs[0].type}")
        self._uint8_input = inputs[0].type == "tensor(uint8)"
        last = outputs[0].shape[-1] if outputs[0].shape else None
        self.num_classes = int(last) if isinstance(last, int) and last > 0 else None
        self._feed: dict[str, np.ndarray] = {}

    @classmethod
    def open(cls, path: Path, *, threads: int) -> OnnxBackend:
        ort = _import_ort()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 4  # fatal only: its errors come back as the exception below
        try:
            # On a file it cannot load, InferenceSession print()s a banner ("EP Error ...
            # Falling back to ... and retrying") to stdout before it retries and raises: kept
            # off the console, so a bad file gets the one line below and nothing else.
            with contextlib.redirect_stdout(io.StringIO()):
                session = ort.InferenceSession(
                    str(path), sess_options=options, providers=["CPUExecutionProvider"]
                )
        except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            reason = f"{path}: cannot load ONNX model ({first_line(e, limit=300)})"
            if type(e).__name__ in _UNSUPPORTED:
                raise InputError(reason) from None
            raise BrokenModelError(reason) from None
        return cls(path, threads, session, f"onnxruntime {ort.__version__}")

    def run(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        if self._uint8_input:
            x = np.clip(x, 0, 255).astype(np.uint8)
        self._feed[self._input_name] = x
        try:
            out = self._session.run(self._output_names, self._feed)[0]
        except Exception as e:  # a graph that loads may still fail to run (shapes that clash)
            raise InputError(
                f"{self.path}: ONNX Runtime cannot run this model ({first_line(e, limit=300)})"
            ) from None
        finally:
            self._feed.clear()
        return probs_2d(out, x.shape[0], source=str(self.path))

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "module": self.version,
            "provider": "CPUExecutionProvider",
            "graph_optimization": "ORT_ENABLE_ALL",
        }
