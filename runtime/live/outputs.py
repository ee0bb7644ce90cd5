"""Where results go: `--show` (a window), `--record FILE` (annotated video), `--jsonl FILE|-`, and a
short console line when nothing else is asked for.  Each output gets every result with its
annotated frame (drawn once per frame, only when some output needs it) and is closed at the end;
files are written under a temporary name and renamed when complete, so an interrupted run never
leaves a half-written file under the name the user asked for."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from ..errors import InputError
from ..files import final_path, is_special
from .loop import Result

QUIT_KEYS = (ord("q"), ord("Q"), 27)  # q or Esc
RECORD_CODECS = {".avi": "MJPG", ".mkv": "MJPG", ".mp4": "mp4v", ".mov": "mp4v"}
RATE_WARMUP_FRAMES = 30
RATE_WARMUP_S = 1.5


class Output:
    """Receives every result; `needs_frame` says whether it wants the annotated image."""

    needs_frame = False
    quit_requested = False

    def write(self, result: Result, annotated: np.ndarray | None) -> None:
        raise NotImplementedError

    def idle(self) -> None:
        """Called about ten times a second while no frame arrives (e.g. camera reconnecting)."""

    def close(self) -> None:
        pass


# --- --show ----------------------------------------------------------------------------------


def check_gui() -> None:
    """InputError unless OpenCV can open a window here (a GUI build, and a display on Linux)."""
    hint = "use --serve 127.0.0.1:8080 and open it in a browser instead"
    if not has_gui_build():
        raise InputError(
            "--show needs an OpenCV build with GUI support, but this one has none "
            "(opencv-python-headless): pip uninstall opencv-python-headless && "
            f"pip install opencv-python; or {hint}"
        )
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        raise InputError(f"--show needs a display but DISPLAY is not set (over SSH?); {hint}")


def has_gui_build() -> bool:
    """Whether this OpenCV was built with a window toolkit ("GUI: NONE" in headless wheels)."""
    lines = cv2.getBuildInformation().splitlines()
    for i, line in enumerate(lines):
        name, _, value = line.strip().partition(":")
        if name != "GUI":
            continue
        value = value.strip().upper()
        if value:
            return value not in ("NONE", "NO")
        for sub in lines[i + 1 :]:  # OpenCV 4.x: "GUI:" then "  GTK+: YES (...)" lines
            if not sub.startswith("    ") or not sub.strip():
                break
            if sub.partition(":")[2].strip().upper().startswith("YES") and "VTK" not in sub:
                return True
        return False
    return False


class Window(Output):
    """An OpenCV window; q or Esc asks the loop to stop."""

    needs_frame = True

    def __init__(self, title: str = "edgecnn") -> None:
        check_gui()
        self.title = title
        self._seen_visible = False
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as e:
            raise InputError(f"--show: OpenCV cannot open a window ({e.msg.strip()})") from None

    def write(self, result: Result, annotated: np.ndarray | None) -> None:
        cv2.imshow(self.title, annotated if annotated is not None else result.frame)
        self._poll_keys()

    def idle(self) -> None:
        self._poll_keys()

    def _poll_keys(self) -> None:
        key = cv2.waitKey(1)
        if key >= 0 and (key & 0xFF) in QUIT_KEYS:
            self.quit_requested = True
        try:
            visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE)
        except cv2.error:
            visible = -1.0
        if visible >= 1:
            self._seen_visible = True
        elif self._seen_visible:  # closed with the window's close button
            self.quit_requested = True  # (never trust a backend that reports -1 from the start)

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass


# --- --record ----------------------------------------------------------------------------------


def check_record_path(path: str | os.PathLike) -> Path:
    """InputError for an extension we cannot write or a folder that does not exist."""
    path = Path(path)
    if path.suffix.lower() not in RECORD_CODECS:
        raise InputError(
            f"--record {path}: unsupported extension {path.suffix or '(none)'!r}; "
            f"use one of {', '.join(RECORD_CODECS)}"
        )
    _check_folder(path, "--record")
    return path


def check_jsonl_target(target: str | os.PathLike) -> None:
    """InputError when a --jsonl file cannot be created ('-' is stdout)."""
    if os.fspath(target) != "-":
        _check_folder(Path(target), "--jsonl")


def _check_folder(path: Path, option: str) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"{option} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(f"{option} {path}: folder {folder} is not writable")


def _partial(path: Path) -> Path:
    """A temporary name in the same folder with the same extension (FFmpeg picks the container
    from it)."""
    return path.with_name(f".{path.stem}.partial{os.getpid()}{path.suffix}")


class Recorder(Output):
    """The annotated video.  Frame rate: `fps` when given (a file played frame by frame keeps its
    own rate), otherwise measured over the first frames (live camera: the rate we keep up with).
    Frames of another size (camera reconnected at a new resolution) are resized to the first."""

    needs_frame = True

    def __init__(self, path: str | os.PathLike, *, fps: float | None = None) -> None:
        self.path = check_record_path(path)
        self.fps = fps
        self.frames = 0
        self._final = final_path(self.path)  # through a symlink: the file it names
        self._tmp = _partial(self._final)
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._pending: list[tuple[float, np.ndarray]] = []

    def write(self, result: Result, annotated: np.ndarray | None) -> None:
        image = annotated if annotated is not None else result.frame
        if self._writer is None and self.fps is None:
            self._pending.append((time.monotonic(), image))
            first = self._pending[0][0]
            if (
                len(self._pending) < RATE_WARMUP_FRAMES
                and self._pending[-1][0] - first < RATE_WARMUP_S
            ):
                return
            self.fps = _measured_rate([t for t, _ in self._pending])
            pending, self._pending = self._pending, []
            for _, img in pending:
                self._write(img)
            return
        self._write(image)

    def _write(self, image: np.ndarray) -> None:
        if self._writer is None:
            self._open(image.shape[1], image.shape[0])
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames += 1

    def _open(self, width: int, height: int) -> None:
        fourcc = cv2.VideoWriter_fourcc(*RECORD_CODECS[self.path.suffix.lower()])
        fps = round(float(self.fps or 25.0), 2)
        writer = cv2.VideoWriter(str(self._tmp), fourcc, fps, (width, height))
        if not writer.isOpened():
            raise InputError(f"--record {self.path}: OpenCV cannot write this video format here")
        self._writer, self._size = writer, (width, height)

    def close(self) -> None:
        if self._pending:  # fewer frames than the warm-up: rate from what we have
            self.fps = _measured_rate([t for t, _ in self._pending])
            pending, self._pending = self._pending, []
            for _, img in pending:
                self._write(img)
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if not _whole_video(self._tmp, self.frames):  # OpenCV's writer never says it failed
            self._tmp.unlink(missing_ok=True)
            raise InputError(
                f"--record {self.path}: the video could not be written whole (is the disk "
                "full?); nothing was kept"
            )
        os.replace(self._tmp, self._final)


def _whole_video(path: Path, frames: int) -> bool:
    """Whether the video file at `path` opens, counts about `frames` frames and has the data of
    the last of them (a file cut short by a full disk lacks its index or its last frames)."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened() or cap.get(cv2.CAP_PROP_FRAME_COUNT) < 0.9 * frames:
            return False
        cap.set(cv2.CAP_PROP_POS_FRAMES, max(0, frames - 1))
        return bool(cap.grab())
    finally:
        cap.release()


