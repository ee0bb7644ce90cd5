"""The live classification loop as a Python iterator: what `edgecnn run` is built on.

    from edgecnn.runtime.live import live

    for r in live("model_int8.tflite", "0", smooth=0.5, min_score=0.6):
        print(r.index, r.label, f"{r.score:.2f}", f"{r.timings['total']:.1f} ms")

Three threads form a pipeline: the capture thread reads, decodes and (when it is ahead) resizes
the next frame; an inference thread does nothing but run the model, back to back; the thread
iterating builds the results (smoothing, top-k, timings, statistics) and feeds the outputs while
the next frame is being classified.  The loop therefore approaches the speed of the slower of
decoding and inference.  Each result carries the frame, the (optionally smoothed)
probabilities, the top-k, the age of the frame when the model picked it up, and the time of
every stage.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from ..classifier import ranked
from ..contract import Contract
from ..errors import InputError
from ..preprocess import to_pixels
from .capture import Backoff, Capture, End, Frame, block_interrupts
from .sources import Source, open_source
from .stats import RateMeter, RunStats, Summary

UNCERTAIN = "uncertain"
# Classes in each result's `topk` (and the bars drawn on the frame) unless told: `edgecnn run`'s
# --top-k default too.
DEFAULT_TOP_K = 3
# `Result.to_json`'s line: the fields of `to_dict()` in its order, the numbers to its decimals;
# `_json_str` writes a string as the encoder does.
_JSON_LINE = (
    '{"time":%.6f,"index":%d,"seq":%d,"label":%s,"score":%.6f,"topk":[%s],"frame_age_ms":%.3f%s}'
)
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))
_json_str = json.encoder.encode_basestring_ascii
_IDLE = object()  # from the inference thread: no frame arrived for IDLE_POLL_S
IDLE_POLL_S = 0.1
log = logging.getLogger("edgecnn.live")


class ClassifierLike(Protocol):
    """What the loop uses of `edgecnn.runtime.Classifier` (what `load(...)` returns).

    Per frame: `frame_pixels` (a frame the capture thread did not resize), `frame_input` (the
    model input, in the classifier's own buffer), then `frame_probs`; the loop times the last
    step apart as inference.  `probs` runs once on a blank frame before the first, which checks
    the model's output against the labels.  `path` and `backend` name the model in status lines.
    """

    contract: Contract
    path: str | os.PathLike
    backend: str

    def frame_pixels(self, image: np.ndarray) -> np.ndarray: ...

    def frame_input(self, pixels: np.ndarray) -> np.ndarray: ...

    def probs(self, x: np.ndarray) -> np.ndarray: ...

    def frame_probs(self, x: np.ndarray) -> np.ndarray: ...


class _Handoff:
    """A bounded FIFO between two threads that wakes the taker once `wake_at` items wait.

    A wake-up is a system call, and on a virtual machine an interrupt to another CPU: tens of
    microseconds of the giving thread's time, per frame when the taker is always faster.  Waking
    the taker for every second result instead leaves it a pair to take; `flush()` wakes it for
    whatever waits (the giver calls it before it may sit idle, so no result waits for the next
    one), and an item of another type than `batched` (a sentinel) wakes it at once.
    """

    def __init__(self, maxsize: int, *, wake_at: int = 1, batched: type = object) -> None:
        self.maxsize = maxsize
        self.wake_at = max(1, min(wake_at, maxsize))
        self.batched = batched
        self._items: deque = deque()
        lock = threading.Lock()
        self._ready = threading.Condition(lock)
        self._space = threading.Condition(lock)

    def put(self, item: object, timeout: float) -> bool:
        """Append `item`; False when the FIFO stayed full for `timeout` seconds."""
        with self._space:
            if len(self._items) >= self.maxsize and not self._space.wait_for(
                lambda: len(self._items) < self.maxsize, timeout
            ):
                return False
            self._items.append(item)
            if len(self._items) >= self.wake_at or not isinstance(item, self.batched):
                self._ready.notify()
            return True

    def flush(self) -> None:
        with self._ready:
            if self._items:
                self._ready.notify()

    def get(self, timeout: float) -> object | None:
        """The oldest item; None when none was handed over for `timeout` seconds."""
        with self._ready:
            if not self._items and not self._ready.wait_for(lambda: self._items, timeout):
                return None
            item = self._items.popleft()
            self._space.notify()
            return item


class _Inferred(NamedTuple):
    frame: Frame
    probs: np.ndarray
    t_pick: float  # when the inference thread took the frame
    t_pre: float  # preprocessing done
    t_inf: float  # inference done


@dataclass(frozen=True)
class Result:
    """One classified frame.

    `label` is the top class, or "uncertain" when its score is below `min_score`; `topk` is
    always the real ranking.  Timings are milliseconds: `capture` (time the capture thread spent
    in the source's read: decoding for a file, waiting for the next frame for a camera),
    `preprocess`, `inference`, `postprocess` (from the model's output to the finished result:
    the hand-over from the inference thread, smoothing, top-k; a file read as fast as possible
    hands results over in pairs, so there it includes waiting for the next frame's inference),
    and `total`: capture-to-result latency, from the moment the frame was available to the
    result (= frame age + the three loop stages).  `frame_age_ms` is how old the frame was when
    the model picked it up.
    """

    frame: np.ndarray
    index: int
    seq: int
    label: str
    score: float
    topk: tuple[tuple[str, float], ...]
    probs: np.ndarray
    uncertain: bool
    frame_age_ms: float
    timings: dict[str, float]
    time: float
    fps: float
    status: str = field(default="live")

    @property
    def best(self) -> str:
        """The top class even when `label` says uncertain."""
        return self.topk[0][0]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written per frame by `--jsonl`."""
        return {
            "time": round(self.time, 6),
            "index": self.index,
            "seq": self.seq,
            "label": self.label,
            "score": round(self.score, 6),
            "topk": [[name, round(score, 6)] for name, score in self.topk],
            "frame_age_ms": round(self.frame_age_ms, 3),
            **{f"{k}_ms": round(v, 3) for k, v in self.timings.items()},
        }

    def to_json(self) -> str:
        """`to_dict()` as one line of compact JSON (without the newline), at a third of the cost
        of encoding the dict: `--jsonl` writes one a frame.  Numbers have a fixed number of
        decimals ("0.700000" where `json` writes 0.7); the values are the same."""
        timings, topk = self.timings, self.topk
        numbers = (self.time, self.score, self.frame_age_ms, *timings.values())
        if not math.isfinite(sum(numbers) + sum(score for _, score in topk)):
            return _COMPACT_JSON.encode(self.to_dict())  # NaN or infinity: as `json` spells them
        ranking = ",".join([f"[{_json_str(name)},{score:.6f}]" for name, score in topk])
        stages = "".join([f",{_json_str(f'{k}_ms')}:{v:.3f}" for k, v in timings.items()])
        label = _json_str(self.label)
        fields = (self.time, self.index, self.seq, label, self.score, ranking, self.frame_age_ms)
        return _JSON_LINE % (*fields, stages)


class Live:
    """An iterator of `Result`s from a classifier and an opened `Source`; single use.

    Use it as a context manager (or exhaust it) so the capture thread and the camera are
    released.  `stop()` may be called from any thread; the iterator then ends after the
    current frame.  `summary()` gives frames, drops, FPS and stage percentiles.
    """

    def __init__(
        self,
        classifier: ClassifierLike,
        source: Source,
        *,
        top_k: int = DEFAULT_TOP_K,
        smooth: float | None = None,
        min_score: float | None = None,
        max_frames: int | None = None,
        realtime: bool = False,
        backoff: Backoff | None = None,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        check_options(top_k=top_k, smooth=smooth, min_score=min_score, max_frames=max_frames)
        self.classifier = classifier
        self.contract: Contract = classifier.contract
        self.labels = tuple(self.contract.labels)
        self.source = source
        self.top_k = min(top_k, len(self.labels))
        self.smooth = smooth
        self.min_score = min_score
        self.max_frames = max_frames
        self.idle_hooks: list[Callable[[], None]] = []
        self.stats = RunStats()
        self._rate = RateMeter()
        self._on_status = on_status or log.warning
        self._capture = Capture(
            source, realtime=realtime, backoff=backoff, on_status=self._status,
            prepare=self._prepare,
        )  # fmt: skip
        self._ema: np.ndarray | None = None
        self._stopped = False
        self._started = False
        # live sources: one result in hand at most, so what is shown is never several frames
        # old, and every result wakes the iterating thread; files: a few, so the model never
        # waits for the outputs, handed over in pairs (see _Handoff)
        live_mode = self._capture.latest_mode
        self._inferred = _Handoff(1 if live_mode else 4, wake_at=1 if live_mode else 2,
                                  batched=_Inferred)  # fmt: skip
        self._worker = threading.Thread(target=self._infer_loop, name="edgecnn-infer", daemon=True)

    # --- public ------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Result]:
        if self._started:
            raise RuntimeError("a Live loop can be iterated only once")
        self._started = True
        self._capture.start()
        self._worker.start()
        try:
            index = 0
            while not self._stopped and (self.max_frames is None or index < self.max_frames):
                item = self._inferred.get(timeout=IDLE_POLL_S)
                if item is None:  # the model is slow, or stop() was called
                    continue
                if item is _IDLE:
                    self._idle()
                    continue
                if isinstance(item, End):
                    if item.error is not None:
                        raise item.error
                    break
                yield self._result(item, index)
                index += 1
        finally:
            self.close()

    # --- the inference thread ----------------------------------------------------------------

    def _infer_loop(self) -> None:
        """Take frames from the capture thread, run the model, hand the probabilities on.

        This thread does nothing but inference (plus the resize when the capture thread did not
        do it), so the model runs back to back; results, statistics and outputs are built by
        the iterating thread while the next frame is being classified.
        """
        block_interrupts()
        end = End()
        try:
            self._warm_up()
            done = 0
            while not self._stopped and (self.max_frames is None or done < self.max_frames):
                if not self._capture.pending():  # about to wait for a frame: hand on what is done
                    self._inferred.flush()
                try:
                    frame = self._capture.get(IDLE_POLL_S)
                except StopIteration:
                    break
                if frame is None:
                    self._hand_on(_IDLE)
                    continue
                self._hand_on(self._infer(frame))
                done += 1
        except BaseException as e:  # handed to the iterating thread, which re-raises it
            end = End(e)
        self._hand_on(end)

    def _hand_on(self, item: object) -> None:
        while not self._stopped:
            if self._inferred.put(item, timeout=IDLE_POLL_S):
                return

    def _warm_up(self) -> None:
        """One inference on a blank frame while the first frame is decoded: backends allocate
        and pick kernels on their first call, which would otherwise be frame 0's latency."""
        blank = np.zeros((self.contract.height, self.contract.width, 3), dtype=np.uint8)
        self.classifier.probs(self.classifier.frame_input(blank))

    def _infer(self, frame: Frame) -> _Inferred:
        t_pick = time.monotonic()
        clf = self.classifier
        pixels = frame.pixels if frame.pixels is not None else clf.frame_pixels(frame.image)
        x = clf.frame_input(pixels)
        t_pre = time.monotonic()
        probs = clf.frame_probs(x)
        return _Inferred(frame, probs, t_pick, t_pre, time.monotonic())

    def stop(self) -> None:
        """End the loop after the current frame (thread-safe)."""
        self._stopped = True

    def close(self) -> None:
        """Stop the inference and capture threads; the capture thread closes the source itself
        (closing it here while the thread may still be inside a blocking read could crash the
        driver)."""
        self._stopped = True
        self._capture.stop()
        if self._worker.is_alive() and self._worker is not threading.current_thread():
            self._worker.join(timeout=2.0)

    @property
    def status(self) -> str:
        """'live', 'playing', 'reconnecting (attempt N)' ..."""
        return self._capture.status

    @property
    def dropped(self) -> int:
        return self._capture.dropped

    @property
    def reconnects(self) -> int:
        return self._capture.reconnects

    def summary(self) -> Summary:
        return self.stats.summary(dropped=self.dropped, reconnects=self.reconnects)

    def __enter__(self) -> Live:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one frame ---------------------------------------------------------------------------

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        """Resize in the capture thread (a fresh array: it crosses threads)."""
        return to_pixels(image, self.contract)

    def _result(self, inferred: _Inferred, index: int) -> Result:
        frame, probs, t_pick, t_pre, t_inf = inferred
        probs = self._smoothed(probs)
        topk = tuple(ranked(probs, self.labels, self.top_k))
        score = topk[0][1]
        uncertain = self.min_score is not None and score < self.min_score
        t_post = time.monotonic()
        timings = {
            "capture": frame.capture_ms,
            "preprocess": frame.prepare_ms + (t_pre - t_pick) * 1000.0,
            "inference": (t_inf - t_pre) * 1000.0,
            "postprocess": (t_post - t_inf) * 1000.0,
            "total": (t_post - frame.t_capture) * 1000.0,
        }
        age_ms = (t_pick - frame.t_capture) * 1000.0
        self.stats.add(timings, age_ms, t_post)
        return Result(
            frame=frame.image,
            index=index,
            seq=frame.seq,
            label=UNCERTAIN if uncertain else topk[0][0],
            score=score,
            topk=topk,
            probs=probs,
            uncertain=uncertain,
            frame_age_ms=age_ms,
            timings=timings,
            time=frame.t_wall,
            fps=self._rate.tick(t_post),
            status=self.status,
        )

    def _smoothed(self, probs: np.ndarray) -> np.ndarray:
        """Exponential moving average: new = A * probs + (1 - A) * previous."""
        if self.smooth is None or self.smooth >= 1.0:
            return probs
        if self._ema is None:
            self._ema = probs
        else:
            self._ema = self.smooth * probs + (1.0 - self.smooth) * self._ema
        return self._ema

    def _idle(self) -> None:
        for hook in self.idle_hooks:
            hook()

    def _status(self, message: str) -> None:
        self._on_status(message)


def check_options(
    *,
    top_k: int = DEFAULT_TOP_K,
    smooth: float | None = None,
    min_score: float | None = None,
    max_frames: int | None = None,
) -> None:
    """InputError with one line for an option outside its range."""
    if smooth is not None and not 0.0 < smooth <= 1.0:
        raise InputError(f"--smooth must be in (0, 1] (weight of the newest frame), got {smooth}")
    if min_score is not None and not 0.0 <= min_score <= 1.0:
        raise InputError(f"--min-score must be in [0, 1], got {min_score}")
    if max_frames is not None and max_frames < 1:
        raise InputError(f"--max-frames must be at least 1, got {max_frames}")
    if top_k < 1:
        raise InputError(f"--top-k must be at least 1, got {top_k}")


def live(
    model: ClassifierLike | str | os.PathLike,
    source: Source | int | str | os.PathLike = 0,
    *,
    backend: str = "auto",
    threads: int | None = None,
    top_k: int = DEFAULT_TOP_K,
    smooth: float | None = None,
    min_score: float | None = None,
    max_frames: int | None = None,
    realtime: bool = False,
    backoff: Backoff | None = None,
    on_status: Callable[[str], None] | None = None,
) -> Live:
    """Classify frames from `source` with `model` (a loaded classifier or a model path).

    Args:
        model: what `edgecnn.runtime.load` returns, or a path for it to load.
        source: a `Source`, or a `--source` value: camera index, video file, URL, folder/glob.
        smooth: EMA weight of the newest frame's probabilities (1 or None: no smoothing).
        min_score: below this top score the result's label is "uncertain".
        max_frames: stop after this many results.
        realtime: play files at their own frame rate, dropping frames the model cannot keep up
            with (live sources always do).
        on_status: called with messages such as "camera 0 delivered no frame; reconnecting";
            defaults to the `edgecnn.live` logger.

    Example:
        >>> for r in live("runs/cats/export/model_int8.tflite", "clip.mp4", max_frames=10):
        ...     print(r.index, r.label, round(r.score, 2))
    """
    check_options(top_k=top_k, smooth=smooth, min_score=min_score, max_frames=max_frames)
    classifier = open_classifier(model, backend=backend, threads=threads)
    opened = open_source(source)
    return Live(
        classifier,
        opened,
        top_k=top_k,
        smooth=smooth,
        min_score=min_score,
        max_frames=max_frames,
        realtime=realtime,
        backoff=backoff,
        on_status=on_status,
    )


def open_classifier(model: Any, *, backend: str, threads: int | None) -> ClassifierLike:
    """`model` itself when it is already a classifier, else `edgecnn.runtime.load(model, ...)`."""
    if hasattr(model, "probs") and hasattr(model, "contract"):
        return model
    from .. import load  # the runtime's loader; imported late so this module stays light

    return load(model, backend=backend, threads=threads)
