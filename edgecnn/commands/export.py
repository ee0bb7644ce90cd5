"""`edgecnn export RUN_DIR|MODEL.keras`: verified TFLite and ONNX files with labels inside."""

from __future__ import annotations

import argparse
import sys

from edgecnn.export import FORMATS, INT8_IO, INT8_WEIGHTS  # no TensorFlow at import time
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.formatting import file_size, table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="RUN_DIR|MODEL.keras", help="run directory or .keras")
    parser.add_argument(
        "--formats",
        default=None,
        help=f"comma-separated subset of {','.join(FORMATS)} (default: all)",
    )
    parser.add_argument(
        "--calib",
        metavar="DIR",
        help="int8 calibration images (default: the run's training images)",
    )
    parser.add_argument(
        "--check",
        metavar="DIR",
        help="labelled images to verify every file on (default: the run's validation images)",
    )
    parser.add_argument(
        "--int8-io",
        choices=INT8_IO,
        default="uint8",
        help="input/output dtype of model_int8.tflite; ops inside are int8 "
        "either way (default uint8: raw pixels, what MediaPipe Tasks accepts)",
    )
    parser.add_argument(
        "--int8-weights",
        choices=INT8_WEIGHTS,
        default="auto",
        help="weight scales of the int8 files: per-tensor (smaller), "
        "per-channel (robust), or auto (default: builds both, keeps per-tensor "
        "unless it loses > 0.5 points of agreement with Keras)",
    )
    parser.add_argument(
        "--calib-count",
        type=int,
        default=300,
        metavar="N",
        help="calibration sample size (default 300); if no int8 file passes verification, "
        "calibration is retried on 2x and 4x as many images, as far as the folder holds them",
    )
    parser.add_argument("--seed", type=int, default=0, help="calibration sample seed")


def run(args: argparse.Namespace) -> int:
    from edgecnn.export import export
    from edgecnn.runtime.errors import VerificationError

    try:
        manifest = export(
            args.source,
            formats=args.formats,
            calib=args.calib,
            check=args.check,
            int8_io=args.int8_io,
            int8_weights=args.int8_weights,
            calib_count=args.calib_count,
            seed=args.seed,
        )
    except VerificationError as e:  # one line per refused file, export.json has the figures
        for line in str(e).splitlines():
            print(f"edgecnn export: {line}", file=sys.stderr)
        return 1
    except OSError as e:
        raise InputError(f"cannot write the export: {e}") from None
    print(format_table(manifest))
    return 0


def format_table(manifest: dict) -> str:
    """artifact | size | agreement | max |Δp| | accuracy, one row per exported file."""
    rows = []
    for fmt, a in manifest["artifacts"].items():
        p = a["parity"]
        rows.append(
            (
                a["file"] or f"{fmt} (failed)",
                file_size(a["bytes"]),
                f"{p['agreement']:.2%}",
                f"{p['max_abs_diff']:.2g}",
                f"{p['accuracy']:.2%}",
                a["input"]["dtype"],
            )
        )
    header = ("artifact", "size", "agreement", "max |Δp|", "accuracy", "input")
    lines = [table(header, rows)]
    check = manifest["check"]
    lines.append(
        f"verified on {check['count']} images from {check['dir']} "
        f"(Keras accuracy {_keras_accuracy(manifest):.2%})"
    )
    return "\n".join(lines)


def _keras_accuracy(manifest: dict) -> float:
    for a in manifest["artifacts"].values():
        return a["parity"]["reference_accuracy"]
    return float("nan")
