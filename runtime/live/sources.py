"""Where frames come from: one small `Source` interface, one class per kind of source.

A source only knows how to open itself, hand out the next frame and close.  Threads, pacing,
frame dropping and reconnecting live in `capture.py`, so a new kind of camera is one small class.

    src = open_source("0")            # webcam 0      (live)
    src = open_source("clip.mp4")     # video file    (not live: every frame, end ends the run)
    src = open_source("rtsp://cam/1") # network stream (live)
    src = open_source("photos/")      # slideshow of a folder or a glob of images
    src = open_source("picamera")     # Raspberry Pi camera through picamera2 (live)
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import cv2
import numpy as np

from ..errors import ImageError, InputError
from ..preprocess import is_image_file, read_image

FrameAndTime = tuple[np.ndarray, float]
URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
PICAMERA_SPECS = ("pi", "picam", "picamera", "picamera2")
STREAM_OPEN_TIMEOUT_MS = 10_000
STREAM_READ_TIMEOUT_MS = 5_000
# FFmpeg decodes files and streams with one thread.  The capture thread already runs beside
# inference; a frame-threaded decoder competes with inference for the same cores, costs ~45%
# more CPU per frame (640x480 MPEG-4 on an EPYC: 0.44 vs 0.30 ms, same wall-clock rate) and
# holds frames back (one frame of latency per extra thread), which a live stream must not.
DECODE_THREADS = 1
MAX_CAMERA_INDEX = 2**31 - 1  # OpenCV takes a C int


class Source:
    """A stream of BGR frames.

    `read()` blocks until the next frame and returns `(frame, timestamp)` with the
    `time.monotonic()` at which the frame became available, or None when the source has nothing
    more (end of a file, or a live source that stopped delivering).  A live source may raise
    or return None at any time; the capture thread then reopens it.
    """

    name: str = "source"
    is_live: bool = False
    fps: float | None = None

    def __init__(self) -> None:
        self.notify: Callable[[str], None] = lambda message: None

    def open(self) -> None:
        """Open (or reopen) the device or file; raise InputError naming it if impossible."""

    def read(self) -> FrameAndTime | None:
        raise NotImplementedError

    def skip(self) -> bool:
        """Advance one frame without decoding it, where the source can; False at the end."""
        return self.read() is not None

    def close(self) -> None:
        """Release the device or file; safe to call twice."""

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class _CvSource(Source):
    """Shared by every source that OpenCV's VideoCapture reads."""

    def __init__(self, target: int | str, name: str) -> None:
        super().__init__()
        self._target = target
        self.name = name
        self._cap: cv2.VideoCapture | None = None

    def _capture(self) -> cv2.VideoCapture:
        return cv2.VideoCapture(self._target)

    def open(self) -> None:
        self.close()
        cap = self._capture()
        if not cap.isOpened():
            cap.release()
            raise InputError(f"{self.name}: cannot open {self._what()}")
        self._cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        if fps and 0 < fps < 1000:
            self.fps = float(fps)

    def _what(self) -> str:
        return "video source"

    def read(self) -> FrameAndTime | None:
        if self._cap is None:
            return None
        ok, frame = self._cap.read()
        if not ok or frame is None or frame.size == 0:
            return None
        return frame, time.monotonic()

    def skip(self) -> bool:
        return self._cap is not None and bool(self._cap.grab())

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class CameraSource(_CvSource):
    """A local camera by index (`0`) or device path (`/dev/video0`), read through OpenCV."""

    is_live = True

    def __init__(self, device: int | str, *, width: int | None = None, height: int | None = None):
        super().__init__(device, f"camera {device}")
        self._size = (width, height)

    def _capture(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self._target)
        width, height = self._size
        if width and height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        # Ask the driver for the smallest queue it allows: we want the present, not the past.
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    def _what(self) -> str:
        return "the camera (is it connected, and not in use by another program?)"


class VideoFileSource(_CvSource):
    """A video file: every frame in order; the end of the file ends the run.

    `decode_threads` is FFmpeg's decoder thread count (see `DECODE_THREADS`; 0 = FFmpeg's own
    choice, one per core).
    """

    is_live = False

    def __init__(self, path: str | os.PathLike, *, decode_threads: int = DECODE_THREADS) -> None:
        super().__init__(os.fspath(path), os.fspath(path))
        self.decode_threads = decode_threads

    def _capture(self) -> cv2.VideoCapture:
        params = [cv2.CAP_PROP_N_THREADS, self.decode_threads]
        return cv2.VideoCapture(self._target, cv2.CAP_FFMPEG, params)

    def _what(self) -> str:
        return "video file (unsupported container/codec or corrupt)"

    def open(self) -> None:
        super().open()
        if self.fps is None:
            self.fps = 25.0
        frames = self._cap.get(cv2.CAP_PROP_FRAME_COUNT) if self._cap is not None else 0
        self.frame_count = int(frames) if frames and frames > 0 else None


