"""`.tflite` files through LiteRT (ai_edge_litert), else tflite_runtime, else tensorflow.lite.

LiteRT is the maintained interpreter and works with numpy 2; tflite_runtime (the last build for
32-bit Raspberry Pi OS) crashes at Interpreter creation with numpy 2, so it is only tried with
numpy 1; TensorFlow is the last resort.  The interpreter defaults to one thread, so
`num_threads` is always passed.  Full-integer models take int8/uint8: inputs are quantised and
outputs dequantised with the tensor's own scale and zero point, so callers always see float32.
A file whose input is uint8 with scale 1 and zero point 0 takes 0..255 pixels as they are:
`run_pixels` feeds them without quantising.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from ..env import module_version
from ..errors import InputError, MissingDependencyError
from .base import Backend, nhwc_shape, probs_2d

# (module holding Interpreter, distribution name for its version)
_INTERPRETERS = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow.lite.python.interpreter", "tensorflow"),
)
_TFLITE_IDENTIFIER = b"TFL3"


def find_interpreter() -> tuple[Any, str]:
    """(Interpreter class, 'module version') of the first usable interpreter package."""
    for module_name, dist in _INTERPRETERS:
        top = module_name.split(".")[0]
        if importlib.util.find_spec(top) is None:
            continue
        if top == "tflite_runtime" and int(np.__version__.split(".")[0]) >= 2:
            continue  # tflite-runtime <= 2.14 is built against numpy 1 and crashes with numpy 2
        module = importlib.import_module(module_name)
        return module.Interpreter, f"{top} {module_version(top, dist)}"
    raise MissingDependencyError("ai-edge-litert (LiteRT)", "tflite", "running .tflite files")


@contextlib.contextmanager
def _drop_native_info_lines() -> Iterator[None]:
    """Hide the interpreter's C++ "INFO: Created TensorFlow Lite XNNPACK delegate" line.

    LiteRT writes it straight to file descriptor 2 on every Interpreter (no log-level switch
    reaches it), which breaks the CLI's one-line errors and clutters live output.  Everything
    else the native code writes meanwhile (warnings, errors) is passed on to stderr.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2 (embedded interpreters): nothing to filter
        yield
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                line
                for line in capture.read().decode("utf-8", "replace").splitlines(True)
                if not line.startswith("INFO: ")
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _Quant:
    """A tensor's affine quantisation: real = scale * (q - zero_point)."""

    def __init__(self, detail: dict[str, Any]) -> None:
        self.dtype = np.dtype(detail["dtype"])
        scale, zero_point = detail.get("quantization", (0.0, 0))
        self.scale = float(scale)
        self.zero_point = int(zero_point)
        self.active = self.dtype in (np.int8, np.uint8) and self.scale > 0
        if self.dtype not in (np.float32, np.int8, np.uint8):
            raise InputError(f"unsupported tensor type {self.dtype} (expected float32/int8/uint8)")
        if self.dtype != np.float32 and not self.active:
            raise InputError(f"{self.dtype} tensor without quantisation parameters")
        info = np.iinfo(self.dtype) if self.active else None
        self.lo, self.hi = (info.min, info.max) if info else (0, 0)
        self.cv_depth = cv2.CV_8S if self.dtype == np.int8 else cv2.CV_8U

    def describe(self) -> dict[str, Any]:
        if not self.active:
            return {"dtype": str(self.dtype)}
        return {"dtype": str(self.dtype), "scale": self.scale, "zero_point": self.zero_point}


