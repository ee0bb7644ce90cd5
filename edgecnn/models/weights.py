"""Loading a weights file into a freshly built model, with one clear line when it does not fit."""

from __future__ import annotations

import os
from pathlib import Path

from edgecnn.runtime.errors import InputError


def existing_file(weights: str | os.PathLike) -> str:
    """`weights` as a string path; InputError when no such file exists."""
    path = Path(weights)
    if not path.is_file():
        raise InputError(f"{path}: weights file not found")
    return str(path)


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (Keras' load errors run to many lines)."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def load_full_weights(model, weights: str | None) -> None:
    """Load a whole-model weights file (`.weights.h5`, or a `.keras` of the same architecture)."""
    if not weights:
        return
    path = existing_file(weights)
    try:
        if path.endswith(".keras"):
            import keras

            model.set_weights(keras.models.load_model(path, compile=False).get_weights())
        else:
            model.load_weights(path)
    except (ValueError, OSError) as e:
        raise InputError(
            f"{weights}: does not fit architecture {model.name!r} ({first_line(e)})"
        ) from None
