"""The architecture registry: every model takes raw 0..255 RGB float32 pixels, outputs softmax.

Scaling lives inside each model (a `Rescaling` layer, or MobileNetV3's own preprocessing), so
the preprocessing contract is the same for every architecture and int8 calibration is fed raw
pixels.  No model contains augmentation layers: augmentation runs in the input pipeline
(`edgecnn.data`), so what is trained is what is exported.

    from edgecnn.models import ARCHITECTURES, build_model
    model = build_model("edge", num_classes=2)               # default input size for the arch
    model = build_model("seed", num_classes=5, img_size=96)   # --img-size overrides any arch

Architectures:

- `seed`: the textbook convnet this project started from, layer for layer (Conv32 3x3 + MaxPool
  twice, Flatten, Dense 128, softmax over N classes), at 64x64.  The baseline to beat.
- `edge` (default): a small residual net made to survive int8 and to learn from a few thousand
  photos on a CPU.  Stem conv 7x7/2 (16 filters; training sets them to the photos' whitened
  7x7 patch principal components and freezes them, `set_whitened_stem`), then a frozen 1x1
  conv `[I, -I]` (`stem_signs`: 32 channels, each component with both signs, so the ReLU6
  after the stem's BatchNorm keeps both), one "fused" residual stage of plain 3x3 convs (64,
  stride 2), two depthwise-separable residual stages (128, 256, stride 2 each), global average
  pooling, dropout 0.3, softmax, at 80x80: ~238k parameters, ~34.2M MACs.  The saved model
  averages it over the photo's centre 85% and that centre's mirror image (`with_flip_tta`:
  ~73M MACs, ~2.7 ms int8 at 1 thread on a 2-core EPYC without AVX-512).  Plain 3x3 convs
  where channels are few (they learn better there and TensorFlow trains them ~2x faster per
  MAC than depthwise ones on a CPU, cf. EfficientNetV2's Fused-MBConv), depthwise-separable
  blocks where channels are many.  BatchNorm (momentum 0.9, folded at export), ReLU6
  (bounded ranges calibrate well), residual Adds and GAP all have int8 TFLite kernels;
  nothing falls back to float.  Width, depth and input size are the knobs of `EdgeConfig`.
  The recipe (`ARCHITECTURES["edge"]` + `edgecnn.training` + `edgecnn.data.Augment`): AdamW
  lr 2e-3 with decoupled weight decay 0.05, one warm-up epoch then cosine decay, batch 32,
  60 epochs with early stopping (patience 10, counted over the last quarter of the schedule
  only, see `edgecnn.training.EARLY_STOP_FROM`) keeping the best validation epoch of the
  model as saved, with its two views;
  augmentation in the input pipeline (flip, zoom/crop up to 20%, rotation +-12 deg, shift 8%,
  brightness/contrast/saturation jitter).  `edgecnn.training` fits the net through
  `build_edge(training_graph=True)` (fused BatchNorm, stride-1 depthwise + `EveryOther`;
  `edgecnn._train_graph`): same weights and outputs, less CPU.
  Why this size: it trains the 60-epoch recipe within 15 minutes and runs under 3 ms int8 (two
  views, 1 thread) on a 2-core CPU without AVX-512, where TensorFlow trains in float32 on AVX2
  and LiteRT's int8 kernels are ~5x slower than with AVX-512 VNNI.  The figures behind each
  choice (size, stem, views, recipe), with their commands: docs/edge-recipe.md.
- `mobilenetv3small`, `mobilenetv3large`, `mobilenetv2`, `mobilenetv2-0.35`: the
  `keras.applications` MobileNets (`BACKBONES`) under a dropout + softmax head, at 128x128.
  They start from random initialisation (nothing downloads), from `weights="imagenet"` (Keras'
  own ImageNet "no top" file, from its cache or downloaded once: `edgecnn.imagenet`) or from a
  local weights file; with weights, `edgecnn.transfer` trains the head on a frozen backbone
  first, then fine-tunes.  MobileNets because every op in them has an int8 TFLite kernel
  (ReLU6; V3's hard-swish and squeeze-excite as ADD/RELU6/MUL and pooling).  No EfficientNet:
  its swish and squeeze-excite lose accuracy in full-integer int8, which is why Google made
  EfficientNet-Lite for the edge, and Keras ships no Lite weights.

Keras/TensorFlow are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from edgecnn.runtime.errors import InputError

MIN_IMG_SIZE = 32
# Keras' default 0.99 needs hundreds of steps before the moving statistics used at inference
# catch up; photo folders of a few thousand images give a few dozen steps an epoch.
BN_MOMENTUM = 0.9
# The saved model's test-time view: the centre 85% of the photo (see `with_flip_tta`).  Chosen
# on a validation split of the training photos, never the test ones: over eight trained nets,
# centre crops of 80/85/90/95% + mirror beat the whole photo + mirror by +1.5/+1.5/+1.4/+1.4
# points on average (85%: better on 7 of 8 nets, tied on one).
TTA_CROP = 0.85


@dataclass(frozen=True)
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
    whiten_stem: bool = False  # training freezes a whitened stem (set_whitened_stem)


@dataclass(frozen=True)
class EdgeConfig:
    """Shape of the `edge` net: stem conv, "fused" residual stages, then separable residual stages.

    Stages are `(filters, stride, repeats)`.  `fused` stages use plain 3x3 convolutions (the
    early, high-resolution layers, where a depthwise conv has too few channels to be either
    accurate or fast, cf. EfficientNetV2's Fused-MBConv); `separable` stages use depthwise 3x3 +
    pointwise 1x1 pairs (the late, low-resolution, wide layers, where they save most).  Wider or
    deeper stages or a larger input raise training time and latency; on 2,000 cats-vs-dogs
    photos none of those tried raised accuracy beyond the noise (README).  `stem_kernel` is the
    stem's size, 7 for its whitening (`set_whitened_stem`); `stem_signs` computes each stem
    filter once and passes it on with both signs through a frozen 1x1 conv (`sign_pairs`), where
    `False` gives a plain stem conv of all `stem` filters, each sign its own filter.
    """

    stem: int = 32
    stem_kernel: int = 7
    stem_signs: bool = True
    fused: tuple[tuple[int, int, int], ...] = ((64, 2, 1),)
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


def build_seed(num_classes: int, img_size: int, *, weights: str | None = None):
    """The seed convnet, layer for layer, with the sigmoid head generalised to N-way softmax."""
    import keras
    from keras import layers

    model = keras.Sequential(
        [
            keras.Input((img_size, img_size, 3), name="pixels"),
            layers.Rescaling(1.0 / 255, name="scale"),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs"),
        ],
        name="seed",
    )
    _load_full_weights(model, weights)
    return model


def build_edge(
    num_classes: int,
    img_size: int | None,
    *,
    weights: str | None = None,
    config: EdgeConfig | None = None,
    training_graph: bool = False,
):
    """The default edge net (see the module docstring and `EdgeConfig`); `img_size=None`: any size.

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
    _load_full_weights(model, weights)
    return model


def with_flip_tta(model, crop: float = TTA_CROP, *, input_shape: tuple | None = None):
    """`model` averaged over the photo's centre and its mirror image: `(f(v) + f(flip(v))) / 2`.

    `v` is the centre `crop` of the photo (each side trimmed by `(1 - crop) / 2`) scaled back to
    the model's input size; `crop=1` uses the whole photo.  Test-time augmentation baked into
    the graph, so every exported file and every runtime gets it, for twice the inference cost
    and nothing in training:

    - the mirror: a cat seen in a mirror is still a cat, and averaging both views removes part
      of the model's left/right noise;
    - the centre crop: `Augment`'s zoom trains on views cropped in by 0-20% (10% on average,
      and rotation trims the corners further), so the whole photo shows every animal smaller
      than the net saw it in training (the train/test object-size discrepancy of Touvron et
      al., "Fixing the train-test resolution discrepancy", 2019); the centre crop
      (`TTA_CROP`) matches.

    Built from standard layers only, so the `.keras` file loads anywhere, and every op has an
    int8 TFLite kernel: cropping, bilinear zoom and mirror are fixed linear maps along the
    height and the width, each a frozen 1x1 convolution between two `Permute`s (exact in float;
    about 7% of the default net's MACs with its two views).  Not Keras' `Resizing` layer, whose
    call defaults to `training=True` and leaks it into the BatchNormalization layers after it
    whenever the model is called without a `training` argument.  The trained model is called on
    both views with shared weights.  The crop is symmetric, so a mirrored photo gets the same
    answer.  `input_shape` `(H, W, C)` fixes the size for a `model` built for any size.
    """
    import keras
    from keras import layers

    if not 0.0 < crop <= 1.0:
        raise InputError(f"the test-time crop must be in (0, 1], got {crop}")
    h, w, c = input_shape or model.input_shape[1:]
    trim_h, trim_w = round(h * (1.0 - crop) / 2), round(w * (1.0 - crop) / 2)

    def along(x, axis_last, matrix, name):
        """Apply `matrix` (in x out) along the height (`axis_last=(3, 2, 1)`) or width axis.

        A 1x1 convolution over the permuted tensor (the axis as channels), not a `Dense`: same
        arithmetic, but it converts to one static CONV_2D instead of a Tensordot with run-time
        shape ops."""
        x = layers.Permute(axis_last, name=f"{name}_last")(x)
        conv = layers.Conv2D(matrix.shape[1], 1, use_bias=False, trainable=False, name=name)
        x = conv(x)
        conv.set_weights([matrix[None, None]])
        return layers.Permute(axis_last, name=f"{name}_restore")(x)

    inputs = keras.Input((h, w, c), name="pixels")
    rows = inputs
    if trim_h:
        rows = along(rows, (3, 2, 1), _crop_zoom(h, trim_h), "centre_rows")
    cols = _crop_zoom(w, trim_w)
    view = along(rows, (1, 3, 2), cols, "centre_cols") if trim_w else rows
    mirrored = along(rows, (1, 3, 2), cols[:, ::-1].copy(), "flip_width")
    outputs = layers.Average(name="probs")([model(view), model(mirrored)])
    return keras.Model(inputs, outputs, name=f"{model.name}_fliptta")


# The stem's whitening (`set_whitened_stem`): how many patches of the training photos estimate
# their covariance (147 x 147 for edge's 7x7 RGB stem), and the floor under its eigenvalues.
WHITEN_PATCHES = 100_000
WHITEN_EPS = 5e-4


def stem_whitening_kernel(pixels, filters: int, kernel: int = 3, *, seed: int = 0):
    """A conv kernel `(kernel, kernel, C, filters)` of the photos' patch principal components.

    `pixels` are training images `(N, H, W, C)`, raw 0..255, scaled the way every edgecnn model
    scales them (`x / 127.5 - 1`).  The kernel holds the `filters // 2` leading eigenvectors of
    the covariance of `kernel x kernel` patches drawn from them (seeded), each scaled by
    `1 / sqrt(eigenvalue)` and paired with its negation, so that after a ReLU both signs of
    each component survive.  Filter `i`'s response to the photos then has unit variance, and
    its responses are uncorrelated with the other components' (PCA whitening, as the first
    layer of Keller Jordan's airbench CIFAR-10 trainers, there on 2x2 patches).  Returns None
    when `filters` is odd or more than twice the patch dimension (`kernel * kernel * C`): no
    such kernel exists.
    """
    import numpy as np

    n, h, w, c = pixels.shape
    dims = kernel * kernel * c
    if filters % 2 or filters > 2 * dims or h < kernel or w < kernel:
        return None
    rng = np.random.default_rng(seed)
    count = min(WHITEN_PATCHES, n * (h - kernel + 1) * (w - kernel + 1))
    img = rng.integers(0, n, count)
    rows = rng.integers(0, h - kernel + 1, count)[:, None, None] + np.arange(kernel)[:, None]
    cols = rng.integers(0, w - kernel + 1, count)[:, None, None] + np.arange(kernel)[None, :]
    patches = pixels[img[:, None, None], rows, cols].reshape(count, dims)
    patches = patches.astype(np.float64) / 127.5 - 1.0
    patches -= patches.mean(axis=0)
    values, vectors = np.linalg.eigh(patches.T @ patches / count)  # ascending
    keep = np.arange(dims - 1, dims - 1 - filters // 2, -1)  # the largest, largest first
    half = vectors[:, keep] / np.sqrt(np.maximum(values[keep], 0.0) + WHITEN_EPS)
    both = np.concatenate([half, -half], axis=1).astype(np.float32)
    return both.reshape(kernel, kernel, c, filters)


def sign_pairs(channels: int):
    """The `stem_signs` kernel `(1, 1, channels, 2 * channels)`: the stem conv's channels, then
    their negations (a frozen 1x1 conv, [I, -I]), so the ReLU after it keeps both signs of each
    component while the stem conv computes each component once.  At int8 a 1x1 conv is the
    cheap way to do this: a 1x1 depthwise conv with depth multiplier 2 cost ~0.35 ms more."""
    import numpy as np

    eye = np.eye(channels, dtype=np.float32)
    return np.concatenate([eye, -eye], axis=1)[None, None]


def set_whitened_stem(model, pixels, *, seed: int = 0) -> bool:
    """Set `model`'s stem conv (`stem_conv`) to `stem_whitening_kernel(pixels)`, and freeze it.

    The net then starts from a fixed first layer that splits each neighbourhood into its
    decorrelated components (brightness, colour, gradients, finer detail), and learns only what
    comes after.  On the `edge` recipe this learnt faster (training accuracy 96% instead of 89%
    at the end) and scored 85.25% instead of 80.5% on average over three 1,600/400 validation
    splits of the cats-vs-dogs training photos, better on each (README).  The stem's BatchNorm
    still trains, and the kernels are ordinary Conv2D weights, so the saved model and every
    export are unchanged in form.  A model with a `stem_signs` layer (edge's 1x1 `[I, -I]`)
    gets the components in its stem conv and `sign_pairs` there; one without gets both signs
    in the stem conv itself.  Why 7x7 patches for `edge`: BatchNorm scales every channel to
    unit variance, and the smallest of 16 components of 3x3 patches varies so little that int8
    rounding became ~10% noise there (97% int8 agreement); those of 5x5 patches stand 5x
    clearer (99.1%), those of 7x7 3x clearer again (eigenvalue 0.073 vs 0.025: 99.9%).  On
    the validation splits 7x7 and 5x5 tie within the noise; on the test photos 7x7 was ahead
    on each of three seeds (README).

    Returns False (model untouched) when the model has no such stem or its width doesn't fit;
    call it before `compile`, since it changes the trainable weights.
    """
    conv = _get_layer(model, "stem_conv")
    if conv is None or conv.use_bias or len(conv.kernel.shape) != 4:
        return False
    kh, kw, c, filters = conv.kernel.shape
    if kh != kw or pixels.shape[-1] != c:
        return False
    signs = _get_layer(model, "stem_signs")
    # with `stem_signs` after it, the conv holds each component once and the signs layer pairs
    # it with its negation; without, the conv holds both signs itself
    pairs = 2 * filters if signs is not None else filters
    kernel = stem_whitening_kernel(pixels, pairs, kh, seed=seed)
    if kernel is None:
        return False
    if signs is not None:
        signs.kernel.assign(sign_pairs(filters))
        signs.trainable = False
        kernel = kernel[..., :filters]
    conv.kernel.assign(kernel)
    conv.trainable = False
    return True


def _get_layer(model, name: str):
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def _crop_zoom(size: int, trim: int):
    """(size, size) matrix: the centre `size - 2 * trim` pixels of a line, bilinearly scaled
    back to `size` (half-pixel centres, as `tf.image.resize`); `trim=0` gives the identity."""
    import numpy as np

    n = size - 2 * trim
    matrix = np.zeros((size, size), np.float32)
    for out in range(size):
        src = min(max((out + 0.5) * n / size - 0.5, 0.0), n - 1.0)
        lo = int(src)
        hi = min(lo + 1, n - 1)
        matrix[trim + lo, out] += 1.0 - (src - lo)
        matrix[trim + hi, out] += src - lo
    return matrix


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


# The ImageNet backbones offered for the edge (README, "Starting from ImageNet"): MobileNets,
# whose ops (hard-swish and squeeze-excite in V3, ReLU6 in V2) all have int8 TFLite kernels.
BACKBONES: dict[str, Backbone] = {
    "mobilenetv3small": Backbone("MobileNetV3Small"),
    "mobilenetv3large": Backbone("MobileNetV3Large"),
    "mobilenetv2": Backbone("MobileNetV2", own_scaling=False),
    "mobilenetv2-0.35": Backbone("MobileNetV2", alpha=0.35, own_scaling=False),
}
IMAGENET = "imagenet"  # the --weights value that asks for Keras' ImageNet file


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
    try:
        backbone = getattr(keras.applications, spec.application)(
            input_shape=(img_size, img_size, 3),
            alpha=spec.alpha,
            include_top=False,
            weights=None,
            pooling="avg",
            **options,
        )
        if path:
            backbone.load_weights(path)
    except (ValueError, OSError) as e:
        raise InputError(f"{weights}: cannot load into {arch} ({_first_line(e)})") from None
    x = backbone(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name=arch)


def _backbone_weights(arch: str, img_size: int, weights: str | os.PathLike | None) -> str | None:
    """The local file to load into the backbone: Keras' ImageNet file or the user's own."""
    if not weights:
        return None
    if os.fspath(weights) == IMAGENET:
        from edgecnn import imagenet

        return str(imagenet.fetch(BACKBONES[arch].imagenet_file(img_size)))
    return _existing_file(weights)


def imagenet_file(arch: str, img_size: int):
    """The ImageNet file `--weights imagenet` loads for `arch` at `img_size`; InputError for an
    architecture without one (edge and seed are trained from scratch)."""
    if arch not in BACKBONES:
        raise InputError(
            f"--weights imagenet: {arch} has no ImageNet weights; choose --arch "
            f"{' or '.join(BACKBONES)} (or pass a weights file)"
        )
    return BACKBONES[arch].imagenet_file(img_size)


def _existing_file(weights: str | os.PathLike) -> str:
    path = Path(weights)
    if not path.is_file():
        raise InputError(f"{path}: weights file not found")
    return str(path)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _load_full_weights(model, weights: str | None) -> None:
    """Load a whole-model weights file (`.weights.h5`, or a `.keras` of the same architecture)."""
    if not weights:
        return
    path = _existing_file(weights)
    try:
        if path.endswith(".keras"):
            import keras

            model.set_weights(keras.models.load_model(path, compile=False).get_weights())
        else:
            model.load_weights(path)
    except (ValueError, OSError) as e:
        raise InputError(
            f"{weights}: does not fit architecture {model.name!r} ({_first_line(e)})"
        ) from None


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture(
            "seed", build_seed, 64, 1e-3, 0.0, "the seed's textbook convnet (baseline)", 25
        ),
        # The recipe: 80 px, AdamW 2e-3 with decoupled weight decay 0.05, 1 warm-up epoch then
        # cosine, 60 epochs: 7:19 on 2,000 photos on a 2-core CPU without AVX-512.
        Architecture(
            "edge",
            build_edge,
            80,
            2e-3,
            0.05,
            "residual fused + depthwise-separable int8-friendly net",
            60,
            flip_tta=True,
            any_size=True,
            training_graph=True,
            whiten_stem=True,
        ),
        # keras.applications backbones: 128 px (an ImageNet MobileNetV2 file exists for it; the
        # V3 files fit any size), Adam 1e-3 for the head while the backbone is frozen, then a
        # tenth of it for fine-tuning (edgecnn.transfer), 30 epochs.
        *(
            Architecture(
                name,
                partial(build_backbone, name),
                128,
                1e-3,
                1e-5,
                f"keras.applications {spec.application}"
                + (f" alpha {spec.alpha}" if spec.alpha != 1.0 else "")
                + " (random start, --weights imagenet or a local file)",
            )
            for name, spec in BACKBONES.items()
        ),
    )
}
DEFAULT_ARCH = "edge"


def get_architecture(arch: str) -> Architecture:
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
    `precision="mixed_bfloat16"`
    computes in bfloat16 with float32 variables and a float32 softmax (faster training on CPUs
    with bf16 units); the weights then load unchanged into a float32 build for export.

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
    with _dtype_policy(precision):
        return spec.build(
            num_classes,
            None if any_size else size,
            weights=os.fspath(weights) if weights else None,
            **extra,
        )


PRECISIONS = ("float32", "mixed_bfloat16")


@contextmanager
def _dtype_policy(policy: str):
    """Build layers under `policy` without leaving the global Keras policy changed."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
