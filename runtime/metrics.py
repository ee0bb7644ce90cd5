"""Classification metrics and a confusion-matrix picture, with numpy and OpenCV only.

Training (metrics.json, confusion.png), export verification, `edgecnn eval` and benchmarks all
report accuracy through these two functions, so the numbers agree everywhere and the device
needs neither scikit-learn nor matplotlib.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import InputError
from .files import write_atomic

# Above this many classes the confusion matrix is summarised: the printed table and the picture
# with names and counts in every cell would grow with the square of the class count.
MAX_DETAILED_CLASSES = 100
HEATMAP_SIDE = 1000  # pixels of the plain heat map drawn for more classes


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """int64 (C, C) matrix: row = true class, column = predicted class."""
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise InputError(f"y_true has {t.size} entries but y_pred has {p.size}")
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise InputError(f"{name} holds class indices outside 0..{num_classes - 1}")
    flat = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b with 0 where b is 0 (a class never predicted has precision 0, not NaN)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def accuracy_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of an accuracy of `correct` / `total` (95% for z = 1.96): the
    range the accuracy on more photos like these would fall in, honest at 100% and for few
    photos, where the plain ± of the normal approximation is not.

    Example:
        >>> [round(x, 3) for x in accuracy_interval(819, 1000)]
        [0.794, 0.842]
    """
    if total <= 0:
        return 0.0, 1.0
    p = correct / total
    z2n = z * z / total
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * np.sqrt(p * (1 - p) / total + z2n / (4 * total))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def classification_report(
    y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, macro averages and the confusion matrix.

    Everything is plain Python (floats, ints, lists) so the dict can go straight into JSON.

    Example:
        >>> r = classification_report([0, 1, 1], [0, 1, 0], ["cat", "dog"])
        >>> round(r["accuracy"], 3), r["per_class"]["dog"]["recall"]
        (0.667, 0.5)
    """
    labels = [str(x) for x in labels]
    cm = confusion_matrix(y_true, y_pred, len(labels))
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    total = int(cm.sum())
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(labels)
    }
    present = support > 0
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "accuracy_interval": [round(x, 6) for x in accuracy_interval(int(tp.sum()), total)],
        "count": total,
        "labels": labels,
        "per_class": per_class,
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "confusion_matrix": cm.tolist(),
    }


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table of a `classification_report` (what `edgecnn eval` prints)."""
    labels = report["labels"]
    width = max(8, *(len(x) for x in labels))
    lines = [
        f"accuracy {report['accuracy']:.4f} on {report['count']} images ({interval_text(report)})",
        "",
        f"{'class':<{width}}  precision  recall     f1  support",
    ]
    for name in labels:
        c = report["per_class"][name]
        lines.append(
            f"{name:<{width}}  {c['precision']:9.4f}  {c['recall']:6.4f}  {c['f1']:5.3f}  "
            f"{c['support']:7d}"
        )
    if len(labels) > MAX_DETAILED_CLASSES:
        lines += ["", f"confusion matrix: {len(labels)} classes, too many to print (see --json)"]
        return "\n".join(lines)
    lines += ["", "confusion matrix (rows: true, columns: predicted)"]
    cells = [[str(v) for v in row] for row in report["confusion_matrix"]]
    heads = [_shorten(x, 12) for x in labels]
    cw = max([len(x) for x in heads] + [len(v) for row in cells for v in row])
    lines.append(" " * width + "  " + " ".join(f"{x:>{cw}}" for x in heads))
    for name, row in zip(labels, cells):
        lines.append(f"{name:<{width}}  " + " ".join(f"{v:>{cw}}" for v in row))
    return "\n".join(lines)


def interval_text(report: dict[str, Any]) -> str:
    """'95% interval 0.7928 to 0.8421' for a `classification_report`."""
    lo, hi = report["accuracy_interval"]
    return f"95% interval {lo:.4f} to {hi:.4f}"


# --- confusion.png ---------------------------------------------------------------------------

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_INK = (40, 40, 40)


def _text(
    img: np.ndarray, text: str, org: tuple[int, int], scale: float, color=_INK, thickness: int = 1
) -> None:
    cv2.putText(img, text, org, _FONT, scale, color, thickness, cv2.LINE_AA)


def _text_size(text: str, scale: float, thickness: int = 1) -> tuple[int, int]:
    (w, h), _ = cv2.getTextSize(text, _FONT, scale, thickness)
    return w, h


def _shorten(label: str, max_chars: int = 18) -> str:
    return label if len(label) <= max_chars else label[: max_chars - 1] + "~"


def render_confusion(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], *, title: str = ""
) -> np.ndarray:
    """The confusion matrix as a BGR image: cells shaded by row-normalised share, with counts
    and percentages written in, class names on both axes.  Only ASCII survives OpenCV fonts."""
    cm = np.asarray(matrix, dtype=np.int64)
    n = cm.shape[0]
    if cm.ndim != 2 or cm.shape != (n, n) or n != len(labels):
        raise InputError(f"confusion matrix of shape {cm.shape} does not fit {len(labels)} labels")
    if n > MAX_DETAILED_CLASSES:
        return _render_heatmap(cm, title)
    names = [_shorten(str(x).encode("ascii", "replace").decode()) for x in labels]
    cell = int(np.clip(560 // max(n, 1), 28, 110))
    scale = float(np.clip(cell / 110 * 0.6, 0.3, 0.6))
    label_w = max(_text_size(x, 0.5)[0] for x in names) + 20
    top = 70 if title else 45
    left = label_w + 30
    width = left + cell * n + 20
    height = top + cell * n + label_w + 16
    img = np.full((height, max(width, 360), 3), 255, dtype=np.uint8)

    if title:
        _text(img, _shorten(title, 70), (10, 25), 0.6, thickness=1)
    _text(img, "predicted", (left + cell * n // 2 - 35, top - 12), 0.5)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)
    for i in range(n):
        for j in range(n):
            x0, y0 = left + j * cell, top + i * cell
            shade = int(255 - 200 * share[i, j])  # white -> dark blue
            color = (255, shade, shade) if i == j else (shade, shade, 255)
            cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), color, -1)
            cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), (180, 180, 180), 1)
            ink = (255, 255, 255) if share[i, j] > 0.55 else _INK
            count = str(int(cm[i, j]))
            tw, th = _text_size(count, scale, 1)
            cy = y0 + cell // 2 + (th // 2 if cell < 50 else 0)
            _text(img, count, (x0 + (cell - tw) // 2, cy), scale, ink)
            if cell >= 50 and rows[i, 0] > 0:
                pct = f"{100 * share[i, j]:.0f}%"
                pw, ph = _text_size(pct, scale * 0.7)
                _text(img, pct, (x0 + (cell - pw) // 2, cy + ph + 8), scale * 0.7, ink)
    for i, name in enumerate(names):  # row labels (true class)
        tw, th = _text_size(name, 0.5)
        _text(img, name, (left - tw - 8, top + i * cell + cell // 2 + th // 2), 0.5)
    # column labels, rotated 90 degrees below the grid
    strip = np.full((cell * n, label_w, 3), 255, dtype=np.uint8)
    for j, name in enumerate(names):
        tw, th = _text_size(name, 0.5)  # right-aligned: ends next to the grid after rotation
        _text(strip, name, (label_w - tw - 8, j * cell + cell // 2 + th // 2), 0.5)
    rotated = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
    y_strip = top + cell * n + 4
    img[y_strip : y_strip + rotated.shape[0], left : left + rotated.shape[1]] = rotated
    _text(img, "true", (8, top + 14), 0.5)
    return img


def _render_heatmap(cm: np.ndarray, title: str) -> np.ndarray:
    """The row-normalised confusion matrix of many classes as a HEATMAP_SIDE-pixel square
    (white -> dark blue on the diagonal, white -> red elsewhere), without names or counts."""
    n = cm.shape[0]
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float32), where=rows > 0)
    shade = (255 - 200 * share).astype(np.uint8)
    img = np.repeat(shade[:, :, None], 3, axis=2)
    img[:, :, 2] = 255  # BGR (shade, shade, 255): white -> red
    i = np.arange(n)
    img[i, i, 0], img[i, i, 2] = 255, shade[i, i]  # diagonal (255, shade, shade): -> blue
    top, margin = 70, 10
    out = np.full((top + HEATMAP_SIDE + margin, HEATMAP_SIDE + 2 * margin, 3), 255, np.uint8)
    out[top : top + HEATMAP_SIDE, margin : margin + HEATMAP_SIDE] = cv2.resize(
        img, (HEATMAP_SIDE, HEATMAP_SIDE), interpolation=cv2.INTER_AREA
    )
    if title:
        _text(out, _shorten(title, 70), (margin, 25), 0.6)
    note = f"{n} classes (rows: true, columns: predicted); counts in the JSON report"
    _text(out, note, (margin, 55), 0.5)
    return out


def confusion_png(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str | os.PathLike, title: str = ""
) -> Path:
    """Draw the confusion matrix and write it as PNG atomically (temp file + os.replace)."""
    path = Path(path)
    img = render_confusion(matrix, labels, title=title)
    ok, buf = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover - OpenCV always encodes PNG
        raise RuntimeError("OpenCV could not encode the confusion matrix as PNG")
    write_bytes_atomic(path, buf.tobytes())
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` via a temp file in the same folder, so no half file is left."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"{path}: folder {folder} does not exist")
    try:
        write_atomic(path, data)
    except OSError as e:
        raise InputError(f"{path}: cannot write ({e.strerror or e})") from None
