"""edgecnn.runtime: the part that goes onto the device.  Never imports TensorFlow.

    from edgecnn.runtime import load
    clf = load("model_int8.tflite", threads=2)
    clf.predict(bgr_frame)   # [(label, score), ...]
"""

from __future__ import annotations

from .contract import Contract
from .errors import ImageError, InputError, MissingDependencyError
from .preprocess import preprocess, read_image, to_input, to_pixels

__all__ = [
    "Contract",
    "ImageError",
    "InputError",
    "MissingDependencyError",
    "preprocess",
    "read_image",
    "to_input",
    "to_pixels",
]
