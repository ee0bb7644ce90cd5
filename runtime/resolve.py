"""MODEL arguments: a model file, or a run directory standing for the best artifact in it."""

from __future__ import annotations

import os
from pathlib import Path

from .artifacts import RUN_ORDER
from .backends import BACKENDS, get_backend, installed_backends
from .errors import InputError
from .metadata import MODEL_SUFFIXES, model_kind


def _candidates(backend: str) -> tuple[str, ...]:
    """RUN_ORDER, limited to the files `backend` runs (all of it for `auto`)."""
    if backend not in BACKENDS:
        return RUN_ORDER
    kinds = get_backend(backend).kinds
    return tuple(rel for rel in RUN_ORDER if model_kind(rel) in kinds)


def resolve_model(path: str | os.PathLike, *, backend: str = "auto") -> Path:
    """The model file `path` names: the file itself, or for a run directory its best artifact
    (the first of `artifacts.RUN_ORDER` that is there: int8 TFLite, else fp32 TFLite, else
    ONNX, ...; limited to what `backend` runs).

    With `backend="auto"` the best artifact that an installed backend can run wins, so a device
    with only onnxruntime gets the run's `model.onnx` rather than an error about LiteRT; when
    nothing installed runs any of them, the best artifact is returned (loading it then names
    the pip extra to install).

    Raises InputError for a missing path, an unknown extension or a directory with no model.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_file():
        model_kind(path)  # validates the extension
        return path
    candidates = _candidates(backend)
    # a run dir, or its export/ folder given directly
    found = [c for rel in candidates for c in (path / rel, path / Path(rel).name) if c.is_file()]
    if found:
        runnable = (
            [p for p in found if installed_backends(model_kind(p))] if backend == "auto" else found
        )
        return (runnable or found)[0]
    expected = ", ".join(candidates)
    raise InputError(
        f"{path}: no model file found in this directory (expected one of {expected}; "
        f"or pass a {'/'.join(MODEL_SUFFIXES)} file)"
    )
