"""`edgecnn bench RUN_DIR|MODEL...`: latency, throughput, memory and accuracy per backend."""

from __future__ import annotations

import argparse

from edgecnn.runtime.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "targets", nargs="+", metavar="RUN_DIR|MODEL", help="run directories or model files"
    )
    parser.add_argument(
        "--backends", help="comma-separated: tflite,onnx,opencv,keras (default: all that fit)"
    )
    parser.add_argument("--threads", default="1", help="comma-separated thread counts (default: 1)")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per row (default: 200)")
    parser.add_argument(
        "--warmup", type=int, default=20, help="warm-up runs before timing (default: 20)"
    )
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=1.0,
        help="also warm up for at least this long (default: 1.0)",
    )
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=1.0,
        help="time each row for at least this long (default: 1.0)",
    )
    parser.add_argument(
        "--data", metavar="DIR", help="class-folder images: accuracy and agreement with Keras"
    )
    parser.add_argument(
        "--max-images", type=int, default=500, help="images used from --data (default: 500)"
    )
    parser.add_argument(
        "--pipeline", metavar="SOURCE", help="also measure the live loop on this video/folder"
    )
    parser.add_argument(
        "--pipeline-frames",
        type=int,
        default=300,
        help="frames per backend for --pipeline (default: 300)",
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="write the result as JSON (default: RUN_DIR/bench/bench.json)",
    )
    parser.add_argument(
        "--csv", metavar="FILE", help="write the rows as CSV (default: RUN_DIR/bench/bench.csv)"
    )
    parser.add_argument(
        "--md", metavar="FILE", help="write a Markdown report (default: RUN_DIR/bench/bench.md)"
    )
    parser.add_argument(
        "--plot", metavar="FILE", help="write a PNG plot (default: RUN_DIR/bench/bench.png)"
    )
    parser.add_argument(
        "--compare", metavar="OLD.json", help="ratios against an earlier bench.json"
    )
    parser.add_argument("--no-save", action="store_true", help="only print; write no default files")


def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--{what} must be comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise InputError(f"--{what} must be integers >= 1, got {text!r}")
    return values


def run(args: argparse.Namespace) -> int:
    from edgecnn import bench_report as report
    from edgecnn.bench import OUTPUT_FILES, BenchConfig, bench, default_output_dir, planned_rows
    from edgecnn.runtime.files import check_output

    backends = (
        tuple(b.strip() for b in args.backends.split(",") if b.strip()) if args.backends else None
    )
    config = BenchConfig(
        backends=backends,
        threads=_int_list(args.threads, "threads"),
        runs=args.runs,
        warmup=args.warmup,
        warmup_seconds=args.warmup_seconds,
        min_seconds=args.min_seconds,
        max_images=args.max_images,
        pipeline_frames=args.pipeline_frames,
    )
    models = {f"the model {t}": t for t in args.targets}
    outputs = {"--json": args.json, "--csv": args.csv, "--md": args.md, "--plot": args.plot}
    for option, target in outputs.items():
        if target == "-":
            raise InputError(f"{option} -: bench writes its reports to files; give a file name")
        check_output(option, target, files=models, photos_in=args.data)
    old = report.load_result(args.compare) if args.compare else None
    if old is not None:  # a --compare file of another shape fails before anything is measured
        report.check_comparable(planned_rows(args.targets, config), old, source=args.compare)
    result = bench(args.targets, config=config, data=args.data, pipeline=args.pipeline)
    print(report.render_text(result))
    if all(r.get("error") for r in result["rows"]):  # nothing measured: bad input, not a result
        first = result["rows"][0]
        raise InputError(
            f"no backend could run {'the model' if len(result['rows']) == 1 else 'any model'} "
            f"({first['artifact']} on {first['backend']}: {first['error']})"
        )
    comparison = report.compare(result, old, source=args.compare) if old is not None else None
    if comparison is not None:
        result["comparison"] = {"against": args.compare, "rows": comparison}
        print()
        print(report.format_compare(comparison))
    out = default_output_dir(args.targets)
    default = (lambda name: None) if args.no_save else (lambda name: out / name)
    given = {"json": args.json, "csv": args.csv, "md": args.md, "png": args.plot}
    written = []
    for kind, name in OUTPUT_FILES.items():
        path = given[kind] or default(name)
        if path is not None:
            written.append(str(report.WRITERS[kind](result, path)))
    if written:
        print("\nwrote " + ", ".join(written))
    return 0
