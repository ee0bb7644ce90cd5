"""A dependency-free progress bar for long loops (decoding, evaluation, benchmarks).

Draws on stderr only when it is a terminal (or when forced), so logs and tests stay clean.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class Progress:
    def __init__(self, total: int, desc: str = "", *, enabled: bool | None = None) -> None:
        self.total = max(0, int(total))
        self.desc = desc
        self.n = 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._start = time.perf_counter()
        self._last = 0.0

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if self.enabled and (now - self._last > 0.1 or self.n >= self.total):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        width = 28
        frac = self.n / self.total if self.total else 1.0
        filled = int(width * min(1.0, frac))
        rate = self.n / max(now - self._start, 1e-9)
        bar = "#" * filled + "." * (width - filled)
        sys.stderr.write(f"\r{self.desc} [{bar}] {self.n}/{self.total} {rate:6.1f}/s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.perf_counter())
            sys.stderr.write("\n")
            sys.stderr.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(
    items: Iterable[T], total: int, desc: str = "", *, enabled: bool | None = None
) -> Iterator[T]:
    with Progress(total, desc, enabled=enabled) as bar:
        for item in items:
            yield item
            bar.update()
