"""`.onnx` files through OpenCV's DNN module: no package beyond OpenCV itself.

Useful where neither LiteRT nor ONNX Runtime has a wheel.  `cv2.setNumThreads` is process-wide,
so the last OpenCV classifier opened sets the thread count for all of them.  OpenCV does not
report the network's input shape, so it is read from the ONNX protobuf; and since OpenCV may
only discover an unsupported layer when it first runs, `open` does one forward pass on zeros.

OpenCV 5.1 cannot load a QDQ int8 file in which a Gemm's dequantized weights feed that Gemm
alone ("bufidx >= 0 in function 'argTensor'"): the `seed` net's model_int8.onnx, whose dense
layers are such Gemms, is refused in one line.  The `edge` net's file loads: both its test-time
views read the classifier's weights.  OpenCV 5.0 also has a classic engine, and a file its
default engine refuses is retried there (`ENGINE_CLASSIC`); `describe()` says which ran.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from ._onnxproto import check_nodes, graph_io
from .base import Backend, nhwc_shape, probs_2d


class OpenCVBackend(Backend):
    name = "opencv"
    kinds = ("onnx",)
    packages = ("cv2",)
    extra = "all"  # OpenCV is a core dependency: never missing where edgecnn imports

    def __init__(
        self,
        path: Path,
        threads: int,
        net: Any,
        engine: str,
        input_shape: tuple[int | None, int | None, int | None],
        num_classes: int | None,
    ) -> None:
        self.path = path
        self.threads = threads
        self.version = f"opencv {cv2.__version__}"
        self.engine = engine
        self._net = net
        self.input_shape = input_shape
        self.num_classes = num_classes

    @classmethod
    def open(cls, path: Path, *, threads: int) -> OpenCVBackend:
        inputs, outputs = graph_io(path)
        check_nodes(path)
        if len(inputs) != 1:
            raise InputError(f"{path}: expected 1 image input, found {len(inputs)}")
        if inputs[0].dtype != "float32":
            raise InputError(
                f"{path}: OpenCV DNN backend needs a float32 input, found {inputs[0].dtype}"
            )
        shape = nhwc_shape(list(inputs[0].shape), source=str(path))
        last = outputs[0].shape[-1] if outputs and outputs[0].shape else None
        num_classes = last if isinstance(last, int) and last > 0 else None
        cv2.setNumThreads(threads)
        failures = []
        for engine in _engines():
            try:
                with _own_log_silenced():
                    backend = cls._try_engine(path, threads, engine, shape, num_classes)
            except cv2.error as e:
                failures.append(f"{engine}: {_reason(e)}")
                continue
            return backend
        # op types are plain text in the file: a quantized one has a float sibling to offer
        instead = "the float model.onnx, or " if b"QuantizeLinear" in path.read_bytes() else ""
        raise InputError(
            f"{path}: OpenCV DNN cannot run this ONNX file ({'; '.join(failures)}); "
            f"try {instead}ONNX Runtime: pip install 'edgecnn[onnx]'"
        )

    @classmethod
    def _try_engine(
        cls,
        path: Path,
        threads: int,
        engine: str,
        shape: tuple[int | None, int | None, int | None],
        num_classes: int | None,
    ) -> OpenCVBackend:
        if engine == "default":
            net = cv2.dnn.readNetFromONNX(str(path))
        else:
            net = cv2.dnn.readNetFromONNX(str(path), getattr(cv2.dnn, f"ENGINE_{engine.upper()}"))
        backend = cls(path, threads, net, engine, shape, num_classes)
        if shape[0] and shape[1]:  # unsupported layers may only show up when run
            backend.run(np.zeros((1, shape[0], shape[1], 3), dtype=np.float32))
        return backend

    def run(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        self._net.setInput(np.ascontiguousarray(x, dtype=np.float32))
        out = self._net.forward()
        return probs_2d(out, x.shape[0], source=str(self.path))

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "module": self.version,
            "engine": self.engine,
            "target": "CPU (OpenCV kernels)",
        }


@contextlib.contextmanager
def _own_log_silenced() -> Iterator[None]:
    """OpenCV's own log off while it imports a file: on a bad one its importer writes lines of
    its own to stderr (`[ERROR:0@0.2] global onnx_importer2.cpp:... unknown input '...'`), node
    names from the file included, byte for byte, beside the one line the error gets."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        yield
        return
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(level)


def _engines() -> tuple[str, ...]:
    """OpenCV's default engine, then (OpenCV >= 5) the classic one as a fallback."""
    return ("default", "classic") if hasattr(cv2.dnn, "ENGINE_CLASSIC") else ("default",)


def _reason(e: cv2.error) -> str:
    """The useful part of an OpenCV error: the text after the last ') ' of the location."""
    text = " ".join(str(e).split())
    if "error: (" in text:
        text = text.split("error: (", 1)[1]
        text = text.split(") ", 1)[-1]
    return text[:300]
