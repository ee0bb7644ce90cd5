"""Shared by the commands that open a model file (predict, eval; run and bench may use it)."""

from __future__ import annotations

import sys
import warnings

from edgecnn.runtime import Classifier, load
from edgecnn.runtime.classifier import MetadataWarning


def load_reporting_warnings(
    model: str, *, backend: str, threads: int | None, command: str
) -> Classifier:
    """`load`, with a missing-metadata warning printed as one `edgecnn CMD: warning:` line
    instead of Python's two-line warning format."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetadataWarning)
        clf = load(model, backend=backend, threads=threads)
    for w in caught:
        if issubclass(w.category, MetadataWarning):
            print(f"edgecnn {command}: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return clf
