"""Run statistics in constant memory, so a camera left running for a week does not grow.

Latencies go into log-spaced histograms (1% wide bins from 1 us to 1000 s): percentiles are
exact to within 1% however long the run, and memory is 16 KiB per stage (2,084 counts).
"""

from __future__ import annotations

import math
import operator
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

STAGES = ("capture", "preprocess", "inference", "postprocess", "total")
_LO_MS = 1e-3
_GROWTH = 1.01
_BINS = int(math.log(1e6 / _LO_MS) / math.log(_GROWTH)) + 2
_INV_LOG_GROWTH = 1.0 / math.log(_GROWTH)
_stage_values = operator.itemgetter(*STAGES)


class Histogram:
    """Counts of millisecond values in 1%-wide log bins; `percentile(q)` for q in 0..100."""

    def __init__(self) -> None:
        self.counts = np.zeros(_BINS, dtype=np.int64)
        self.n = 0
        self.max = 0.0

    def add(self, ms: float) -> None:
        self.add_many((ms,))

    def add_many(self, ms: Sequence[float] | np.ndarray) -> None:
        """Count every value of `ms` (milliseconds) at once; NaN counts as the lowest bin."""
        ms = np.asarray(ms, dtype=np.float64).ravel()
        if ms.size == 0:
            return
        ms = np.where(ms > _LO_MS, ms, _LO_MS)
        bins = np.minimum(np.log(ms / _LO_MS) * _INV_LOG_GROWTH + 1, _BINS - 1).astype(np.int64)
        bins[ms == _LO_MS] = 0
        self.counts += np.bincount(bins, minlength=_BINS)
        self.n += ms.size
        self.max = max(self.max, float(ms.max()))

    def percentile(self, q: float) -> float:
        if self.n == 0:
            return float("nan")
        rank = max(1, math.ceil(q / 100.0 * self.n))
        i = int(np.searchsorted(np.cumsum(self.counts), rank))
        middle = _LO_MS * _GROWTH ** (i - 0.5) if i else _LO_MS
        return min(middle, self.max)


class RateMeter:
    """Frames per second over the last `window` seconds (what the overlay shows)."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._times: deque[float] = deque()

    def tick(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._times.append(now)
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()
        return self.rate

    @property
    def rate(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


@dataclass
class Summary:
    """What `edgecnn run` prints at exit."""

    frames: int
    dropped: int
    reconnects: int
    seconds: float
    fps: float
    percentiles: dict[str, tuple[float, float]]  # stage -> (p50 ms, p99 ms)
    frame_age: tuple[float, float]

    def to_dict(self) -> dict:
        return {
            "frames": self.frames,
            "dropped": self.dropped,
            "reconnects": self.reconnects,
            "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 2),
            "p50_ms": {k: round(v[0], 3) for k, v in self.percentiles.items()},
            "p99_ms": {k: round(v[1], 3) for k, v in self.percentiles.items()},
            "frame_age_ms": {
                "p50": round(self.frame_age[0], 3),
                "p99": round(self.frame_age[1], 3),
            },
        }

    def format(self) -> str:
        lines = [
            f"frames processed: {self.frames}   dropped: {self.dropped}   "
            f"reconnects: {self.reconnects}   {self.fps:.1f} FPS over {self.seconds:.1f}s",
            f"{'stage':<12} {'p50 ms':>9} {'p99 ms':>9}",
        ]
        rows = [*self.percentiles.items(), ("frame age", self.frame_age)]
        lines += [f"{stage:<12} {p50:>9.2f} {p99:>9.2f}" for stage, (p50, p99) in rows]
        return "\n".join(lines)


class RunStats:
    """Per-stage histograms, frame count and wall time of one run.

    `add` runs once a frame in the thread that builds results, so it only appends the frame's
    figures to a list; they are binned `PENDING` at a time and before a summary (1.5 us a frame
    where binning each value as it came cost 5 us)."""

    PENDING = 256

    def __init__(self) -> None:
        self.stages = {name: Histogram() for name in STAGES}
        self.age = Histogram()
        self.frames = 0
        self.t_first: float | None = None
        self.t_last: float | None = None
        self._pending: list[tuple[float, ...]] = []

    def add(self, timings: dict[str, float], frame_age_ms: float, t_result: float) -> None:
        self._pending.append((*_stage_values(timings), frame_age_ms))
        if len(self._pending) >= self.PENDING:
            self._bin()
        self.frames += 1
        if self.t_first is None:
            self.t_first = t_result
        self.t_last = t_result

    def _bin(self) -> None:
        pending, self._pending = self._pending, []  # one swap: a summary may come from any thread
        if pending:
            columns = np.array(pending, dtype=np.float64).T
            for hist, values in zip((*self.stages.values(), self.age), columns):
                hist.add_many(values)

    def summary(self, *, dropped: int = 0, reconnects: int = 0) -> Summary:
        """FPS is results per second between the first and the last result."""
        self._bin()
        seconds = (self.t_last - self.t_first) if self.t_first is not None else 0.0
        fps = (self.frames - 1) / seconds if seconds > 0 else 0.0
        pct = {k: (h.percentile(50), h.percentile(99)) for k, h in self.stages.items()}
        age = (self.age.percentile(50), self.age.percentile(99))
        return Summary(self.frames, dropped, reconnects, seconds, fps, pct, age)
