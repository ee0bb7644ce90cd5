"""Transfer learning: a pretrained backbone trains frozen first, then fine-tunes.

When a `keras.applications` backbone (`edgecnn.models.BACKBONES`: a nested model) starts from
`--weights imagenet` (Keras' ImageNet file, `edgecnn.imagenet`) or `--weights PATH` (a local
file), training runs in two phases:

1. frozen: the backbone is not trainable (its BatchNorm layers then run in inference mode, so
   the pretrained statistics are kept) and only the new head learns, at the recipe's learning
   rate.  A randomly initialised head would otherwise send large gradients into the backbone
   and wreck the features it is meant to reuse.
2. fine-tune: the backbone's weights train too, at `FINE_TUNE_LR_SCALE` x the scheduled
   learning rate, so it adapts gently to the new photos; its BatchNorm layers stay frozen, in
   inference mode, as the Keras transfer-learning guide advises.  A few hundred photos give
   batch statistics far noisier than ImageNet's, and a model that trains on batch statistics
   but answers with moving ones is not the model validation picked.  (The guide's way,
   `base_model(x, training=False)`, no longer holds in Keras 3: `fit` calls the whole model
   with `training=True` and that overrides the nested call's argument, keras-team/keras#20285;
   a BatchNormalization layer that is not trainable runs in inference mode in any case.)

Without weights (or for architectures without a backbone, where `--weights` is a whole-model
starting point) there is one phase and nothing is frozen.  Only `--weights imagenet` downloads,
and only when Keras' cache does not hold the file yet.
"""

from __future__ import annotations

from typing import Any

FINE_TUNE_LR_SCALE = 0.1
MAX_FROZEN_EPOCHS = 5


def backbone(model) -> Any | None:
    """The nested backbone model inside `model` (e.g. MobileNetV3Small), or None."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            return layer
    return None


def frozen_epochs(model, epochs: int, *, weights: str | None) -> int:
    """How many of `epochs` train with the backbone frozen: a third, at most
    MAX_FROZEN_EPOCHS, and 0 unless a weights file initialised a backbone (a random backbone
    has nothing worth protecting).  At least one epoch is always left for fine-tuning."""
    if not weights or epochs < 2 or backbone(model) is None:
        return 0
    return max(1, min(MAX_FROZEN_EPOCHS, epochs // 3))


def lr_scale(epoch: int, frozen: int) -> float:
    """Learning-rate multiplier for `epoch`: 1 while frozen (or without transfer), then
    FINE_TUNE_LR_SCALE."""
    return FINE_TUNE_LR_SCALE if frozen and epoch >= frozen else 1.0


def set_backbone_trainable(model, trainable: bool) -> bool:
    """Freeze or unfreeze the backbone, its BatchNorm layers excepted (they stay frozen: see the
    module docstring); True if that changed anything (then recompile, since Keras fixes the
    trainable variables when the train function is built)."""
    import keras

    net = backbone(model)
    if net is None or net.trainable == trainable:
        return False
    net.trainable = trainable
    if trainable:
        for layer in net.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    return True


def phases(start: int, epochs: int, frozen: int) -> list[tuple[int, int, bool]]:
    """(first epoch, end epoch, backbone trainable) for the phases still to run from `start`."""
    spans = [(0, frozen, False), (frozen, epochs, True)] if frozen else [(0, epochs, True)]
    return [(max(a, start), b, t) for a, b, t in spans if max(a, start) < b]
