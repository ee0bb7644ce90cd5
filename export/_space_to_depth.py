"""Strided convolutions on the photo's few channels, traced as space-to-depth for int8 TFLite.

LiteRT runs int8 convolutions on its default CPU delegate, XNNPACK, whose kernels pad each
kernel tap's input channels to a block of several (8 in its x86 AVX2 kernels).  A conv on the
3 channels of a photo therefore does most of its arithmetic on padding: the `edge` net's 7x7/2
stem holds 14% of the net's multiply-adds and took over a third of its int8 time
(docs/speed.md, "The stem in int8").

The same conv reads the photo rearranged into 2x2 blocks (half the height and width, 4x the
channels) as a stride-1 conv with half the taps in each direction: each block tap holds the four
original taps it covers, and zeros where the blocks' even footprint overhangs the kernel.  The
sums are the same products in another order, so the float model agrees to rounding and the
int8 file computes the same integer sums (the rearranged input keeps the photo's quantisation,
the zero taps change no weight scale; calibration may set the conv's output scale a rounding
error apart, which moves a rare output by a level).  `space_to_depth_convs(model)` makes every
such layer trace that way while the converter builds its graph; the trained model and every
other format are unchanged (float kernels have no such padding, and ran about 4% slower this
way).
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._source import iter_layers

# Rewritten: Conv2D, stride 2, "same" padding, at most this many input channels and a kernel
# of at least MIN_KERNEL in both directions.  Alone, as blocks, a 7x7/2 conv on 3 channels ran
# 1.9x and a 5x5/2 1.6x faster; a 3x3/2 only 1.1-1.2x, and MobileNetV3's 3x3/2 stem is about 1%
# of its int8 time (docs/speed.md), so 3x3 convs are left as they are.
MAX_CHANNELS = 4
MIN_KERNEL = 5


@contextmanager
def space_to_depth_convs(model: Any) -> Iterator[int]:
    """Within the block, every qualifying Conv2D inside `model` (nested models included) calls
    itself in space-to-depth form; yields how many layers qualified.  Trace inside it."""
    # by identity: a layer shared by two nested models is patched (and restored) once
    patched = list({id(layer): layer for layer in iter_layers(model) if qualifies(layer)}.values())
    for layer in patched:
        layer.call = types.MethodType(_space_to_depth_call, layer)
    try:
        yield len(patched)
    finally:
        for layer in patched:
            del layer.call


def qualifies(layer: Any) -> bool:
    """A plain Conv2D of stride 2 with "same" padding on few channels and a large kernel."""
    from keras import layers

    if type(layer) is not layers.Conv2D or not layer.built:
        return False
    kh, kw, channels, _ = layer.kernel.shape
    return (
        tuple(layer.strides) == (2, 2)
        and layer.padding == "same"
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.groups == 1
        and layer.data_format == "channels_last"
        and channels <= MAX_CHANNELS
        and min(kh, kw) >= MIN_KERNEL
    )


def block_taps(kernel: int) -> tuple[int, int, int, int]:
    """For one axis of a stride-2 "same" conv on an even size: `(front, back, before, after)`:
    zero taps to add before and after the kernel so that it covers whole 2-pixel blocks, and
    the blocks of padding the stride-1 block conv needs before and after the input."""
    pad_before = (kernel - 2) // 2  # TensorFlow's "same": total kernel - 2, the odd one after
    front = pad_before % 2  # start the footprint on a block boundary
    taps = -(-(kernel + front) // 2)  # block taps
    before = (pad_before + front) // 2
    return front, 2 * taps - kernel - front, before, taps - 1 - before


def block_kernel(kernel: Any) -> Any:
    """A `(kh, kw, c, out)` stride-2 kernel -> the block conv's `(th, tw, 4c, out)` kernel."""
    from keras import ops

    kh, kw, c, out = kernel.shape
    (fh, bh, _, _), (fw, bw, _, _) = block_taps(kh), block_taps(kw)
    k = ops.pad(kernel, ((fh, bh), (fw, bw), (0, 0), (0, 0)))
    th, tw = (kh + fh + bh) // 2, (kw + fw + bw) // 2
    k = ops.reshape(k, (th, 2, tw, 2, c, out))
    k = ops.transpose(k, (0, 2, 1, 3, 4, 5))  # block tap, then the pixel inside the block
    return ops.reshape(k, (th, tw, 4 * c, out))


def _space_to_depth_call(self: Any, inputs: Any) -> Any:
    from keras import layers, ops

    _, h, w, c = inputs.shape
    if h is None or w is None or h % 2 or w % 2:  # only even sizes split into whole blocks
        return layers.Conv2D.call(self, inputs)
    x = ops.reshape(inputs, (-1, h // 2, 2, w // 2, 2, c))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))  # each 2x2 block's pixels, row by row
    x = ops.reshape(x, (-1, h // 2, w // 2, 4 * c))
    kh, kw = self.kernel.shape[:2]
    (_, _, top, bottom), (_, _, left, right) = block_taps(kh), block_taps(kw)
    x = ops.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    y = ops.conv(x, block_kernel(self.kernel), strides=1, padding="valid")
    if self.use_bias:
        y = ops.add(y, self.bias)
    return self.activation(y) if self.activation is not None else y
