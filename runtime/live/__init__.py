"""edgecnn.runtime.live: classify frames from a camera, video, stream or image folder, live.

No TensorFlow.  The Python API is an iterator of results:

    from edgecnn.runtime.live import live

    for r in live("model_int8.tflite", "0", smooth=0.5, min_score=0.6):
        print(r.label, r.score, r.timings["total"])

`run_live(...)` is `edgecnn run`: the same loop with a window, a web page, a recording and/or a
JSON-lines log, and the summary at exit.
"""

from __future__ import annotations

from .app import run_live
from .capture import Backoff
from .loop import DEFAULT_TOP_K, UNCERTAIN, Live, Result, live
from .overlay import draw
from .server import FrameHub, LiveServer, parse_address
from .sources import (
    CameraSource,
    ImageFolderSource,
    PiCameraSource,
    Source,
    StreamSource,
    VideoFileSource,
    make_source,
    open_source,
)
from .stats import Summary

__all__ = [
    "DEFAULT_TOP_K",
    "UNCERTAIN",
    "Backoff",
    "CameraSource",
    "FrameHub",
    "ImageFolderSource",
    "Live",
    "LiveServer",
    "PiCameraSource",
    "Result",
    "Source",
    "StreamSource",
    "Summary",
    "VideoFileSource",
    "draw",
    "live",
    "make_source",
    "open_source",
    "parse_address",
    "run_live",
]
