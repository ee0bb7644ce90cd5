"""The architecture registry: each name, how to build it and the training defaults that suit it.

Every model takes raw 0..255 RGB float32 pixels and outputs softmax probabilities.  Scaling
lives inside each model (a `Rescaling` layer, or MobileNetV3's own preprocessing), so the
preprocessing contract is the same for every architecture and int8 calibration is fed raw
pixels.  No model contains augmentation layers: augmentation runs in the input pipeline
(`edgecnn.data`), so what is trained is what is exported.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from edgecnn.models.backbones import BACKBONES, IMAGENET, build_backbone, imagenet_file
from edgecnn.models.edge import build_edge
from edgecnn.models.seed import build_seed
from edgecnn.runtime.errors import InputError

MIN_IMG_SIZE = 32
PRECISIONS = ("float32", "mixed_bfloat16")


@dataclass(frozen=True, kw_only=True)
class Architecture:
    """A registered architecture: how to build it and the defaults that suit it."""

    name: str
    build: Callable[..., Any]  # (num_classes, img_size, *, weights) -> keras.Model
    img_size: int  # default input size (square)
    learning_rate: float
    weight_decay: float
    description: str
    epochs: int = 30  # default training length (early stopping may end it sooner)
    flip_tta: bool = False  # the saved model averages its predictions on x and mirrored x
    any_size: bool = False  # fully convolutional: the build accepts img_size=None (any size)
    training_graph: bool = False  # the build accepts training_graph=True (faster to fit)
    whiten_stem: bool = False  # training freezes a whitened stem (edgecnn.models.whiten)


def _backbone_architecture(name: str) -> Architecture:
    """A `keras.applications` backbone at 128 px (an ImageNet MobileNetV2 file exists for that
    size; the V3 files fit any size), Adam 1e-3 for the head while the backbone is frozen, then
    a tenth of it for fine-tuning (`edgecnn.transfer`)."""
    spec = BACKBONES[name]
    width = f" alpha {spec.alpha}" if spec.alpha != 1.0 else ""
    return Architecture(
        name=name,
        build=partial(build_backbone, name),
        img_size=128,
        learning_rate=1e-3,
        weight_decay=1e-5,
        description=f"keras.applications {spec.application}{width}"
        " (random start, --weights imagenet or a local file)",
    )


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture(
            name="seed",
            build=build_seed,
            img_size=64,
            learning_rate=1e-3,
            weight_decay=0.0,
            description="the seed's textbook convnet (baseline)",
            epochs=25,
        ),
        # AdamW with decoupled weight decay, one warm-up epoch then cosine decay
        # (edgecnn.training); how each default was chosen: docs/edge-recipe.md
        Architecture(
            name="edge",
            build=build_edge,
            img_size=88,
            learning_rate=2e-3,
            weight_decay=0.05,
            description="residual fused + depthwise-separable int8-friendly net",
            epochs=100,
            flip_tta=True,
            any_size=True,
            training_graph=True,
            whiten_stem=True,
        ),
        *(_backbone_architecture(name) for name in BACKBONES),
    )
}
DEFAULT_ARCH = "edge"


def get_architecture(arch: str) -> Architecture:
    """The registered architecture `arch`; InputError naming the choices otherwise."""
    try:
        return ARCHITECTURES[arch]
    except KeyError:
        raise InputError(
            f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}"
        ) from None


def resolve_train_size(arch: str, img_size: int, train_size: int | None = None) -> int:
    """The size training photos are decoded and augmented at, for a model run at `img_size`.

    `train_size` if given, else `img_size`.  Only a fully convolutional net (global pooling
    before the head) can train at one size and run at another.
    """
    size = img_size if train_size is None else int(train_size)
    if size == img_size:
        return size
    if not get_architecture(arch).any_size:
        raise InputError(f"--train-size: {arch} trains at its input size only ({img_size})")
    if not MIN_IMG_SIZE <= size <= img_size:
        raise InputError(
            f"--train-size must be between {MIN_IMG_SIZE} and the input size {img_size}, got {size}"
        )
    return size


def resolve_img_size(arch: str, img_size: int | None) -> int:
    """The input size to use: `img_size` if given (validated), else the architecture's default."""
    size = get_architecture(arch).img_size if img_size is None else int(img_size)
    if size < MIN_IMG_SIZE:
        raise InputError(f"--img-size must be at least {MIN_IMG_SIZE}, got {size}")
    return size


def build_model(
    arch: str,
    num_classes: int,
    img_size: int | None = None,
    *,
    weights: str | os.PathLike | None = None,
    precision: str = "float32",
    any_size: bool = False,
    training_graph: bool = False,
):
    """Build architecture `arch` for `num_classes` classes at `img_size` (default per arch).

    The model maps float32 (N, S, S, 3) raw 0..255 RGB pixels to (N, num_classes) softmax
    probabilities.  `weights` is an optional local weights file, or `"imagenet"` for the
    `keras.applications` backbones (Keras' cached ImageNet file, `edgecnn.imagenet`).
    `precision="mixed_bfloat16"` computes in bfloat16 with float32 variables and a float32
    softmax (faster training on CPUs with bf16 units); the weights then load unchanged into a
    float32 build for export.

    Example:
        >>> model = build_model("seed", 2)
        >>> model.input_shape, model.output_shape
        ((None, 64, 64, 3), (None, 2))
    """
    spec = get_architecture(arch)
    if num_classes < 2:
        raise InputError(f"a classifier needs at least 2 classes, got {num_classes}")
    size = resolve_img_size(arch, img_size)
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {list(PRECISIONS)}")
    if any_size and not spec.any_size:
        raise InputError(f"{arch} needs a fixed input size")
    if weights and os.fspath(weights) == IMAGENET:
        imagenet_file(arch, size)  # refuses an architecture without ImageNet weights
    extra = {"training_graph": True} if training_graph and spec.training_graph else {}
    with dtype_policy(precision):
        return spec.build(
            num_classes,
            None if any_size else size,
            weights=os.fspath(weights) if weights else None,
            **extra,
        )


@contextmanager
def dtype_policy(policy: str) -> Iterator[None]:
    """Build layers under the Keras dtype `policy` without leaving the global policy changed."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
