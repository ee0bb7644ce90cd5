"""edgecnn.runtime: the part that goes onto the device.  Never imports TensorFlow.

from edgecnn.runtime import load
clf = load("model_int8.tflite", threads=2)
clf.predict(bgr_frame)   # [(label, score), ...]
"""

from __future__ import annotations

from .classifier import Classifier, MetadataWarning, load
from .contract import Contract
from .errors import ImageError, InputError, MissingDependencyError
from .evaluate import evaluate
from .preprocess import preprocess, read_image, to_input, to_pixels
from .resolve import resolve_model

__all__ = [
    "Classifier",
    "Contract",
    "ImageError",
    "InputError",
    "MetadataWarning",
    "MissingDependencyError",
    "evaluate",
    "load",
    "preprocess",
    "read_image",
    "resolve_model",
    "to_input",
    "to_pixels",
]
