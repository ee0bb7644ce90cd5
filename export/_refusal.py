"""The one line that says why an exported file was refused and what the user can do about it.

    model_int8.tflite refused: accuracy 71.2% vs Keras 84.0% (−12.8 ± 2.1 points, −4.2
    allowed), after per-channel and per-tensor weights with 300, 600 and 1200 calibration
    images; try --calib DIR with more photos of every class, or train longer

(one line on the console): the first failed check, what was tried, what to do.  Every figure
behind it, for every candidate, is in export.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# the failed criteria a message names first: what the user notices first in the file's answers
_ORDER = (
    "finite_outputs",
    "accuracy_change",
    "dominant_class",
    "lost_classes",
    "confident_agreement",
    "probability_shift",
    "agreement",
    "max_abs_diff",
)


def closest(tried: Sequence[Any]) -> Any:
    """The refused candidate nearest to passing: the fewest failed criteria, then the smallest
    accuracy drop; on a tie the later (more remedied) one."""

    def rank(i_built: tuple[int, Any]) -> tuple:
        i, built = i_built
        failed = built.parity.failures()
        return (-len(failed), built.parity.accuracy, i)

    return max(enumerate(tried), key=rank)[1]


def message(
    name: str,
    parity: Any,
    *,
    fmt: str,
    tried: Sequence[tuple[str, int]] = (),
    calibration_left: bool = False,
) -> str:
    """`NAME refused: what broke [after what was tried]; what to do`, on one line.

    Args:
        name: the file name the artifact would have had.
        parity: the refused candidate's `_verify.Parity`.
        fmt: its format (the advice differs for float, drq and int8 files).
        tried: int8 only: (weight scheme, calibration images) of every candidate built.
        calibration_left: the calibration folder holds more images than the last sample used.
    """
    failed = sorted(parity.failures(), key=lambda c: _ORDER.index(c.name))
    what = failed[0].says
    if len(failed) > 1:
        more = len(failed) - 1
        what += f" and {more} more failed check{'s' if more > 1 else ''} (export.json)"
    return f"{name} refused: {what}{_after(tried)}; {_advice(fmt, tried, calibration_left)}"


def _after(tried: Sequence[tuple[str, int]]) -> str:
    if not tried:
        return ""
    schemes = list(dict.fromkeys(w for w, _ in tried))
    counts = [str(n) for n in dict.fromkeys(n for _, n in tried)]
    return (
        f", after {_and(schemes)} weights with {_and(counts)} calibration image"
        f"{'s' if counts != ['1'] else ''}"
    )


def _advice(fmt: str, tried: Sequence[tuple[str, int]], calibration_left: bool) -> str:
    if fmt == "tflite-drq":
        return "its int8 weights do not hold this model: use model_fp16.tflite instead"
    if not tried:
        return "a float file must match Keras: please report this with export.json"
    options = []
    if {w for w, _ in tried} == {"per-tensor"}:
        options.append("--int8-weights per-channel")
    if calibration_left:
        options.append("a larger --calib-count")
    options.append("--calib DIR with more photos of every class")
    return f"try {', '.join(options)}, or train longer"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
