"""The `edge` architecture: a small residual net made to survive int8 and to learn from a few
thousand photos on a CPU.

Stem conv 7x7/2 (16 filters; training sets them to the photos' whitened 7x7 patch principal
components and freezes them: `edgecnn.models.whiten`), then a frozen 1x1 conv `[I, -I]`
(`stem_signs`: 32 channels, each component with both signs, so the ReLU6 after the stem's
BatchNorm keeps both), one "fused" residual stage of plain 3x3 convs (48, stride 2), two
depthwise-separable residual stages (128, 256, stride 2 each), global average pooling,
dropout 0.3, softmax, at 88x88.  Width, depth and input size are the knobs of `EdgeConfig`.

- Plain 3x3 convs where channels are few: they learn better there and TensorFlow trains them
  faster per MAC than depthwise ones on a CPU (cf. EfficientNetV2's Fused-MBConv);
  depthwise-separable blocks where channels are many, where they save most.
- BatchNorm (momentum 0.9, folded at export), ReLU6 (bounded ranges calibrate well), residual
  Adds and global average pooling all have int8 TFLite kernels: nothing falls back to float.

The size is what trains the default recipe within 15 minutes and runs under 3 ms int8 (both
test-time views, batch 1, 1 thread) on a 2-core CPU without AVX-512; the measurements behind
each choice, with their commands: docs/edge-recipe.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgecnn.models.weights import load_full_weights
from edgecnn.runtime.errors import InputError

# Keras' default 0.99 needs hundreds of steps before the moving statistics used at inference
# catch up; photo folders of a few thousand images give a few dozen steps an epoch.
BN_MOMENTUM = 0.9


@dataclass(frozen=True)
class EdgeConfig:
    """Shape of the `edge` net: stem conv, "fused" residual stages, then separable residual stages.

    Stages are `(filters, stride, repeats)`.  `fused` stages use plain 3x3 convolutions (the
    early, high-resolution layers, where a depthwise conv has too few channels to be either
    accurate or fast); `separable` stages use depthwise 3x3 + pointwise 1x1 pairs (the late,
    low-resolution, wide layers).  Wider or deeper stages or a larger input raise training time
    and latency (docs/edge-recipe.md, "Size").  `stem_kernel` is the stem's size, 7 for its
    whitening (`edgecnn.models.whiten`); `stem_signs` computes each stem filter once and passes
    it on with both signs through a frozen 1x1 conv (`sign_pairs`), where `False` gives a plain
    stem conv of all `stem` filters, each sign its own filter.
    """

    stem: int = 32
    stem_kernel: int = 7
    stem_signs: bool = True
    fused: tuple[tuple[int, int, int], ...] = ((48, 2, 1),)
    separable: tuple[tuple[int, int, int], ...] = ((128, 2, 1), (256, 2, 1))
    dropout: float = 0.3
    width: float = 1.0
    bn_momentum: float = BN_MOMENTUM

    def __post_init__(self) -> None:
        if self.width <= 0 or not 0.0 <= self.dropout < 1.0:
            raise InputError(f"EdgeConfig: width must be > 0 and dropout in [0, 1), got {self}")


def _filters(n: int, width: float) -> int:
    """Scale a filter count by `width`, rounded to a multiple of 8 (SIMD-friendly)."""
    return max(8, int(n * width + 4) // 8 * 8)


def sign_pairs(channels: int):
    """The `stem_signs` kernel `(1, 1, channels, 2 * channels)`: the stem conv's channels, then
    their negations (a frozen 1x1 conv, [I, -I]), so the ReLU after it keeps both signs of each
    component while the stem conv computes each component once.  At int8 a 1x1 conv is the
    cheapest way found to do this (docs/edge-recipe.md, "The stem")."""
    import numpy as np

    eye = np.eye(channels, dtype=np.float32)
    return np.concatenate([eye, -eye], axis=1)[None, None]


def build_edge(
    num_classes: int,
    img_size: int | None,
    *,
    weights: str | None = None,
    config: EdgeConfig | None = None,
    training_graph: bool = False,
):
    """The edge net (see the module docstring and `EdgeConfig`); `img_size=None`: any size.

    `training_graph=True` builds the same net, with the same weights in the same order, from
    the faster-to-train twins in `edgecnn._train_graph` (fused BatchNorm, strided depthwise
    convs as stride 1 + `EveryOther`): what `edgecnn.training` fits.  The model it saves is
    rebuilt with `training_graph=False`, from standard Keras layers only.

    Every block is Conv/DepthwiseConv (no bias) -> BatchNorm -> ReLU6, with identity (or 1x1
    strided projection) shortcuts added before the block's last ReLU6: BatchNorm folds into the
    convolutions at export, ReLU6 bounds every activation range for int8 calibration, and Add,
    global average pooling and the softmax head all have int8 TFLite kernels.
    """
    import keras
    from keras import layers

    cfg = config or EdgeConfig()
    batch_norm = layers.BatchNormalization
    if training_graph:
        from edgecnn import _train_graph

        batch_norm = _train_graph.FusedBatchNorm

    def bn(x, name):
        return batch_norm(momentum=cfg.bn_momentum, name=name)(x)

    def conv_bn(x, filters, kernel, stride, name, relu=True):
        x = layers.Conv2D(
            filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv"
        )(x)
        x = bn(x, f"{name}_bn")
        return layers.ReLU(6.0, name=f"{name}_relu")(x) if relu else x

    def dw_bn(x, stride, name):
        subsample = training_graph and stride == 2
        x = layers.DepthwiseConv2D(
            3, strides=1 if subsample else stride, padding="same", use_bias=False, name=f"{name}_dw"
        )(x)
        if subsample:
            x = _train_graph.EveryOther(name=f"{name}_dw_s2")(x)
        return bn(x, f"{name}_dw_bn")

    def residual(x, y, filters, stride, name):
        if stride != 1 or x.shape[-1] != filters:
            x = conv_bn(x, filters, 1, stride, f"{name}_proj", relu=False)
        return layers.ReLU(6.0, name=f"{name}_out")(layers.Add(name=f"{name}_add")([x, y]))

    def fused_block(x, filters, stride, name):
        y = conv_bn(x, filters, 3, stride, f"{name}_a")
        y = conv_bn(y, filters, 3, 1, f"{name}_b", relu=False)
        return residual(x, y, filters, stride, name)

    def separable_block(x, filters, stride, name):
        y = layers.ReLU(6.0, name=f"{name}_a_dw_relu")(dw_bn(x, stride, f"{name}_a"))
        y = conv_bn(y, filters, 1, 1, f"{name}_a_pw")
        y = conv_bn(dw_bn(y, 1, f"{name}_b"), filters, 1, 1, f"{name}_b_pw", relu=False)
        return residual(x, y, filters, stride, name)

    inputs = keras.Input((img_size, img_size, 3), name="pixels")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(inputs)
    stem = _filters(cfg.stem, cfg.width)
    if cfg.stem_signs:  # half the filters, each followed by itself and its negation
        x = layers.Conv2D(
            stem // 2, cfg.stem_kernel, strides=2, padding="same", use_bias=False, name="stem_conv"
        )(x)
        x = layers.Conv2D(stem, 1, use_bias=False, name="stem_signs")(x)
        x = layers.ReLU(6.0, name="stem_relu")(bn(x, "stem_bn"))
    else:
        x = conv_bn(x, stem, cfg.stem_kernel, 2, "stem")
    for kind, block, stages in (
        ("f", fused_block, cfg.fused),
        ("s", separable_block, cfg.separable),
    ):
        for s, (filters, stride, repeats) in enumerate(stages):
            for r in range(repeats):
                n = _filters(filters, cfg.width)
                x = block(x, n, stride if r == 0 else 1, f"{kind}{s}_{r}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if cfg.dropout:
        x = layers.Dropout(cfg.dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)
    model = keras.Model(inputs, outputs, name="edge")
    if cfg.stem_signs:
        signs = model.get_layer("stem_signs")
        signs.kernel.assign(sign_pairs(signs.kernel.shape[2]))
    load_full_weights(model, weights)
    return model