class StreamSource(_CvSource):
    """A network stream (rtsp://, http://, ...), read through FFmpeg with open/read time-outs so
    a dead camera is noticed and reconnected instead of hanging the capture thread forever."""

    is_live = True

    def __init__(self, url: str) -> None:
        super().__init__(url, _redact(url))
        self._held: FrameAndTime | None = None

    def hold_first_frame(self) -> None:
        """Read the first frame now, and keep it for `read`: a URL that opens but gives no
        frame (a web page, a text file) is bad input when the run starts, not a camera to
        reconnect to forever."""
        self._held = super().read()
        if self._held is None:
            self.close()
            raise InputError(f"{self.name}: opened, but no video frame came from it")

    def read(self) -> FrameAndTime | None:
        if self._held is None:  # every frame after the first: nothing extra on this path
            return super().read()
        held, self._held = self._held, None
        return held

    def close(self) -> None:
        self._held = None
        super().close()

    def _capture(self) -> cv2.VideoCapture:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_OPEN_TIMEOUT_MS,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_READ_TIMEOUT_MS,
            cv2.CAP_PROP_N_THREADS, DECODE_THREADS,
        ]  # fmt: skip
        return cv2.VideoCapture(self._target, cv2.CAP_FFMPEG, params)

    def _what(self) -> str:
        return "stream (wrong URL, camera offline, or a codec FFmpeg lacks)"


class ImageFolderSource(Source):
    """A folder or glob of images played as a slideshow, in name order.

    Not live: each image is one frame and the last one ends the run.  `fps` is the slideshow rate
    used with `--realtime`.  Unreadable files are skipped with a message, never classified.
    """

    is_live = False

    def __init__(self, spec: str | os.PathLike, *, fps: float = 1.0) -> None:
        super().__init__()
        self.name = os.fspath(spec)
        self.fps = fps
        self.paths = _list_images(self.name)
        self._next = 0
        self.skipped: list[tuple[str, str]] = []

    def open(self) -> None:
        self._next = 0

    def read(self) -> FrameAndTime | None:
        while self._next < len(self.paths):
            path = self.paths[self._next]
            self._next += 1
            try:
                return read_image(path), time.monotonic()
            except ImageError as e:
                self.skipped.append((path, str(e)))
                self.notify(f"skipping {e}")
        return None

    def skip(self) -> bool:
        self._next += 1
        return self._next <= len(self.paths)


class PiCameraSource(Source):
    """The Raspberry Pi camera through `picamera2` (libcamera), when that package is importable.

    "RGB888" in libcamera's naming is B,G,R byte order in memory: exactly OpenCV's BGR.
    """

    is_live = True
    fps = 30.0

    def __init__(self, *, width: int = 640, height: int = 480) -> None:
        super().__init__()
        self.name = "picamera2"
        self._size = (width, height)
        self._cam = None

    def open(self) -> None:
        self.close()
        try:
            from picamera2 import Picamera2  # optional, only on a Raspberry Pi
        except ImportError:
            raise InputError(
                "picamera2 is not importable: on Raspberry Pi OS run "
                "'sudo apt install python3-picamera2' and create the venv with "
                "--system-site-packages, or use --source 0 for a USB camera"
            ) from None
        try:
            cam = Picamera2()
            config = cam.create_video_configuration(main={"format": "RGB888", "size": self._size})
            cam.configure(config)
            cam.start()
        except (RuntimeError, IndexError, OSError) as e:
            raise InputError(f"picamera2: cannot open the Pi camera ({e})") from None
        self._cam = cam

    def read(self) -> FrameAndTime | None:
        if self._cam is None:
            return None
        frame = self._cam.capture_array("main")
        if frame is None or frame.size == 0:
            return None
        if frame.ndim == 3 and frame.shape[2] == 4:
            frame = frame[:, :, :3]
        return np.ascontiguousarray(frame), time.monotonic()

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
                self._cam.close()
            except RuntimeError:
                pass
            self._cam = None


