"""ONNX float32 export via tf2onnx `from_function` (input `image`, output `probs`).

tf2onnx can exit 0 with a model ONNX Runtime cannot load, so the model is checked with
`onnx.checker` and then loaded and run in ONNX Runtime before it is accepted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.runtime.contract import Contract

from ._graph import INPUT_NAME, OUTPUT_NAME, inference_function, input_spec

OPSET = 17
SCHEME = "float32 (tf2onnx, opset 17)"


def convert(model: Any, contract: Contract) -> Any:
    """The ONNX ModelProto of the Keras model, with named input/output, checked."""
    import onnx
    import tf2onnx

    fn = inference_function(model, contract)
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
    return proto


def check_loads(data: bytes, sample: np.ndarray) -> None:
    """Load the serialized model in ONNX Runtime and run one batch; raise if either fails."""
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (probs,) = session.run([OUTPUT_NAME], {INPUT_NAME: sample.astype(np.float32)})
    if probs.shape != (len(sample), probs.shape[1]) or not np.all(np.isfinite(probs)):
        raise RuntimeError(f"ONNX Runtime gave unusable output of shape {probs.shape}")


def opset(proto: Any) -> int:
    return max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