class TFLiteBackend(Backend):
    name = "tflite"
    kinds = ("tflite",)
    packages = ("ai_edge_litert", "tflite_runtime", "tensorflow")
    extra = "tflite"

    def __init__(self, path: Path, threads: int, interpreter: Any, module: str) -> None:
        self.path = path
        self.threads = threads
        self.version = module
        self._it = interpreter
        inputs = interpreter.get_input_details()
        outputs = interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise InputError(
                f"{path}: expected 1 image input and 1 output, found {len(inputs)} and {len(outputs)}"
            )
        self._in, self._out = inputs[0], outputs[0]
        signature = self._in.get("shape_signature", self._in["shape"])
        self.input_shape = nhwc_shape(list(signature), source=str(path))
        if any(d is None for d in self.input_shape[:2]):
            raise InputError(f"{path}: input height/width are not fixed ({list(signature)})")
        self._dynamic_batch = int(signature[0]) == -1
        try:
            self._qin = _Quant(self._in)
            self._qout = _Quant(self._out)
        except InputError as e:
            raise InputError(f"{path}: {e}") from None
        q, qo = self._qin, self._qout
        if qo.active:  # float32 value of every int8/uint8 output code, indexed by its byte
            codes = np.arange(256, dtype=np.uint8).view(qo.dtype).astype(np.float32)
            self._dequantise = (codes - qo.zero_point) * qo.scale
        self._raw = q.active and q.dtype == np.uint8 and q.scale == 1.0 and q.zero_point == 0
        out_shape = list(self._out["shape"])
        self.num_classes = int(out_shape[-1]) if out_shape and out_shape[-1] > 0 else None
        self._batch = 0
        self._ensure_batch(int(self._in["shape"][0]) or 1)

    @classmethod
    def open(cls, path: Path, *, threads: int) -> TFLiteBackend:
        with path.open("rb") as f:
            head = f.read(8)
        if head[4:8] != _TFLITE_IDENTIFIER:
            raise InputError(
                f"{path}: not a TFLite flatbuffer (corrupt, truncated or another format)"
            )
        interpreter_cls, module = find_interpreter()
        try:
            with _drop_native_info_lines():
                it = interpreter_cls(model_path=str(path), num_threads=threads)
                it.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(f"{path}: cannot load TFLite model ({reason})") from None
        return cls(path, threads, it, module)

    def _ensure_batch(self, n: int) -> None:
        """Resize the interpreter for batches of n and preallocate the quantisation buffers."""
        if n == self._batch:
            return
        h, w, _ = self.input_shape
        if int(self._in["shape"][0]) != n:
            self._it.resize_tensor_input(self._in["index"], [n, h, w, 3], strict=False)
            self._it.allocate_tensors()
            self._in = self._it.get_input_details()[0]
            self._out = self._it.get_output_details()[0]
        self._batch = n
        self._in_index, self._out_index = self._in["index"], self._out["index"]
        if self._qin.active:
            self._qbuf = np.empty((n, h, w, 3), dtype=self._qin.dtype)
            self._qflat = self._qbuf.reshape(n * h, w * 3)  # 2-d view: what cv2 arithmetic takes

    def _quantise(self, x: np.ndarray) -> np.ndarray:
        """q = saturate(round(x / scale + zero_point)) into the preallocated int8/uint8 buffer:
        one OpenCV pass (rounding and saturation included) instead of four numpy passes."""
        q = self._qin
        flat = np.ascontiguousarray(x, dtype=np.float32).reshape(self._qflat.shape)
        cv2.addWeighted(
            flat, 1.0 / q.scale, flat, 0.0, float(q.zero_point), dst=self._qflat, dtype=q.cv_depth
        )
        return self._qbuf

    @property
    def takes_raw_pixels(self) -> bool:
        return self._raw

    def run(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        return self._run(x, self._float_feed)

    def run_pixels(self, pixels: NDArray[np.uint8]) -> NDArray[np.float32]:
        if not self._raw:
            return super().run_pixels(pixels)
        if pixels.dtype != np.uint8:
            raise TypeError(f"run_pixels takes uint8 pixels, got {pixels.dtype}")
        return self._run(pixels, np.ascontiguousarray)

    def run_frame(self, x: np.ndarray) -> NDArray[np.float32]:
        """One frame with as little Python as possible around the invoke: the live loop's
        inference thread does nothing else, so every microsecond here is a frame-rate cost."""
        if self._batch != 1 or x.shape[0] != 1:
            return super().run_frame(x)
        raw = x.dtype == np.uint8
        if raw and not self._raw:
            return super().run_frame(x)  # the base class refuses it with the usual message
        it = self._it
        it.set_tensor(self._in_index, np.ascontiguousarray(x) if raw else self._float_feed(x))
        it.invoke()
        return self._float_output(it.get_tensor(self._out_index)[0])

    def _float_feed(self, x: np.ndarray) -> np.ndarray:
        """float32 model input as the input tensor takes it: quantised, or as it is."""
        return self._quantise(x) if self._qin.active else np.ascontiguousarray(x, np.float32)

    def _run(self, x: np.ndarray, feed: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        n = x.shape[0]
        if self._dynamic_batch or n == self._batch:
            return probs_2d(self._invoke(x, feed), n, source=str(self.path))
        # a file fixed to batch 1: one image at a time
        rows = [
            probs_2d(self._invoke(x[i : i + 1], feed), 1, source=str(self.path)) for i in range(n)
        ]
        return np.concatenate(rows, axis=0)

    def _invoke(self, x: np.ndarray, feed: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        self._ensure_batch(x.shape[0])  # before `feed`, which may quantise into its buffers
        self._it.set_tensor(self._in_index, feed(x))
        self._it.invoke()
        return self._float_output(self._it.get_tensor(self._out_index))

    def _float_output(self, out: np.ndarray) -> np.ndarray:
        """The output tensor (get_tensor's copy) as float32: an int8/uint8 one dequantised by
        one table lookup, the same float32s as (q - zero_point) * scale."""
        if self._qout.active:
            return self._dequantise[out.view(np.uint8)]
        return out.astype(np.float32, copy=False)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "module": self.version,
            # LiteRT/TFLite apply the XNNPACK CPU delegate by default to float and int8 graphs
            "delegate": "XNNPACK (default CPU delegate)",
            "input": self._qin.describe(),
            "output": self._qout.describe(),
        }
