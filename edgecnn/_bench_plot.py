"""The bench plot drawn with OpenCV: p50 latency bars with p99 marks, and accuracy beside them.

OpenCV is a core dependency, so the plot is drawn the same way on a training machine and on a
device that has only the runtime installed (no matplotlib).  OpenCV's fonts are ASCII only.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_INK = (40, 40, 40)
_GREY = (120, 120, 120)
_GRID = (225, 225, 225)
_P50 = (176, 114, 76)  # BGR of the blue used for latency bars
_P99 = (82, 78, 196)  # red p99 marks
_ACC = (150, 205, 140)  # light green accuracy bars (dark text stays readable on them)
_ROW_H = 26
_BAR_H = 16
_SCALE = 0.45
_LAT_W = 560  # latency panel width, pixels
_ACC_W = 230  # accuracy panel width
_VALUE_ROOM = 80  # room right of the longest bar for its value
_LOG_SPREAD = 50  # slowest p50 / fastest p50 above this: log axis (Keras next to int8 TFLite)


def _ascii(text: str) -> str:
    return str(text).encode("ascii", "replace").decode()


def _text(img: np.ndarray, text: str, org: tuple[int, int], *, scale=_SCALE, color=_INK) -> None:
    cv2.putText(img, _ascii(text), org, _FONT, scale, color, 1, cv2.LINE_AA)


def _width(text: str, scale: float = _SCALE) -> int:
    return cv2.getTextSize(_ascii(text), _FONT, scale, 1)[0][0]


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _nice_step(span: float, target: int = 5) -> float:
    """1, 2 or 5 x 10^k: a tick step giving about `target` ticks over `span`."""
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


class _Axis:
    """Maps latency (ms) to a pixel offset in [0, length]: linear from 0, or log10."""

    def __init__(self, values: list[float], length: int) -> None:
        low, high = min(values), max(values)
        self.log = high / max(low, 1e-9) > _LOG_SPREAD
        self.length = length
        if self.log:
            self.lo = math.floor(math.log10(max(low, 1e-6)))
            self.hi = max(self.lo + 1, math.ceil(math.log10(high)))
            self.ticks = [10.0**e for e in range(self.lo, self.hi + 1)]
        else:
            step = _nice_step(high)
            self.hi = step * math.ceil(high / step)
            self.ticks = [step * i for i in range(int(round(self.hi / step)) + 1)]

    def __call__(self, value: float) -> int:
        if self.log:
            frac = (math.log10(max(value, 10.0**self.lo)) - self.lo) / (self.hi - self.lo)
        else:
            frac = value / self.hi if self.hi else 0.0
        return int(round(min(max(frac, 0.0), 1.0) * self.length))


def _row_name(r: dict) -> str:
    return f"{r['artifact']} | {r['backend']} x{r['threads']}"


def _not_measured(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        if r.get("error"):
            word = "skipped" if r.get("skipped") else "error"
            out.append(f"{_row_name(r)}: {word}: {r['error']}"[:150])
    return out


def render_plot(result: dict) -> np.ndarray:
    """The bench result as a BGR image: one row per measured artifact x backend x threads."""
    rows = [r for r in result["rows"] if not r.get("error") and r.get("p50_ms") is not None]
    notes = _not_measured(result["rows"])
    has_acc = any(r.get("accuracy") is not None for r in rows)
    label_w = max([_width(_row_name(r)) for r in rows] + [120]) + 20
    top, plot_h = 62, _ROW_H * max(1, len(rows))
    width = label_w + _LAT_W + (_ACC_W + 30 if has_acc else 0) + 20
    height = top + plot_h + 40 + 18 * len(notes) + 10
    img = np.full((height, width, 3), 255, np.uint8)
    env = result.get("env", {})
    _text(img, f"edgecnn bench: {env.get('cpu', '')}, {env.get('cores', '?')} cores", (10, 22),
          scale=0.55)  # fmt: skip
    if rows:
        _latency_panel(img, rows, x0=label_w, top=top)
        if has_acc:
            _accuracy_panel(img, rows, x0=label_w + _LAT_W + 30, top=top)
    else:
        _text(img, "no row was measured", (10, top + 18), color=_GREY)
    y = top + plot_h + 40
    for note in notes:
        _text(img, note, (10, y), scale=0.4, color=_GREY)
        y += 18
    return img


def _latency_panel(img: np.ndarray, rows: list[dict], *, x0: int, top: int) -> None:
    bar_len = _LAT_W - _VALUE_ROOM
    axis = _Axis([v for r in rows for v in (r["p50_ms"], r.get("p99_ms") or r["p50_ms"])], bar_len)
    bottom = top + _ROW_H * len(rows)
    for tick in axis.ticks:
        x = x0 + axis(tick)
        cv2.line(img, (x, top - 4), (x, bottom), _GRID, 1)
        label = f"{tick:g}"
        _text(img, label, (x - _width(label, 0.4) // 2, bottom + 16), scale=0.4, color=_GREY)
    scale_name = "log scale" if axis.log else "batch 1"
    _text(img, f"latency per image, ms ({scale_name}):  bar p50,  red mark p99", (x0, top - 12))
    for i, r in enumerate(rows):
        y = top + i * _ROW_H + (_ROW_H - _BAR_H) // 2
        name = _row_name(r)
        _text(img, name, (x0 - 10 - _width(name), y + _BAR_H - 3))
        end = x0 + max(1, axis(r["p50_ms"]))
        cv2.rectangle(img, (x0, y), (end, y + _BAR_H), _P50, -1)
        right = end
        if r.get("p99_ms") is not None:
            x99 = x0 + axis(r["p99_ms"])
            cv2.line(img, (x99, y - 3), (x99, y + _BAR_H + 3), _P99, 2)
            right = max(right, x99)
        _text(img, _ms(r["p50_ms"]), (right + 6, y + _BAR_H - 3))
    cv2.line(img, (x0, top - 4), (x0, bottom), _GREY, 1)


def _accuracy_panel(img: np.ndarray, rows: list[dict], *, x0: int, top: int) -> None:
    bottom = top + _ROW_H * len(rows)
    for pct in (0, 50, 100):
        x = x0 + _ACC_W * pct // 100
        cv2.line(img, (x, top - 4), (x, bottom), _GRID, 1)
        _text(img, f"{pct}", (x - _width(f"{pct}", 0.4) // 2, bottom + 16), scale=0.4, color=_GREY)
    agrees = any(r.get("agreement") is not None for r in rows)
    _text(img, "accuracy, %" + (" (agreement with Keras)" if agrees else ""), (x0, top - 12))
    for i, r in enumerate(rows):
        acc = r.get("accuracy")
        if acc is None:
            continue
        y = top + i * _ROW_H + (_ROW_H - _BAR_H) // 2
        cv2.rectangle(img, (x0, y), (x0 + max(1, int(_ACC_W * acc)), y + _BAR_H), _ACC, -1)
        agree = r.get("agreement")
        label = f"{100 * acc:.1f}%" + (f" ({100 * agree:.0f}% agree)" if agree is not None else "")
        _text(img, label, (x0 + 4, y + _BAR_H - 3), scale=0.4)
    cv2.line(img, (x0, top - 4), (x0, bottom), _GREY, 1)


def encode_png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover - OpenCV always encodes PNG
        raise RuntimeError("OpenCV could not encode the bench plot as PNG")
    return buf.tobytes()
