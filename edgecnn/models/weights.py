"""Loading a weights file into a freshly built model, with one clear line when it does not fit."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path

from edgecnn.runtime.errors import InputError, first_line


def existing_file(weights: str | os.PathLike) -> str:
    """`weights` as a string path; InputError when no such file exists."""
    path = Path(weights)
    if not path.is_file():
        raise InputError(f"{path}: weights file not found")
    return str(path)


def load_error(e: BaseException) -> str:
    """Keras' load error in one line: how many layers failed and the first one's shapes.

    Keras 3 reports a file of another architecture as "A total of N objects could not be
    loaded. Example error message for object …:" followed by a shape message and the whole
    target variable printed as an array; the first line alone ends in that colon.
    """
    text = str(e)
    total = re.match(r"\s*A total of (\d+) objects could not be loaded", text)
    shapes = re.search(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))", text)
    if not (total and shapes):
        return first_line(e)
    name = re.search(r"Target variable: <Variable path=([^,>]+)", text)
    where = f"{name.group(1)}: " if name else ""
    return (
        f"{total.group(1)} layers could not be loaded; the first, {where}"
        f"shape {shapes.group(2)} in the file, {shapes.group(1)} in the model"
    )


def load_or_refuse(load: Callable[[], object], what: str) -> None:
    """Run `load`; a Keras load error becomes `InputError("{what} (reason)")` in one line.

    Keras warns once per layer it skips before it raises for a file of another architecture;
    those warnings are shown only when the load succeeds, so a refusal stays one line.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            load()
        except (ValueError, OSError) as e:
            raise InputError(f"{what} ({load_error(e)})") from None
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def load_full_weights(model, weights: str | None) -> None:
    """Load a whole-model weights file (`.weights.h5`, or a `.keras` of the same architecture)."""
    if not weights:
        return
    path = existing_file(weights)

    def load() -> None:
        if path.endswith(".keras"):
            import keras

            model.set_weights(keras.models.load_model(path, compile=False).get_weights())
        else:
            model.load_weights(path)

    load_or_refuse(load, f"{weights}: does not fit architecture {model.name!r}")
