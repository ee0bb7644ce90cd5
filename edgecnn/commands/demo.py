"""`edgecnn demo [--out DIR] [--quick] [--show]`: a thin layer over `edgecnn.demo.demo`."""

from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        default="runs/demo",
        metavar="DIR",
        help="the demo's folder, replaced on every run (default runs/demo)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smaller budget: about a minute instead of a few"
    )
    parser.add_argument(
        "--show",
        action="store_true",
        help="also show the live run in a window (needs a desktop OpenCV build and a display)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output, only errors")


def run(args: argparse.Namespace) -> int:
    # TensorFlow's C++ INFO/WARNING lines would bury the demo's own output; the user's own
    # setting wins.  Set here, before the first TensorFlow import, never at import time.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from edgecnn.demo import demo

    demo(args.out, quick=args.quick, show=args.show, progress=not args.quiet)
    return 0
