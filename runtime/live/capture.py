"""The capture thread: decoding overlaps inference, and a live camera is never read late.

Two hand-offs between the capture thread and the loop:

- **latest** (live sources, and files with `--realtime`): a one-frame slot.  A new frame replaces
  an unconsumed one (counted as dropped), so the classifier always sees the present.  A live
  source that stops delivering is closed and reopened with capped exponential backoff while the
  loop keeps waiting; nothing is handed over in between, so no placeholder is ever classified.
- **queue** (files, default): a short bounded queue.  Every frame is processed, in order, as fast
  as the slower of decoding and inference allows; the end of the file ends the run.  When two
  frames or more are waiting in the queue (the model is the bottleneck), the capture thread also
  resizes the next frame to the model's input (`prepare`), so that work moves to the idle core;
  once it keeps finding the queue full it runs a little nicer than the rest (Linux), so that
  the model's thread gets the CPU first when the threads want more than there is.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .sources import Source

# How far a file's capture thread may read ahead of the model: enough frames to ride out a
# stall of either thread (a busy host), but at most QUEUE_BYTES of decoded frames and never
# fewer than two.  Measured in docs/speed.md.
QUEUE_DEPTH = 8
QUEUE_BYTES = 48 * 2**20
# Added to the capture thread's nice value once it has found the queue full FULL_TO_YIELD times
# while reading a file as fast as possible, i.e. once the model is shown to be the limit: when
# the threads then want more CPU than there is, the model's thread runs first and the capture
# thread, which has slack, waits.  While decoding is the limit it keeps its priority (the change
# is one-way).  Measured in docs/speed.md.
FILE_CAPTURE_NICENESS = 5
FULL_TO_YIELD = 8
# glibc's malloc serves blocks above its mmap threshold (128 KiB at first, raised only as far as
# the biggest block freed so far) with fresh pages from the kernel and returns freed memory
# above 2x that at the top of a heap.  A 640x480 frame is 900 KiB, so every decoded frame
# faulted its pages in anew (~50 page faults a frame), in the capture thread, which is the limit
# when decoding is.  Blocks up to FRAME_MMAP_MAX come from the heap and freed memory up to
# FREED_KEPT_MAX is kept for the next frames: +11% FPS where decoding is the limit, measured in
# docs/speed.md.  What is kept is bounded by the peak the process reached (the read-ahead queue
# is capped at QUEUE_BYTES).
FRAME_MMAP_MAX = 16 * 2**20  # a 1080p BGR frame is 6 MiB
FREED_KEPT_MAX = 256 * 2**20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_malloc_tuned: bool | None = None


def block_interrupts() -> None:
    """Keep Ctrl-C (SIGINT) and SIGTERM away from the calling helper thread, so the kernel
    delivers them to the main thread: a camera or FFmpeg read in a helper thread is never cut
    short by them (EINTR), and the main thread's handler always sees them.  No-op on Windows."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def lower_thread_priority(niceness: int) -> bool:
    """Raise the calling thread's nice value by `niceness` (at most to 19).  Linux only: a
    thread has its own nice value there, while elsewhere it would slow the whole process.  An
    unprivileged thread cannot undo it, so call it only in a thread that ends with its work.
    True when it was applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(
            os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + niceness)
        )
    except OSError:  # a sandbox that forbids it: run at the same priority
        return False
    return True


def keep_frame_memory() -> bool:
    """Once per process, ask glibc's malloc to serve frame-sized blocks from its heap and keep
    freed memory for reuse (`FRAME_MMAP_MAX`, `FREED_KEPT_MAX`) instead of mapping fresh pages
    for every frame.  Nothing happens on other C libraries or operating systems, or when the
    user set glibc's own MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ (their choice wins).
    True when the settings are in effect."""
    global _malloc_tuned
    if _malloc_tuned is None:
        _malloc_tuned = _tune_malloc()
    return _malloc_tuned


def _tune_malloc() -> bool:
    if not sys.platform.startswith("linux") or any(
        name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    ):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, ValueError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, FRAME_MMAP_MAX)) and bool(
        mallopt(_M_TRIM_THRESHOLD, FREED_KEPT_MAX)
    )


@dataclass(frozen=True)
class Backoff:
    """Delays between reconnection attempts: initial, initial*factor, ... up to `cap` seconds."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 10.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.factor < 1 or self.cap < self.initial:
            raise ValueError(f"invalid backoff {self}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before reconnection attempt `attempt` (1-based)."""
        return min(self.cap, self.initial * self.factor ** max(0, attempt - 1))


@dataclass(slots=True)
class Frame:
    """One captured frame and when it became available.  Only the capture thread changes it,
    before handing it over (not frozen: that makes each frame's construction 3x dearer)."""

    image: np.ndarray
    seq: int  # position in the source since the start (counts dropped frames too)
    t_capture: float  # time.monotonic() when the frame was available
    t_wall: float  # time.time() at the same moment, for logs
    capture_ms: float  # time spent reading/decoding it
    pixels: np.ndarray | None = None  # model-resolution pixels, when the capture thread made them
    prepare_ms: float = 0.0  # time the capture thread spent making `pixels`


def queue_depth(frame_bytes: int) -> int:
    """Frames a file may be read ahead of the model, for frames of `frame_bytes` each."""
    return max(2, min(QUEUE_DEPTH, QUEUE_BYTES // max(1, frame_bytes)))


class End:
    """Sentinel: no more frames/results (end of file, stop) or the handing thread failed.  The
    capture thread hands it to the loop, and the loop's inference thread to the iterator."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Capture:
    """Reads `source` in a daemon thread; `get(timeout)` returns the next `Frame`, None on timeout
    (live source quiet, loop keeps running), or raises `StopIteration` at the end."""

    def __init__(
        self,
        source: Source,
        *,
        realtime: bool = False,
        backoff: Backoff | None = None,
        on_status: Callable[[str], None] | None = None,
        prepare: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.source = source
        self.prepare = prepare
        self.latest_mode = source.is_live or realtime
        self.paced = realtime and not source.is_live
        self.backoff = backoff or Backoff()
        self._on_status = on_status or (lambda message: None)
        source.notify = self._on_status
        self.captured = 0
        self.dropped = 0
        self.reconnects = 0
        self.status = "starting"
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self._full_puts = 0  # puts that found the queue full, counted up to FULL_TO_YIELD
        self._slot: Frame | End | None = None
        self._slot_cond = threading.Condition()
        self._clock_offset = time.time() - time.monotonic()
        self._thread = threading.Thread(target=self._run, name="edgecnn-capture", daemon=True)

    def start(self) -> Capture:
        keep_frame_memory()
        self._thread.start()
        return self

    # --- consumer side -----------------------------------------------------------------------

    def get(self, timeout: float) -> Frame | None:
        """The next frame; None if none arrived within `timeout` s; StopIteration at the end."""
        if self.latest_mode:
            item = self._take_latest(timeout)
        else:
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
        if isinstance(item, End):
            if item.error is not None:
                raise item.error
            raise StopIteration
        return item

    def pending(self) -> bool:
        """Whether `get` would return at once (a frame or the end is waiting)."""
        return self._slot is not None if self.latest_mode else self._queue.qsize() > 0

    def _take_latest(self, timeout: float) -> Frame | End | None:
        with self._slot_cond:
            if self._slot is None:
                self._slot_cond.wait(timeout)
            item, self._slot = self._slot, None
            if isinstance(item, End):
                self._slot = item  # stays finished for every later call
            return item

    def stop(self) -> None:
        """Ask the thread to finish and wait briefly; the source is closed by the thread (or
        here, if the thread never started)."""
        self._stop.set()
        with self._slot_cond:
            self._slot_cond.notify_all()
        if self._thread.ident is None:
            self.source.close()
        elif self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    # --- producer side -----------------------------------------------------------------------

    def _run(self) -> None:
        block_interrupts()
        try:
            if self.source.is_live:
                self._run_live()
            else:
                self._run_file()
            end = End()
        except BaseException as e:  # handed to the loop, which re-raises it
            end = End(e)
        finally:
            self.source.close()
        self._hand_over(end)

    def _run_file(self) -> None:
        self.status = "playing"
        fps = self.source.fps or 25.0
        t0 = time.monotonic()
        seq = 0
        while not self._stop.is_set():
            if self.paced:
                due = t0 + seq / fps
                if time.monotonic() > due + 1.0 / fps:  # behind schedule: drop undecoded
                    if not self.source.skip():
                        return
                    self.dropped += 1
                    seq += 1
                    continue
                self._stop.wait(max(0.0, due - time.monotonic()))
            frame = self._read(seq)
            if frame is None:
                return
            if seq == 0:  # set before the first put, by the only thread that puts
                self._queue.maxsize = queue_depth(frame.image.nbytes)
            seq += 1
            if self.prepare is not None and not self.latest_mode and self._queue.qsize() > 1:
                frame = self._prepared(frame)
            self._hand_over(frame)

    def _prepared(self, frame: Frame) -> Frame:
        t0 = time.monotonic()
        frame.pixels = self.prepare(frame.image)
        frame.prepare_ms = (time.monotonic() - t0) * 1000.0
        return frame

    def _run_live(self) -> None:
        self.status = "live"
        seq = 0
        while not self._stop.is_set():
            try:
                frame = self._read(seq)
                problem = "delivered no frame" if frame is None else ""
            except Exception as e:  # any driver/network failure: reconnect, never crash
                frame, problem = None, f"failed ({type(e).__name__}: {e})"
            if frame is None:
                if not self._reconnect(problem):
                    return
                continue
            seq += 1
            self._hand_over(frame)

    def _read(self, seq: int) -> Frame | None:
        t0 = time.monotonic()
        got = self.source.read()
        if got is None:
            return None
        image, t_capture = got
        self.captured += 1
        return Frame(
            image=image,
            seq=seq,
            t_capture=t_capture,
            t_wall=t_capture + self._clock_offset,
            capture_ms=(time.monotonic() - t0) * 1000.0,
        )

    def _reconnect(self, problem: str) -> bool:
        """Close and reopen the source with capped exponential backoff until it opens again or
        the loop stops.  True when it is back."""
        self.source.close()
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            delay = self.backoff.delay(attempt)
            self.status = f"reconnecting (attempt {attempt})"
            self._on_status(
                f"{self.source.name} {problem}; reconnecting in {delay:.1f}s (attempt {attempt})"
            )
            problem = "still unavailable"
            if self._stop.wait(delay):
                return False
            try:
                self.source.open()
            except Exception as e:  # noqa: BLE001 - whatever the driver raises, try again later
                problem = f"still unavailable ({e})"
                continue
            self.reconnects += 1
            self.status = "live"
            self._on_status(f"{self.source.name} reconnected after {attempt} attempt(s)")
            return True
        return False

    def _hand_over(self, item: Frame | End) -> None:
        if self.latest_mode:
            with self._slot_cond:
                if isinstance(self._slot, Frame):
                    self.dropped += 1
                self._slot = item
                self._slot_cond.notify_all()
            return
        if self._full_puts < FULL_TO_YIELD and self._queue.full():
            self._full_puts += 1
            if self._full_puts == FULL_TO_YIELD:  # the model is the limit: let it run first
                lower_thread_priority(FILE_CAPTURE_NICENESS)
        while True:
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():
                    return
