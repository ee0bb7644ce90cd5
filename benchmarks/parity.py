"""Parity: does every runtime backend give the Keras model's top-1 on every image?

Decodes a folder-per-class dataset once with the run's contract, runs the Keras model (the
reference, through the runtime's `keras` backend: `model(x, training=False)`) and every exported
artifact on every backend that can run it, and prints per artifact x backend: accuracy, top-1
agreement with Keras, the images that disagree, and the largest probability difference.

    python benchmarks/parity.py runs/NAME ../shared/datasets/cats-vs-dogs/test

The requirement: fp32 backends (fp32 .tflite via LiteRT, .onnx via ONNX Runtime and
OpenCV) give the same top-1 as Keras on every image; quantised files are reported, not required.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edgecnn.runtime import InputError, load
from edgecnn.runtime.dataset import list_dataset, load_pixels

ARTIFACTS = [
    ("model_fp32.tflite", ("tflite",)),
    ("model_fp16.tflite", ("tflite",)),
    ("model_drq.tflite", ("tflite",)),
    ("model_int8.tflite", ("tflite",)),
    ("model.onnx", ("onnx", "opencv")),
    ("model_int8.onnx", ("onnx", "opencv")),
]
FP32 = {"model_fp32.tflite", "model.onnx"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    reference = load(args.run / "model.keras", backend="keras", threads=args.threads)
    dataset = list_dataset(args.data, classes=reference.labels)
    decoded = load_pixels(dataset, reference.contract, progress=False)
    ref = reference.probs_pixels(decoded.pixels)
    ref_top = ref.argmax(1)
    print(
        f"{len(decoded.targets)} images ({len(decoded.skipped)} skipped); keras accuracy "
        f"{np.mean(ref_top == decoded.targets):.4f}"
    )
    rows = []
    failed = False
    for name, backends in ARTIFACTS:
        path = args.run / "export" / name
        if not path.is_file():
            continue
        for backend in backends:
            try:
                clf = load(path, backend=backend, threads=args.threads)
            except InputError as e:
                print(f"{name:<18} {backend:<7} cannot run: {e}")
                rows.append({"artifact": name, "backend": backend, "error": str(e)})
                failed |= name in FP32
                continue
            probs = clf.probs_pixels(decoded.pixels)
            top = probs.argmax(1)
            differ = np.flatnonzero(top != ref_top)
            row = {
                "artifact": name,
                "backend": backend,
                "accuracy": float(np.mean(top == decoded.targets)),
                "agreement": float(np.mean(top == ref_top)),
                "disagreements": len(differ),
                "max_abs_diff": float(np.abs(probs - ref).max()),
                "differing_images": [str(decoded.paths[i]) for i in differ[:20]],
            }
            rows.append(row)
            must = name in FP32
            ok = not must or row["disagreements"] == 0
            failed |= not ok
            print(
                f"{name:<18} {backend:<7} acc {row['accuracy']:.4f}  top-1 agreement "
                f"{row['agreement']:.4f} ({row['disagreements']} differ)  max |dp| "
                f"{row['max_abs_diff']:.2e}  {'REQUIRED ' if must else ''}"
                f"{'ok' if ok else 'FAIL'}"
            )
            for p in row["differing_images"][:5]:
                print(f"    differs: {p}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
