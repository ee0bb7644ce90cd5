"""The annotation drawn on every shown, served or recorded frame: label and score, top-k bars,
FPS and per-frame latency.  Plain OpenCV drawing, sized relative to the frame width so it reads
the same on a 320x240 Pi stream and a 1080p webcam.

Class names come from the model file, so they are drawn as OpenCV's Hershey font can draw them
(printable ASCII; anything else shows as '?') and cut with '...' to fit the frame."""

from __future__ import annotations

import cv2
import numpy as np

from .loop import Result

FONT = cv2.FONT_HERSHEY_SIMPLEX
GREEN = (80, 220, 80)
ORANGE = (0, 165, 255)
WHITE = (255, 255, 255)
GREY = (170, 170, 170)
BAR_WIDTH = 0.28  # fraction of the frame width used by a full bar
NAME_WIDTH = 0.35  # fraction of the frame width a class name next to its bar may take
ELLIPSIS = "..."


def draw(result: Result, *, fps: float | None = None, status: str | None = None) -> np.ndarray:
    """A copy of the result's frame with the overlay; the original is left untouched."""
    img = np.array(result.frame, dtype=np.uint8, copy=True)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    scale = max(0.35, img.shape[1] / 640.0)
    y = _headline(img, result, scale)
    y = _bars(img, result, scale, y)
    _footer(img, result, scale, result.fps if fps is None else fps, status)
    return img


def _panel(img: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
    """Darken a rectangle so white text stays readable on any background."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 > x0 and y1 > y0:
        roi = img[y0:y1, x0:x1]
        cv2.convertScaleAbs(roi, dst=roi, alpha=0.35)


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color, thick=1) -> None:
    cv2.putText(img, text, org, FONT, scale, color, max(1, round(thick)), cv2.LINE_AA)


def printable(text: str) -> str:
    """`text` as the Hershey font can draw it: printable ASCII, anything else as '?'."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def fit(text: str, max_width: int, font_scale: float, thickness: int = 1) -> str:
    """`printable(text)`, cut with '...' so it is at most `max_width` pixels wide."""
    text = printable(text)
    if _width(text, font_scale, thickness) <= max_width:
        return text
    lo, hi = 0, len(text)  # the longest prefix that fits with the ellipsis: binary search
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _width(text[:mid] + ELLIPSIS, font_scale, thickness) <= max_width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + ELLIPSIS


def _width(text: str, font_scale: float, thickness: int) -> int:
    return cv2.getTextSize(text, FONT, font_scale, thickness)[0][0]


def _headline(img: np.ndarray, result: Result, scale: float) -> int:
    font_scale = 1.0 * scale
    thick = max(1, round(2 * scale))
    pad = round(8 * scale)
    if result.uncertain:
        before, name, after = "uncertain (", result.best, f" {result.score:.2f})"
    else:
        before, name, after = "", result.label, f" {result.score:.2f}"
    room = img.shape[1] - 2 * pad - _width(before + after, font_scale, thick)
    text = before + fit(name, max(0, room), font_scale, thick) + after
    (tw, th), base = cv2.getTextSize(text, FONT, font_scale, thick)
    _panel(img, 0, 0, tw + 2 * pad, th + base + 2 * pad)
    color = ORANGE if result.uncertain else GREEN
    _text(img, text, (pad, pad + th), font_scale, color, 2 * scale)
    return th + base + 2 * pad


def _bars(img: np.ndarray, result: Result, scale: float, top: int) -> int:
    font_scale = 0.5 * scale
    row = round(20 * scale)
    pad = round(8 * scale)
    bar_max = round(BAR_WIDTH * img.shape[1])
    room = round(NAME_WIDTH * img.shape[1])
    names = [fit(name, room, font_scale) for name, _ in result.topk]
    label_w = max(cv2.getTextSize(name, FONT, font_scale, 1)[0][0] for name in names)
    width = pad + label_w + pad + bar_max + round(60 * scale)
    _panel(img, 0, top, width, top + row * len(result.topk) + pad)
    for i, (name, (_, score)) in enumerate(zip(names, result.topk)):
        y = top + pad + i * row
        _text(img, name, (pad, y + round(13 * scale)), font_scale, WHITE)
        x = pad + label_w + pad
        length = max(1, round(bar_max * min(1.0, max(0.0, score))))
        cv2.rectangle(img, (x, y + 2), (x + length, y + row - 4), GREEN if i == 0 else GREY, -1)
        _text(img, f"{score:.2f}", (x + length + pad, y + round(13 * scale)), font_scale, WHITE)
    return top + row * len(result.topk) + pad


def _footer(img: np.ndarray, result: Result, scale: float, fps: float, status: str | None) -> None:
    t = result.timings
    text = f"{fps:.1f} FPS  latency {t['total']:.1f} ms  inference {t['inference']:.1f} ms"
    if status and status not in ("live", "playing"):
        text += f"  [{status}]"
    font_scale = 0.5 * scale
    (tw, th), base = cv2.getTextSize(text, FONT, font_scale, 1)
    pad = round(6 * scale)
    h = img.shape[0]
    _panel(img, 0, h - th - base - 2 * pad, tw + 2 * pad, h)
    _text(img, text, (pad, h - base - pad), font_scale, WHITE)