def _measured_rate(times: list[float]) -> float:
    """Frames per second over `times`, rounded to 0.01: the MPEG-4 writer refuses a time base
    whose denominator exceeds 65535, which an unrounded rate like 153.2338 produces."""
    if len(times) < 2 or times[-1] <= times[0]:
        return 25.0
    return round(max(1.0, min(240.0, (len(times) - 1) / (times[-1] - times[0]))), 2)


# --- --jsonl ---------------------------------------------------------------------------------


class JsonlWriter(Output):
    """One JSON object per frame, to a file (renamed into place at the end), or flushed per
    line so it can be piped: to '-' (stdout), or in place to a FIFO or device (`is_special`)."""

    def __init__(self, target: str | os.PathLike) -> None:
        self.target = os.fspath(target)
        self._tmp: Path | None = None
        self._failed = False
        self._owned = self.target != "-"
        if self.target == "-":
            self._fh: IO[str] = sys.stdout
        elif is_special(self.target):
            self._fh = open(self.target, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        else:
            _check_folder(Path(self.target), "--jsonl")
            self._final = final_path(self.target)
            self._tmp = self._final.with_name(f".{self._final.name}.partial{os.getpid()}")
            self._fh = open(self._tmp, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, result: Result, annotated: np.ndarray | None) -> None:
        try:
            self._fh.write(result.to_json() + "\n")
            if self._tmp is None:
                self._fh.flush()
        except OSError:
            self._failed = True
            raise

    def close(self) -> None:
        """Flush, and rename the file into place; a file whose writing failed is removed."""
        if not self._owned:
            self._fh.flush()
            return
        if self._fh.closed:
            return
        try:
            self._fh.close()
            if self._tmp is not None and not self._failed:
                os.replace(self._tmp, self._final)
        finally:
            if self._tmp is not None:
                self._tmp.unlink(missing_ok=True)


# --- console ---------------------------------------------------------------------------------


class ConsoleLine(Output):
    """With no other output: one line when the label changes, and at most once a second."""

    def __init__(self, stream: IO[str] | None = None, *, every_s: float = 1.0) -> None:
        self.stream = stream or sys.stdout
        self.every_s = every_s
        self._last_label: str | None = None
        self._last_t = 0.0

    def write(self, result: Result, annotated: np.ndarray | None) -> None:
        now = time.monotonic()
        if result.label == self._last_label and now - self._last_t < self.every_s:
            return
        self._last_label, self._last_t = result.label, now
        print(
            f"[{result.index:>6}] {result.label} {result.score:.2f}   {result.fps:5.1f} FPS   "
            f"latency {result.timings['total']:.1f} ms",
            file=self.stream,
            flush=True,
        )
