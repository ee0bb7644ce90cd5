"""Helpers for the live-loop tests: a deterministic colour classifier, generated videos and image
folders, and fake live sources that die and come back.  No camera needed."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from _artifacts import contract, tflite

from edgecnn.runtime.contract import Contract
from edgecnn.runtime.live.sources import Source
from edgecnn.runtime.preprocess import to_input, to_pixels

LABELS = ("red", "green", "blue")
BGR = {"red": (0, 0, 255), "green": (0, 255, 0), "blue": (255, 0, 0)}


class ColourClassifier:
    """Stands in for `edgecnn.runtime.load(...)` (the live loop's `ClassifierLike`): the class is
    the dominant RGB channel of the (already preprocessed, RGB float) input, with softmax-like
    confidence."""

    backend = "fake"
    path = "colour-classifier"

    def __init__(self, size: int = 16) -> None:
        self.contract = Contract(labels=LABELS, height=size, width=size)
        self.labels = LABELS
        self.calls = 0

    def frame_pixels(self, image: np.ndarray) -> np.ndarray:
        return to_pixels(image, self.contract)

    def frame_input(self, pixels: np.ndarray) -> np.ndarray:
        return to_input(pixels, self.contract)[None]

    def probs(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        means = x.reshape(x.shape[0], -1, 3).mean(axis=1) / 255.0  # RGB order = LABELS order
        e = np.exp(8.0 * means)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def frame_probs(self, x: np.ndarray) -> np.ndarray:
        return self.probs(x)[0]


def solid(
    colour: str, size: tuple[int, int] = (64, 48), noise: int = 0, seed: int = 0
) -> np.ndarray:
    """A BGR frame of one colour (optionally with noise so JPEG-like codecs have texture)."""
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = BGR[colour]
    if noise:
        rng = np.random.default_rng(seed)
        img = np.clip(img.astype(np.int16) + rng.integers(-noise, noise + 1, img.shape), 0, 255)
        img = img.astype(np.uint8)
    return img


def write_video(path: Path, colours: list[str], *, size=(64, 48), fps: float = 25.0) -> Path:
    """An MJPG .avi (what opencv-python-headless writes and reads everywhere) of solid frames."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened(), f"cannot write {path}"
    for i, colour in enumerate(colours):
        writer.write(solid(colour, size, noise=10, seed=i))
    writer.release()
    return path


def write_folder(root: Path, colours: list[str], *, size=(40, 30)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, colour in enumerate(colours):
        cv2.imwrite(str(root / f"{i:03d}_{colour}.png"), solid(colour, size))
    return root


def count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


class SyntheticLive(Source):
    """A live source producing solid frames (colour chosen by `colour_at(i)`) at `fps`."""

    is_live = True

    def __init__(self, colour_at=lambda i: "red", *, fps: float = 100.0, size=(64, 48)) -> None:
        super().__init__()
        self.name = "synthetic"
        self.fps = fps
        self.size = size
        self.colour_at = colour_at
        self.produced = 0
        self.opens = 0
        self._next_t = 0.0

    def open(self) -> None:
        self.opens += 1
        self._next_t = time.monotonic()

    def read(self):
        self._next_t += 1.0 / self.fps
        delay = self._next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        frame = solid(self.colour_at(self.produced), self.size)
        self.produced += 1
        return frame, time.monotonic()


class SyntheticClip(SyntheticLive):
    """Like `SyntheticLive` but a file-like source: it ends (the run ends) after `length` frames
    or as soon as `finish()` is called."""

    is_live = False

    def __init__(self, *args, length: int = 10**9, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.length = length
        self.finished = threading.Event()

    def open(self) -> None:
        super().open()
        self.produced = 0  # a file reopened starts again from its first frame

    def finish(self) -> None:
        self.finished.set()

    def read(self):
        if self.finished.is_set() or self.produced >= self.length:
            return None
        return super().read()


class FlakySource(Source):
    """A live camera that dies twice.  Frames 0..good-1 are green 64x48; then a read returns None
    and the next `refuse` opens fail; frames good..2*good-1 are blue 96x72 (a new size after the
    reconnect); then a read raises, and red 80x60 frames follow.  Every frame carries its number
    in pixel (0, 0) so tests can prove that no placeholder was ever classified."""

    is_live = True
    PHASES = (("green", (64, 48)), ("blue", (96, 72)), ("red", (80, 60)))

    def __init__(self, *, good: int = 20, refuse: int = 2) -> None:
        super().__init__()
        self.name = "flaky camera"
        self.fps = 200.0
        self.good = good
        self.refuse = refuse
        self.opens = 0
        self.refused = 0
        self.served = 0
        self.broken = False
        self._failures = {good: "none", 2 * good: "raise"}

    def open(self) -> None:
        self.opens += 1
        if self.broken:
            if self.refused < self.refuse:
                self.refused += 1
                raise OSError("device busy")
            self.broken = False

    def read(self):
        time.sleep(1.0 / self.fps)
        if self.broken:
            raise RuntimeError("read on a closed camera")
        failure = self._failures.pop(self.served, None)
        if failure is not None:
            self.broken = True
            if failure == "raise":
                raise RuntimeError("camera unplugged")
            return None
        colour, size = self.PHASES[min(2, self.served // self.good)]
        frame = solid(colour, size)
        frame[0, 0] = (self.served % 256, self.served // 256, 7)
        self.served += 1
        return frame, time.monotonic()


def rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# --- a real model file: a tiny CNN whose weights make it a colour classifier -------------------


def build_colour_tflite(path: Path, *, size: int = 32) -> Path:
    """A real int8 .tflite (full integer, int8 io) written by the exporter's own code
    (`_artifacts.tflite`), whose fixed weights pick the dominant RGB channel.  Needs TensorFlow
    (test only)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    conv = keras.layers.Conv2D(3, 1, use_bias=False, name="mix")
    x = conv(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(3, activation="softmax", name="probs")
    outputs = dense(x)
    model = keras.Model(inputs, outputs)
    conv.set_weights([np.eye(3, dtype=np.float32).reshape(1, 1, 3, 3)])
    dense.set_weights([np.eye(3, dtype=np.float32) * 10.0, np.zeros(3, np.float32)])

    calib = np.random.default_rng(0).integers(0, 256, (20, size, size, 3)).astype(np.float32)
    c = contract(LABELS, size, arch="colour-fixture")
    path.write_bytes(tflite(model, c, "tflite-int8", calib=calib))
    return path
