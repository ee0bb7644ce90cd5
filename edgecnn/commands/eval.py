"""`edgecnn eval MODEL DATA_DIR`: accuracy, per-class precision/recall and the confusion matrix
of any model file on a folder-per-class dataset, printed, as PNG and optionally as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from edgecnn.commands._runtime_cli import add_model_arguments

    add_model_arguments(parser)
    parser.add_argument("data", metavar="DATA_DIR", help="folder with one sub-folder per class")
    parser.add_argument("--batch", type=int, default=32, help="images per inference call")
    parser.add_argument(
        "--json",
        metavar="FILE",
        default=None,
        help="write the full report as JSON (use - for stdout)",
    )
    parser.add_argument(
        "--shifts",
        action="store_true",
        help="also score the model under a fixed, seeded suite of camera-like shifts (low "
        "resolution, blur, noise, JPEG, exposure, white balance, crop, scale, tilt, grayscale)",
    )
    parser.add_argument(
        "--confusion",
        metavar="PNG",
        default=None,
        help="confusion matrix picture (default: MODEL_STEM_BACKEND_confusion.png "
        "beside the --json file, else beside the model)",
    )


def default_confusion_path(model: Path, backend: str, json_file: str | None) -> Path:
    name = f"{model.stem}_{backend}_confusion.png"
    if json_file and json_file != "-":
        return Path(json_file).parent / name
    return model.parent / name


def run(args: argparse.Namespace) -> int:
    from edgecnn.commands._runtime_cli import load_reporting_warnings
    from edgecnn.runtime import InputError, evaluate
    from edgecnn.runtime.confusion import format_pairs
    from edgecnn.runtime.files import check_output
    from edgecnn.runtime.formatting import shown
    from edgecnn.runtime.metrics import confusion_png, format_report, write_bytes_atomic

    if args.batch < 1:
        raise InputError(f"--batch must be at least 1, got {args.batch}")
    if args.json and args.json != "-" and not Path(args.json).parent.is_dir():
        raise InputError(f"--json {args.json}: folder {Path(args.json).parent} does not exist")
    clf = load_reporting_warnings(
        args.model, backend=args.backend, threads=args.threads, command="eval"
    )
    for option, target in (("--json", args.json), ("--confusion", args.confusion)):
        check_output(option, target, files={"the model": clf.path}, photos_in=args.data)
    report = evaluate(clf, args.data, batch=args.batch)
    png = (
        Path(args.confusion)
        if args.confusion
        else default_confusion_path(clf.path, clf.backend, args.json)
    )
    title = (
        f"{clf.path.name} ({clf.backend}) acc {report['accuracy']:.3f} on {Path(args.data).name}"
    )
    confusion_png(report["confusion_matrix"], report["labels"], png, title=title)
    report["confusion_png"] = str(png)
    out = sys.stderr if args.json == "-" else sys.stdout
    print(
        f"model {shown(clf.path)} (backend {clf.backend}, {clf.describe().get('version', '')})",
        file=out,
    )
    print(format_report(report), file=out)
    if report["confused_pairs"]:
        print(f"most confused: {format_pairs(report['confused_pairs'])}", file=out)
    for item in report["skipped"]:
        print(f"skipped {shown(item['path'])}: {shown(item['reason'])}", file=out)
    print(f"confusion matrix: {shown(png)}", file=out)
    if args.shifts:
        from edgecnn.runtime.shifts import evaluate_shifts, format_shifts

        shifted = evaluate_shifts(clf, args.data)
        report.update(shifts=shifted["shifts"], shift_mean_accuracy=shifted["shift_mean_accuracy"])
        print(format_shifts(shifted, report["accuracy"]), file=out)
    if args.json == "-":
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif args.json:
        write_bytes_atomic(args.json, (json.dumps(report, indent=2) + "\n").encode("utf-8"))
        print(f"report: {shown(args.json)}", file=out)
    return 0
