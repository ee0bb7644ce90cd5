"""Figures and plain-text tables as every console line, report and Markdown file prints them.

    size(37_000)           '36.1 KB'    memory and files of any size (B, KB, MB, GB)
    file_size(37_000)      '36.1 KB'    a model file: KB below 1 MB, then MB with two decimals
    pct(0.9731)            '97.3%'
    ms(0.4567)             '0.457'      latency: three decimals below 1 ms, two above
    count(1_234_567)       '1.23M'      parameters, MACs
    duration(725)          '12 min'     an estimate of time: seconds below 90 s, then minutes
    table(header, rows)    columns two spaces apart, padded to the widest cell
    shown('a\x1b[2J.jpg')  'a\\x1b[2J.jpg'  text from files (names, paths) safe for one console line

Missing values (None) print as `empty` ("-" unless the caller's page uses another dash).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

_MB = 1024 * 1024
# Characters that would rewrite a terminal (ESC, CR, C1 controls such as CSI), reorder what it
# shows (bidirectional overrides), break a line (line and paragraph separators) or fail to encode
# (lone surrogates). Labels may not hold them; file names that do are shown escaped.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def unprintable(char: str) -> bool:
    """Whether `char` must not reach a console line as it is."""
    return char in _BIDI_CONTROLS or unicodedata.category(char) in _UNPRINTABLE_CATEGORIES


def shown(text: object) -> str:
    """`text` (a file name, a path, an error naming one) for one console line: every
    `unprintable` character as a Python escape (`\\n`, `\\x1b`, `\\u202e`), the rest as it is."""
    text = str(text)
    if not any(unprintable(c) for c in text):
        return text
    return "".join(
        c.encode("unicode_escape", "backslashreplace").decode("ascii") if unprintable(c) else c
        for c in text
    )


def size(n: float | None, *, empty: str = "-") -> str:
    """Bytes in the largest unit that keeps the figure at or above 1 (one decimal)."""
    if n is None:
        return empty
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def file_size(n: float | None, *, empty: str = "-", kb_digits: int = 1) -> str:
    """A model file's size: KB (`kb_digits` decimals) below 1 MB, else MB with two."""
    if n is None:
        return empty
    return f"{n / 1024:.{kb_digits}f} KB" if n < _MB else f"{n / _MB:.2f} MB"


def pct(value: float | None, digits: int = 1, *, empty: str = "-") -> str:
    """A share (0..1) as a percentage."""
    return empty if value is None else f"{100 * value:.{digits}f}%"


def ms(value: float | None, *, empty: str = "-") -> str:
    """Milliseconds with enough digits for sub-millisecond models."""
    if value is None:
        return empty
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def duration(seconds: float) -> str:
    """Seconds as precise as an estimate: '45 s' below 90 s, then whole minutes ('12 min')."""
    return f"{round(seconds)} s" if seconds < 90 else f"{round(seconds / 60)} min"


def count(n: int) -> str:
    """A large count (parameters, MACs) with a G/M/k suffix and two decimals."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def table(
    header: Sequence[object],
    rows: Sequence[Sequence[object]],
    *,
    left: int | None = None,
    rule: bool = False,
    markdown: bool = False,
) -> str:
    """Rows under a header, each column as wide as its widest cell, two spaces apart.

    Args:
        left: how many leading columns are left-aligned (the rest right-aligned);
            None: all of them.
        rule: a line of dashes under the header.
        markdown: a Markdown (pipe) table instead, unpadded.
    """
    cells = [[str(c) for c in r] for r in [header, *rows]]
    if markdown:
        lines = ["| " + " | ".join(cells[0]) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells[1:]])
    widths = [max(len(c) for c in column) for column in zip(*cells)]
    if rule:
        cells.insert(1, ["-" * w for w in widths])

    def line(row: list[str]) -> str:
        padded = (
            c.ljust(w) if left is None or i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths))
        )
        return "  ".join(padded).rstrip()

    return "\n".join(line(r) for r in cells)
