"""`edgecnn profile MODEL`: parameters, MACs, memory and quantisation error per layer."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", metavar="MODEL", help=".tflite, .onnx, .keras file or a run directory"
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="class-folder images: measure the int8 error of every layer against the fp32 "
        "file (default: export.json's worst layers, else the run's own images)",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="write the profile as JSON to FILE (or stdout with no FILE)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgecnn.profile import profile, render, resolve_profile_target
    from edgecnn.runtime.files import check_output, write_atomic

    target = resolve_profile_target(Path(args.model))
    check_output("--json", args.json, files={"the model": target}, photos_in=args.data)
    report = profile(target, data=args.data)
    if args.json == "-":
        print(json.dumps(report, indent=2))
        return 0
    print(render(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.json, json.dumps(report, indent=2) + "\n")
    return 0
