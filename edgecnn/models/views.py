"""Test-time views baked into the saved model: the photo's centre and its mirror image.

`with_flip_tta(model)` wraps a trained classifier so that every exported file and every runtime
answers with the average over two views, for twice the inference cost and nothing in training.
"""

from __future__ import annotations

from edgecnn.runtime.errors import InputError

# The saved model's test-time view: the centre 85% of the photo.  Chosen on validation splits
# of the training photos, never the test ones (docs/edge-recipe.md, "The test-time views").
TTA_CROP = 0.85


def with_flip_tta(model, crop: float = TTA_CROP, *, input_shape: tuple | None = None):
    """`model` averaged over the photo's centre and its mirror image: `(f(v) + f(flip(v))) / 2`.

    `v` is the centre `crop` of the photo (each side trimmed by `(1 - crop) / 2`) scaled back to
    the model's input size; `crop=1` uses the whole photo.  Test-time augmentation baked into
    the graph, so every exported file and every runtime gets it, for twice the inference cost
    and nothing in training:

    - the mirror: a cat seen in a mirror is still a cat, and averaging both views removes part
      of the model's left/right noise;
    - the centre crop: `Augment`'s zoom trains on views cropped in by up to 30% or widened by
      up to 15% (7.5% in on average), and rotation trims the corners further, so the whole
      photo shows every animal smaller than the net saw it in training (the train/test
      object-size discrepancy of Touvron et al., "Fixing the train-test resolution
      discrepancy", 2019); the centre crop (`TTA_CROP`) matches.  It was chosen when training
      cropped in by 0-20% and not re-tuned since (docs/edge-recipe.md).

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
        rows = along(rows, (3, 2, 1), crop_zoom(h, trim_h), "centre_rows")
    cols = crop_zoom(w, trim_w)
    view = along(rows, (1, 3, 2), cols, "centre_cols") if trim_w else rows
    mirrored = along(rows, (1, 3, 2), cols[:, ::-1].copy(), "flip_width")
    outputs = layers.Average(name="probs")([model(view), model(mirrored)])
    return keras.Model(inputs, outputs, name=f"{model.name}_fliptta")


def crop_zoom(size: int, trim: int):
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
