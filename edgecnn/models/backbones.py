"""The `keras.applications` MobileNets under edgecnn's head, from scratch or a weights file.

Every op in a MobileNet has an int8 TFLite kernel (ReLU6; V3's hard-swish and squeeze-excite
as ADD/RELU6/MUL and pooling).  No EfficientNet: its swish and squeeze-excite lose accuracy in
full-integer int8, which is why Google made EfficientNet-Lite for the edge, and Keras ships no
Lite weights.  A backbone starts from random initialisation (nothing downloads), from
`weights="imagenet"` (Keras' own ImageNet "no top" file, from its cache or downloaded once:
`edgecnn.imagenet`) or from a local weights file; with weights, `edgecnn.transfer` trains the
head on a frozen backbone first, then fine-tunes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from edgecnn.models.edge import BN_MOMENTUM
from edgecnn.models.weights import existing_file, load_or_refuse
from edgecnn.runtime.errors import InputError

IMAGENET = "imagenet"  # the --weights value that asks for Keras' ImageNet file


@dataclass(frozen=True)
class Backbone:
    """A `keras.applications` backbone under edgecnn's head (dropout 0.2, softmax).

    `own_scaling`: the application scales 0..255 pixels itself (MobileNetV3's
    `include_preprocessing`); otherwise a `Rescaling` to -1..1 goes in front of it, so every
    edgecnn model takes raw 0..255 pixels, as the preprocessing contract and int8 calibration
    expect.
    """

    application: str  # the keras.applications class, e.g. "MobileNetV3Small"
    alpha: float = 1.0
    own_scaling: bool = True

    def imagenet_file(self, img_size: int):
        """The Keras ImageNet "no top" file for this backbone at `img_size` (`edgecnn.imagenet`)."""
        from edgecnn import imagenet

        return imagenet.weights_file(self.application, alpha=self.alpha, img_size=img_size)


BACKBONES: dict[str, Backbone] = {
    "mobilenetv3small": Backbone("MobileNetV3Small"),
    "mobilenetv3large": Backbone("MobileNetV3Large"),
    "mobilenetv2": Backbone("MobileNetV2", own_scaling=False),
    "mobilenetv2-0.35": Backbone("MobileNetV2", alpha=0.35, own_scaling=False),
}


def build_backbone(
    arch: str, num_classes: int, img_size: int, *, weights: str | os.PathLike | None = None
):
    """`BACKBONES[arch]` (its scaling in front where it has none) + dropout 0.2 + softmax.

    `weights` is `"imagenet"` (Keras' ImageNet "no top" file, from its cache or downloaded
    once: `edgecnn.imagenet`), a local weights file for the backbone, or None (random
    initialisation; nothing downloads).  `edgecnn.transfer` decides what trains when.
    """
    import keras
    from keras import layers

    spec = BACKBONES[arch]
    path = _backbone_weights(arch, img_size, weights)
    options = {"include_preprocessing": True} if spec.own_scaling else {}
    inputs = keras.Input((img_size, img_size, 3), name="pixels")
    x = inputs
    if not spec.own_scaling:
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(x)
    backbone = getattr(keras.applications, spec.application)(
        input_shape=(img_size, img_size, 3),
        alpha=spec.alpha,
        include_top=False,
        weights=None,
        pooling="avg",
        **options,
    )
    if path:
        load_or_refuse(lambda: backbone.load_weights(path), f"{weights}: cannot load into {arch}")
    else:
        _track_batch_statistics(backbone)
    x = backbone(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name=arch)


def _track_batch_statistics(backbone) -> None:
    """Let a randomly initialised backbone's BatchNorm statistics follow the data (momentum
    `BN_MOMENTUM`, as in `edge`).

    `keras.applications` builds the MobileNets with momentum 0.999, made for fine-tuning
    ImageNet statistics over many thousands of steps.  From scratch on a few thousand photos
    (a few hundred steps) the moving averages stay near their initial values, so the trained
    model answers one class for every photo at inference (MobileNetV3 Small on 1,600
    cats-vs-dogs photos, 8 epochs: 60% training accuracy, 50.0% validation, one class).
    """
    from keras import layers

    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM


def _backbone_weights(arch: str, img_size: int, weights: str | os.PathLike | None) -> str | None:
    """The local file to load into the backbone: Keras' ImageNet file or the user's own."""
    if not weights:
        return None
    if os.fspath(weights) == IMAGENET:
        from edgecnn import imagenet

        return str(imagenet.fetch(BACKBONES[arch].imagenet_file(img_size)))
    return existing_file(weights)


def imagenet_file(arch: str, img_size: int):
    """The ImageNet file `--weights imagenet` loads for `arch` at `img_size`; InputError for an
    architecture without one (edge and seed are trained from scratch)."""
    if arch not in BACKBONES:
        raise InputError(
            f"--weights imagenet: {arch} has no ImageNet weights; choose --arch "
            f"{' or '.join(BACKBONES)} (or pass a weights file)"
        )
    return BACKBONES[arch].imagenet_file(img_size)
