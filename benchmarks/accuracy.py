"""Accuracy on real photos: every artifact x backend of a run on the same test images.

Accuracy, and top-1 agreement with the Keras model the files were exported from, measured by
`edgecnn bench --data` (the images are decoded once with the shared preprocessing; the Keras
predictions are computed once in their own process).  Latency is not the point here, so few runs.

    .venv/bin/python benchmarks/accuracy.py runs/cvd-edge ../shared/datasets/cats-vs-dogs/test
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from edgecnn.bench import BenchConfig, bench

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, nargs="?", default=Path("runs/cvd-edge"))
    parser.add_argument("data", type=Path, nargs="?",
                        default=Path(__file__).resolve().parents[1].parent / "shared/datasets/cats-vs-dogs/test")
    parser.add_argument("--max-images", type=int, default=2000)
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"{args.data}: no such folder (give a class-folder test set)", file=sys.stderr)
        return 2
    config = BenchConfig(runs=10, warmup=2, warmup_seconds=0.0, min_seconds=0.0, max_images=args.max_images)
    result = bench([args.run], config=config, data=args.data)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    d = result["data"]
    print(f"\n{d['n_images']} images from {d['dir']} ({d['skipped']} undecodable skipped); "
          f"reference: {d['reference'] or d['reference_error']}\n")
    print("| artifact | backend | accuracy | agreement with Keras |")
    print("|---|---|---|---|")
    for r in result["rows"]:
        if r.get("error"):
            print(f"| {r['artifact']} | {r['backend']} | error: {r['error']} | |")
            continue
        agree = "-" if r.get("agreement") is None else f"{100 * r['agreement']:.2f}%"
        print(f"| {r['artifact']} | {r['backend']} | {100 * r['accuracy']:.2f}% | {agree} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
