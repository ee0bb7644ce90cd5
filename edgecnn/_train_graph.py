"""Training-graph twins of two Keras layers: the same maths and weights, ~45% less CPU per step.

`edgecnn.models.edge.build_edge(..., training_graph=True)` builds the `edge` net with these; the
saved and exported model is always rebuilt from standard Keras layers and given the trained
weights (`edgecnn.training`), so nothing here reaches a `.keras`, TFLite or ONNX file.

Why, measured with `ONEDNN_VERBOSE=1` on a 2-core EPYC (Zen 4, TF 2.21, mixed bfloat16, the
`edge` net at 96 px, batch 32):

- Keras 3's `BatchNormalization` is unfused on TensorFlow: a float32 cast, `tf.nn.moments`,
  then the normalisation as separate element-wise ops, each a pass over the activation in
  both directions.  `FusedBatchNorm` calls TensorFlow's `FusedBatchNormV3` (one oneDNN
  kernel forward, one backward) instead.  Removing every BatchNorm cut a train epoch by ~20%.
- oneDNN's backward-data kernel for a *strided* depthwise convolution (`brgconv_strided` on
  grouped convs) ran at ~0.5 GFLOP/s: the two stride-2 depthwise convs of the separable
  stages took ~20% of the step for ~3% of its MACs.  A stride-1 depthwise conv followed by
  `EveryOther` (keep every second row and column, on the stride-2 "same" sampling grid) gives
  identical outputs from the identical kernel and uses the fast stride-1 kernels.

Together (`benchmarks/train_graph.py`, median of 3 interleaved repeats): an epoch of 2,048
images took 17.4 CPU-seconds (10.2 s wall) with the standard graph and 9.5 (5.1 s wall) with
this one under mixed bfloat16, and 16.7 vs 14.3 in float32, with predictions equal to
rounding.  An epoch of `edgecnn train` with the default recipe on 2,000 cats-vs-dogs photos
(1,000 validated, 2 threads, `--seed 1`) went from 10.3 to 7.0 s wall (median of two runs).
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="edgecnn")
class FusedBatchNorm(keras.layers.BatchNormalization):
    """`BatchNormalization` computed with TensorFlow's fused kernel (NHWC, channel axis last).

    Same variables, same outputs and the same moving-statistics update as the Keras layer
    (Keras averages the biased batch variance; the fused op returns the unbiased one, so it is
    rescaled).  Anything else (masks, renorm, other axes or ranks) falls back to the Keras code.
    """

    def _fusable(self, inputs, mask) -> bool:
        rank = len(inputs.shape)
        return (
            mask is None
            and rank == 4
            and self.axis in (-1, rank - 1)
            and self.center
            and self.scale
            and not getattr(self, "renorm", False)  # Keras < 3.14 has no renorm
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        gamma = tf.cast(self.gamma, tf.float32)
        beta = tf.cast(self.beta, tf.float32)
        if training and self.trainable:
            y, mean, var = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True
            )
            n = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], tf.float32)
            var = var * (n - 1.0) / tf.maximum(n, 2.0)  # unbiased -> biased, as Keras
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m + var * (1.0 - m))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs,
                gamma,
                beta,
                mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32),
                epsilon=self.epsilon,
                data_format="NHWC",
                is_training=False,
            )
        return tf.cast(y, self.compute_dtype)


@keras.saving.register_keras_serializable(package="edgecnn")
class EveryOther(keras.layers.Layer):
    """Every second row and column of an NHWC tensor, on the grid a stride-2 "same" conv samples.

    TensorFlow pads a stride-2, 3x3 "same" convolution by `(0, 1)` on an even side and `(1, 1)`
    on an odd one, so its output `i` is centred on input `2i + 1` (even) or `2i` (odd):
    `EveryOther(conv_stride1(x)) == conv_stride2(x)` for the same kernel, at any input size.
    """

    def call(self, x):
        shape = tf.shape(x)
        return x[:, 1 - shape[1] % 2 :: 2, 1 - shape[2] % 2 :: 2]

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        half = lambda s: None if s is None else (s + 1) // 2  # noqa: E731
        return (n, half(h), half(w), c)
