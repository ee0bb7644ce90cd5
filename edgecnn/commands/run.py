"""`edgecnn run MODEL`: live classification from a camera, video file, stream or image folder.

A thin layer over `edgecnn.runtime.live.run_live` (no TensorFlow unless MODEL is a .keras file).
"""

from __future__ import annotations

import argparse

from edgecnn.runtime.backends import MAX_THREADS
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.live import DEFAULT_TOP_K


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help=".tflite, .onnx, .keras or a run directory")
    parser.add_argument(
        "--source", default="0", metavar="SRC",
        help="camera index (0), video file, rtsp/http URL, folder or glob of images, or "
        "'picamera' (default: 0)",
    )  # fmt: skip
    parser.add_argument("--backend", default="auto", help="tflite, onnx, opencv, keras or auto")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="inference threads")
    parser.add_argument(
        "--show", action="store_true",
        help="show an OpenCV window (q/Esc quits); with a headless OpenCV, the live page in "
        "the default browser",
    )  # fmt: skip
    parser.add_argument(
        "--serve", metavar="HOST:PORT",
        help="serve a live web page (127.0.0.1 only unless HOST says otherwise; other "
        "addresses need the token printed at start-up)",
    )  # fmt: skip
    parser.add_argument("--record", metavar="FILE", help="write the annotated video (.avi, .mp4)")
    parser.add_argument("--jsonl", metavar="FILE|-", help="one JSON object per frame ('-': stdout)")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N")
    parser.add_argument(
        "--smooth", type=float, default=None, metavar="A",
        help="exponential moving average of probabilities, A = weight of the newest frame (0, 1]",
    )  # fmt: skip
    parser.add_argument(
        "--min-score", type=float, default=None, metavar="S",
        help="below this top score the label is 'uncertain'",
    )  # fmt: skip
    parser.add_argument(
        "--realtime", action="store_true",
        help="play files at their own frame rate, dropping frames (default: every frame, fast)",
    )  # fmt: skip
    parser.add_argument(
        "--top-k", type=int, default=DEFAULT_TOP_K, metavar="K",
        help=f"classes shown ({DEFAULT_TOP_K})",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from edgecnn.runtime.files import check_output
    from edgecnn.runtime.live import run_live

    source = None if str(args.source).isdigit() else args.source
    for option, target in (("--record", args.record), ("--jsonl", args.jsonl)):
        inputs = {"the model": args.model, "the --source file": source}
        check_output(option, target, files=inputs, photos_in=source)
    if args.threads is not None and not 1 <= args.threads <= MAX_THREADS:
        raise InputError(f"--threads must be from 1 to {MAX_THREADS}, got {args.threads}")
    run_live(
        args.model,
        args.source,
        backend=args.backend,
        threads=args.threads,
        show=args.show,
        serve=args.serve,
        record=args.record,
        jsonl=args.jsonl,
        max_frames=args.max_frames,
        smooth=args.smooth,
        min_score=args.min_score,
        realtime=args.realtime,
        top_k=args.top_k,
    )
    return 0
