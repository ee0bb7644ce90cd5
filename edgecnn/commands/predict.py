"""`edgecnn predict MODEL IMAGE...`: classify image files with any model file, no TensorFlow
needed for .tflite/.onnx.  Labels come from the model file itself."""

from __future__ import annotations

import argparse
import json
import sys

CHUNK = 256  # images decoded and classified at a time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from edgecnn.commands._runtime_cli import add_model_arguments

    add_model_arguments(parser)
    parser.add_argument(
        "images",
        metavar="IMAGE",
        nargs="+",
        help="image files to classify (a folder: every image file in it; -: one image piped "
        "to stdin)",
    )
    parser.add_argument("--top-k", type=int, default=3, help="labels shown per image (default 3)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from edgecnn.commands._runtime_cli import load_reporting_warnings
    from edgecnn.runtime import InputError, to_pixels
    from edgecnn.runtime.classifier import ranked
    from edgecnn.runtime.progress import Progress

    if args.top_k < 1:
        raise InputError(f"--top-k must be at least 1, got {args.top_k}")
    clf = load_reporting_warnings(
        args.model, backend=args.backend, threads=args.threads, command="predict"
    )
    images = _expand(args.images)
    piped = _read_stdin(images)
    c = clf.contract
    k = min(args.top_k, clf.num_classes)
    results = []
    # A chunk of images is decoded at a time, so a folder of any size needs the memory of one
    # chunk's pixels and the results; any undecodable image stops the command before anything
    # is printed.
    pixels = np.empty((min(len(images), CHUNK), c.height, c.width, 3), dtype=np.uint8)
    bar_wanted = None if len(images) > CHUNK else False  # None: on a terminal
    with Progress(len(images), "predict", enabled=bar_wanted) as bar:
        for start in range(0, len(images), CHUNK):
            chunk = images[start : start + CHUNK]
            for i, image in enumerate(chunk):
                to_pixels(piped if image == "-" else image, c, out=pixels[i])
            for image, row in zip(chunk, clf.probs_pixels(pixels[: len(chunk)])):
                top = ranked(row, clf.labels, k)
                predictions = [{"label": n, "score": p} for n, p in top]
                results.append({"image": image, "predictions": predictions})
            bar.update(len(chunk))
    if args.json:
        doc = {
            "model": str(clf.path),
            "backend": clf.backend,
            "labels": list(clf.labels),
            "results": results,
        }
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(_table(results, k))
    return 0


def _read_stdin(images: list[str]):
    """The image piped to stdin, decoded, when `-` is among the images (at most once)."""
    if "-" not in images:
        return None
    from edgecnn.runtime import InputError
    from edgecnn.runtime.preprocess import read_stdin_image

    if images.count("-") > 1:
        raise InputError("-: stdin holds one image; give - once")
    return read_stdin_image(sys.stdin.buffer)


def _expand(paths: list[str]) -> list[str]:
    """Folders stand for the image files under them (sorted); files are kept as given."""
    from pathlib import Path

    from edgecnn.runtime import InputError
    from edgecnn.runtime.preprocess import image_files

    out: list[str] = []
    for p in paths:
        if p != "-" and Path(p).is_dir():
            found = sorted(str(f) for f in image_files(p))
            if not found:
                raise InputError(f"{p}: folder has no image files")
            out.extend(found)
        else:
            out.append(p)
    return out


def _table(results: list[dict], k: int) -> str:
    from edgecnn.runtime.formatting import shown

    images = [shown(r["image"]) for r in results]  # a file name cannot rewrite the terminal
    width = max(5, *(len(image) for image in images))
    head = f"{'image':<{width}}  " + "  ".join(
        f"{'top-' + str(i + 1):<{16}}{'score':>6}" for i in range(k)
    )
    lines = [head.rstrip()]
    for image, r in zip(images, results):
        cells = "  ".join(f"{p['label'][:16]:<16}{p['score']:6.3f}" for p in r["predictions"])
        lines.append(f"{image:<{width}}  {cells}")
    return "\n".join(lines)
