"""ONNX float32 export via tf2onnx `from_function` (input `image`, output `probs`).

tf2onnx can exit 0 with a model ONNX Runtime cannot load, so the model is checked with
`onnx.checker` and then loaded and run in ONNX Runtime before it is accepted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from edgecnn.runtime.artifacts import by_name
from edgecnn.runtime.contract import Contract

from ._formats import Converted, Options, Source
from ._graph import INPUT_NAME, OUTPUT_NAME, inference_function, input_spec

OPSET = 17  # artifacts' scheme of "onnx" names it


def build(fmt: str, source: Source, options: Options) -> Converted:
    """The float ONNX file (the export's shared one, see `float_model`) and its description."""
    data = source.float_onnx()
    return Converted(data, {"scheme": by_name(fmt).scheme, **io_info(data)})


def float_model(
    model: Any, contract: Contract, check_inputs: np.ndarray
) -> tuple[bytes, list[str]]:
    """The float ONNX file with metadata, checked in ONNX Runtime on `check_inputs`; plus the
    notes of `convert`.  Both ONNX formats start from it."""
    from . import _metadata

    proto, notes = convert(model, contract)
    data = _metadata.add_onnx_metadata(proto, contract).SerializeToString()
    check_loads(data, check_inputs)
    return data, notes


def convert(model: Any, contract: Contract) -> tuple[Any, list[str]]:
    """The ONNX ModelProto of the Keras model, with named input/output, checked; plus notes.

    The notes are one line per graph optimisation tf2onnx gave up on.  tf2onnx catches those
    itself and keeps the graph as it was at that pass (the `edge` net's test-time line maps
    trip its transpose optimiser's Add handler on a scalar), but it logs each with a full
    traceback; the export reports them as one line each instead, and the verification that
    follows is what says whether the file is right.
    """
    import onnx
    import tf2onnx

    fn = inference_function(model, contract)
    with _optimizer_failures() as notes:
        proto, _ = tf2onnx.convert.from_function(
            fn, input_signature=[input_spec(contract)], opset=OPSET
        )
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise RuntimeError(
            f"tf2onnx named the graph {inputs} -> {outputs}, expected image -> probs"
        )
    onnx.checker.check_model(proto)
    return proto, notes


@contextmanager
def _optimizer_failures() -> Iterator[list[str]]:
    """Collect (and keep off stderr) the "Failed to apply <pass>" warnings of tf2onnx's optimiser."""
    logger = logging.getLogger("tf2onnx.optimizer")
    notes: list[str] = []

    def swallow(record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Failed to apply"):
            return True
        error = record.exc_info[1] if record.exc_info else None
        why = f" ({type(error).__name__}: {error})" if error is not None else ""
        note = f"tf2onnx skipped its {record.getMessage().removeprefix('Failed to apply ')}{why}"
        if note not in notes:
            notes.append(note)
        return False

    logger.addFilter(swallow)
    try:
        yield notes
    finally:
        logger.removeFilter(swallow)


def check_loads(data: bytes, sample: np.ndarray) -> None:
    """Load the serialized model in ONNX Runtime and run one batch; raise if either fails."""
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (probs,) = session.run([OUTPUT_NAME], {INPUT_NAME: sample.astype(np.float32)})
    if probs.shape != (len(sample), probs.shape[1]) or not np.all(np.isfinite(probs)):
        raise RuntimeError(f"ONNX Runtime gave unusable output of shape {probs.shape}")


def opset(proto: Any) -> int:
    return max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def io_info(data: bytes) -> dict[str, Any]:
    """What export.json records of an ONNX file: input and output, opset, node count."""
    import onnx

    proto = onnx.load_from_string(data)

    def describe(value) -> dict[str, Any]:
        t = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        return {
            "name": value.name,
            "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
            "shape": dims,
        }

    return {
        "input": describe(proto.graph.input[0]),
        "output": describe(proto.graph.output[0]),
        "opset": opset(proto),
        "nodes": len(proto.graph.node),
    }
