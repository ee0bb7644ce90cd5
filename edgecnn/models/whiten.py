"""The whitened stem: a first conv layer set to the training photos' patch principal components.

Training calls `set_whitened_stem(model, pixels)` before compiling an architecture with
`whiten_stem`; the stem conv then holds fixed, decorrelated, unit-variance filters and is frozen.
"""

from __future__ import annotations

from edgecnn.models.edge import sign_pairs

# How many patches of the training photos estimate their covariance (147 x 147 for edge's 7x7
# RGB stem), and the floor under its eigenvalues.
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


def set_whitened_stem(model, pixels, *, seed: int = 0) -> bool:
    """Set `model`'s stem conv (`stem_conv`) to `stem_whitening_kernel(pixels)`, and freeze it.

    The net then starts from a fixed first layer that splits each neighbourhood into its
    decorrelated components (brightness, colour, gradients, finer detail), and learns only what
    comes after; on the `edge` recipe it learnt faster and scored higher on every validation
    split tried (docs/edge-recipe.md, "The stem").  The stem's BatchNorm still trains, and the
    kernels are ordinary Conv2D weights, so the saved model and every export are unchanged in
    form.  A model with a `stem_signs` layer (edge's 1x1 `[I, -I]`) gets the components in its
    stem conv and `sign_pairs` there; one without gets both signs in the stem conv itself.
    `edge` whitens 7x7 patches: BatchNorm scales every channel to unit variance, and the
    smallest components of 3x3 patches vary so little that int8 rounding becomes noise there;
    those of 7x7 patches stand clear of it.

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
