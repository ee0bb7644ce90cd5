"""Shared by the commands that open a model file (predict, eval; run and bench may use it)."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgecnn.runtime import Classifier


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """MODEL, --backend and --threads, as predict and eval take them."""
    from edgecnn.runtime.backends import BACKEND_CHOICES

    parser.add_argument(
        "model", metavar="MODEL", help=".tflite, .onnx or .keras file, or a run directory"
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=BACKEND_CHOICES,
        help="inference backend (default: auto, by file type)",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")


def load_reporting_warnings(
    model: str, *, backend: str, threads: int | None, command: str
) -> Classifier:
    """`load`, with a missing-metadata warning printed as one `edgecnn CMD: warning:` line
    instead of Python's two-line warning format."""
    from edgecnn.runtime import load
    from edgecnn.runtime.classifier import MetadataWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetadataWarning)
        clf = load(model, backend=backend, threads=threads)
    for w in caught:
        if issubclass(w.category, MetadataWarning):
            print(f"edgecnn {command}: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return clf