def open_source(spec: int | str | os.PathLike | Source, *, slideshow_fps: float = 1.0) -> Source:
    """Pick and open the right `Source` for a `--source` value.

    An integer (or a string of digits) is a camera index; `pi`/`picamera` the Pi camera;
    `scheme://...` a stream; an existing folder or a glob pattern a slideshow; an image file a
    one-image slideshow; a character device a camera; any other existing file a video.
    Raises InputError with one line when nothing matches or the source cannot be opened.
    """
    source = spec if isinstance(spec, Source) else make_source(spec, slideshow_fps=slideshow_fps)
    with _native_stderr_captured() as noise:
        try:
            source.open()
            if not source.is_live:
                _check_first_frame(source)
            elif isinstance(source, StreamSource):
                source.hold_first_frame()
        except InputError as e:
            reason = _last_reason(noise())
            raise InputError(f"{e} [{reason}]" if reason else str(e)) from None
    return source


@contextlib.contextmanager
def _native_stderr_captured() -> Iterator[Callable[[], str]]:
    """Keep OpenCV's and FFmpeg's own stderr lines ("[ WARN:0@0.7] global cap_v4l.cpp ...",
    "[tcp @ 0x...] Connection refused") out of the terminal while a source is opened, so a
    failure is one line; the yielded function returns what they wrote."""
    captured = ""
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2
        yield lambda: captured
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lambda: _read_back(tmp)
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _read_back(tmp) -> str:
    tmp.flush()
    tmp.seek(0)
    return tmp.read().decode("utf-8", "replace")


def _last_reason(text: str) -> str:
    """The last FFmpeg error line, without its '[tcp @ 0x...]' prefix (e.g. 'Connection to
    tcp://cam:554 failed: Connection refused'); OpenCV's own WARN lines say nothing useful."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "WARN" not in ln]
    if not lines:
        return ""
    return re.sub(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*", "", lines[-1])[:160]


def make_source(spec: int | str | os.PathLike, *, slideshow_fps: float = 1.0) -> Source:
    """The unopened `Source` for a `--source` value (see `open_source`)."""
    if isinstance(spec, int):
        return CameraSource(spec)
    text = os.fspath(spec).strip()
    if not text:
        raise InputError("--source is empty; give a camera index, a file, a URL or a folder")
    if text.isascii() and text.isdigit():
        if int(text) > MAX_CAMERA_INDEX:
            raise InputError(
                f"--source {text}: no camera has that index (cameras are numbered 0, 1, ...)"
            )
        return CameraSource(int(text))
    if text.lower() in PICAMERA_SPECS:
        return PiCameraSource()
    if text.lower().startswith("file://"):  # a local file, which ends, not a stream to reopen
        text = url2pathname(urlparse(text).path)
    if URL_RE.match(text):
        return StreamSource(text)
    path = Path(text).expanduser()
    if path.is_dir() or (glob.has_magic(text) and not path.exists()):
        return ImageFolderSource(str(path) if path.is_dir() else text, fps=slideshow_fps)
    if path.exists():
        if stat.S_ISCHR(path.stat().st_mode):
            return CameraSource(str(path))
        if is_image_file(path):
            return ImageFolderSource(str(path), fps=slideshow_fps)
        return VideoFileSource(path)
    raise InputError(
        f"--source {text}: no such file or folder (expected a camera index like 0, a video "
        "file, an rtsp:// or http:// URL, a folder or glob of images, or 'picamera')"
    )


def _check_first_frame(source: Source) -> None:
    """A file that opens but yields no frame is bad input, not an empty run; rewind after."""
    first = source.read()
    if first is None:
        source.close()
        raise InputError(f"{source.name}: no frame could be decoded")
    source.open()


def _list_images(spec: str) -> list[str]:
    path = Path(spec).expanduser()
    if path.is_dir():
        paths = [str(p) for p in sorted(path.iterdir()) if p.is_file() and is_image_file(p)]
        where = f"folder {spec}"
    elif glob.has_magic(spec):
        paths = sorted(p for p in glob.glob(os.path.expanduser(spec)) if is_image_file(p))
        where = f"glob {spec}"
    else:
        paths = [str(path)]
        where = spec
    if not paths:
        raise InputError(f"--source {where}: no images found (expected .jpg, .png, ... files)")
    return paths


def _redact(url: str) -> str:
    """The URL without a password, fit for logs and error messages."""
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)
