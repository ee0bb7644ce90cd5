"""The inference graph every converter starts from.

A `tf.function` with an explicit `training=False` call, one float32 NHWC input named `image`
and one output named `probs`.  Both the TFLite converter and tf2onnx take it as is; going via
`from_keras`/SavedModel instead fails on Keras 3 Sequential models or keeps training-mode
branches (DESIGN, Known traps).
"""

from __future__ import annotations

from typing import Any

from edgecnn.runtime.contract import Contract

INPUT_NAME = "image"
OUTPUT_NAME = "probs"


def input_spec(contract: Contract) -> Any:
    import tensorflow as tf

    return tf.TensorSpec([None, *contract.input_shape], tf.float32, name=INPUT_NAME)


def inference_function(model: Any, contract: Contract) -> Any:
    """`image` (N,H,W,3 float32, raw 0..255) -> {"probs": (N, classes)} in inference mode."""
    import tensorflow as tf

    @tf.function(input_signature=[input_spec(contract)])
    def serve(image):
        return {OUTPUT_NAME: model(image, training=False)}

    return serve


def variables_holder(model: Any) -> Any:
    """A `tf.Module` tracking the model's underlying `tf.Variable`s.

    The TFLite converter freezes variables it can find through its `trackable_obj`; a Keras 3
    model (or a module holding it) does not expose them in a way the converter's internal
    SavedModel finds, and the result reads uninitialised variables (NaN outputs).  Holding
    the raw variables works and avoids the deprecated no-trackable conversion path.
    """
    import tensorflow as tf

    holder = tf.Module()
    holder.tf_variables = [getattr(v, "value", v) for v in model.variables]
    return holder
