"""Latency across backends: every artifact of a run x backend x thread count (`edgecnn bench`).

Prints the Markdown table for the README (p50/p99 per image at batch 1, FPS, load time, peak
RSS, and with --data accuracy and agreement with Keras) and the command that made it; writes
RUN/bench/bench.{json,csv,md,png}.

    .venv/bin/python benchmarks/latency.py RUN --threads 1,2 \
        --data ../shared/datasets/cats-vs-dogs/test

RUN is a run directory with `export/`: `edgecnn train ../shared/datasets/cats-vs-dogs/train
--val-dir ../shared/datasets/cats-vs-dogs/test --out RUN`, then `edgecnn export RUN`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from edgecnn import bench_report as report
    from edgecnn.bench import BenchConfig, bench, default_output_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory with export/")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--backends", default=None, help="default: all that fit each artifact")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument(
        "--data", default=None, help="class-folder test images (accuracy, agreement)"
    )
    parser.add_argument("--max-images", type=int, default=500)
    args = parser.parse_args(argv)
    config = BenchConfig(
        backends=tuple(args.backends.split(",")) if args.backends else None,
        threads=tuple(int(t) for t in args.threads.split(",")),
        runs=args.runs,
        max_images=args.max_images,
    )
    result = bench([args.run], config=config, data=args.data)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print()
    print(report.render_markdown(result))
    out = default_output_dir([args.run])
    for name, writer in (
        ("bench.json", report.write_json),
        ("bench.csv", report.write_csv),
        ("bench.md", report.write_markdown),
        ("bench.png", report.write_plot),
    ):
        writer(result, out / name)
    print(f"wrote {out}/bench.{{json,csv,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
