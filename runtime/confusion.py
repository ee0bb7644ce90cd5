"""The class pairs a classifier mixes up most, read off its confusion matrix (numpy only).

With more than a handful of classes the confusion matrix stops being readable, and the question
behind it is short: which of my classes does the model take for which?  `confused_pairs` answers
it with every unordered pair {a, b} scored by its images of `a` predicted as `b` plus those of
`b` predicted as `a`, the largest first; `format_pairs` makes the one line the console prints
(`siamese <-> birman (7), ...`).  Training writes both directions and each one's share of its
true class into `metrics.json`; any report holding a `confusion_matrix` and `labels` (such as
`edgecnn.runtime.evaluate`'s) can be summarised the same way.

    >>> cm = [[8, 2, 0], [3, 7, 0], [0, 1, 9]]
    >>> format_pairs(confused_pairs(cm, ["siamese", "birman", "persian"]))
    'birman <-> siamese (5), persian <-> birman (1)'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InputError

TOP_PAIRS = 5  # pairs listed by default: enough to act on, short enough for one console line


def confused_pairs(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], *, top: int = TOP_PAIRS
) -> list[dict[str, Any]]:
    """The `top` class pairs with the most confusions in `matrix` (rows true, columns predicted).

    Each pair is a dict: `a` and `b` (class names; `a` is the one more often taken for the
    other), `count` (both directions summed), `a_as_b` and `b_as_a` (each direction's count),
    `a_share` and `b_share` (each direction's count over its true class's images).  Pairs never
    confused are left out, so a perfect matrix gives `[]`.  Ties go to the pair with the larger
    share, then to class order, so the list is reproducible.
    """
    cm = np.asarray(matrix, dtype=np.int64)
    n = len(labels)
    if cm.shape != (n, n):
        raise InputError(f"confusion matrix of shape {cm.shape} does not fit {n} labels")
    if top < 1:
        raise InputError(f"top must be at least 1, got {top}")
    support = cm.sum(axis=1)
    share = np.divide(cm, support[:, None], out=np.zeros(cm.shape), where=support[:, None] > 0)
    rows, cols = np.triu_indices(n, k=1)
    counts = cm[rows, cols] + cm[cols, rows]
    worst = np.maximum(share[rows, cols], share[cols, rows])
    order = np.lexsort((cols, rows, -worst, -counts))  # last key first: count, share, order
    pairs = []
    for k in order[:top]:
        if counts[k] == 0:
            break
        i, j = int(rows[k]), int(cols[k])
        if cm[j, i] > cm[i, j]:
            i, j = j, i
        pairs.append(_pair(cm, share, labels, i, j))
    return pairs


def _pair(cm: np.ndarray, share: np.ndarray, labels: Sequence[str], i: int, j: int) -> dict:
    return {
        "a": str(labels[i]),
        "b": str(labels[j]),
        "count": int(cm[i, j] + cm[j, i]),
        "a_as_b": int(cm[i, j]),
        "b_as_a": int(cm[j, i]),
        "a_share": round(float(share[i, j]), 4),
        "b_share": round(float(share[j, i]), 4),
    }


def format_pairs(pairs: Sequence[dict[str, Any]]) -> str:
    """`a <-> b (count), ...` for `confused_pairs`' output; `none` when nothing was confused."""
    if not pairs:
        return "none"
    return ", ".join(f"{p['a']} <-> {p['b']} ({p['count']})" for p in pairs)
