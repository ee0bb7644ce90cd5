"""What is being exported: a run directory or a `.keras` file, its contract, and the Keras model.

Everything the user can get wrong about the source is checked here, before any file is written:
a path that is no run/model, a corrupt archive, a model without labels, a model whose input or
output does not match its contract, and augmentation layers that must never reach an exported
graph (DESIGN, Known traps).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.runtime.contract import Contract
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.metadata import CONTRACT_FILE, read_contract

MODEL_FILE = "model.keras"
EXPORT_DIR = "export"

# Keras 3 augmentation layers that are not named Random*: random at training time, and either
# unconvertible or silently wrong in a converted graph.
_AUGMENTATION_LAYERS = frozenset(
    {"RandAugment", "AugMix", "CutMix", "MixUp", "Solarization", "GaussianNoise"}
)


@dataclass(frozen=True)
class Source:
    """A resolved export source: the `.keras` file, its contract and where artifacts go."""

    model_path: Path
    contract: Contract
    out_dir: Path
    run_dir: Path | None


def resolve(path: str | os.PathLike) -> Source:
    """Find the Keras model and its contract for a run directory or a `.keras` file."""
    path = Path(path)
    if path.is_dir():
        model_path = path / MODEL_FILE
        if not model_path.is_file():
            raise InputError(
                f"{path}: not a run directory (no {MODEL_FILE}); pass a run folder "
                "written by `edgecnn train` or a .keras file"
            )
        run_dir: Path | None = path
    elif path.is_file():
        if path.suffix.lower() != ".keras":
            raise InputError(
                f"{path}: cannot export a {path.suffix or 'extension-less'} file; "
                "pass a run directory or a .keras model"
            )
        model_path = path
        run_dir = path.parent if (path.parent / CONTRACT_FILE).is_file() else None
    else:
        raise InputError(f"{path}: no such run directory or model file")
    if not zipfile.is_zipfile(model_path):
        raise InputError(f"{model_path}: not a valid .keras archive (corrupt or truncated)")
    contract = read_contract(model_path)
    if contract is None:
        raise InputError(
            f"{model_path}: carries no {CONTRACT_FILE} (labels and preprocessing) and none "
            "lies beside it; export needs the contract that `edgecnn train` writes"
        )
    return Source(model_path, contract, model_path.parent / EXPORT_DIR, run_dir)


def load_keras(source: Source) -> Any:
    """Load the Keras model for inference and check it can be exported as the contract says."""
    import keras

    try:
        model = keras.models.load_model(source.model_path, compile=False)
    except Exception as e:  # Keras raises many types for corrupt or foreign archives
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{source.model_path}: cannot load the Keras model ({reason})") from None
    check_exportable(model, source.contract, source=str(source.model_path))
    return model


def check_exportable(model: Any, contract: Contract, *, source: str) -> None:
    """Refuse augmentation layers and an input/output that disagrees with the contract."""
    augment = [
        f"{layer.name} ({type(layer).__name__})"
        for layer in iter_layers(model)
        if type(layer).__name__.startswith("Random") or type(layer).__name__ in _AUGMENTATION_LAYERS
    ]
    if augment:
        raise InputError(
            f"{source}: contains augmentation layer(s) {', '.join(augment)}; export an "
            "inference model without them (edgecnn train saves one)"
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise InputError(
            f"{source}: expected one image input and one output, got "
            f"{len(model.inputs)} input(s) and {len(model.outputs)} output(s)"
        )
    in_shape = tuple(model.inputs[0].shape[1:])
    if in_shape != contract.input_shape:
        raise InputError(
            f"{source}: model input shape {in_shape} does not match the contract "
            f"{contract.input_shape}"
        )
    out_shape = tuple(model.outputs[0].shape[1:])
    if out_shape != (contract.num_classes,):
        raise InputError(
            f"{source}: model output shape {out_shape} does not match the "
            f"{contract.num_classes} labels of its contract"
        )


def iter_layers(model: Any):
    """Every layer, including those inside nested models."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from iter_layers(layer)
