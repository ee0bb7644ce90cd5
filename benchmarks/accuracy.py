"""Accuracy on real photos: `seed` vs `edge`, trained, exported, scored on one test folder.

For every architecture: `edgecnn.training` (default recipe; `seed` with its own epoch count) on
TRAIN_DIR, `edgecnn.export` (int8 calibrated on training images), then the Keras model, the int8
TFLite file and the float ONNX file are scored on the same decoded test images, and the int8
file's latency is measured at batch 1 / 1 thread by `edgecnn bench` (its own process).  One table:

    architecture | params | MACs | train time | Keras | int8 TFLite | ONNX | int8 size | int8 latency

    .venv/bin/python benchmarks/accuracy.py ../shared/datasets/cats-vs-dogs/train \
        --test ../shared/datasets/cats-vs-dogs/test

Validation during training is the test folder (`--val-dir`), unless `--val-split F` holds out
F of TRAIN_DIR instead: then model selection never sees the test images and the test column is
an untouched estimate.  `--reuse` skips training
and export for runs that are already complete in `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from edgecnn.runtime.env import cpu_model

DATASET = Path(__file__).resolve().parents[1].parent / "shared/datasets/cats-vs-dogs"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("train_dir", type=Path, nargs="?", default=DATASET / "train")
    p.add_argument("--test", type=Path, default=DATASET / "test", help="labelled test folder")
    p.add_argument("--archs", default="seed,edge", help="comma-separated (default seed,edge)")
    p.add_argument(
        "--val-split",
        type=float,
        default=None,
        metavar="F",
        help="validate on F of TRAIN_DIR instead of the test folder",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs for every arch (default: each architecture's own, seed 25)",
    )
    p.add_argument("--out", type=Path, default=Path("runs/accuracy"), help="runs go in OUT/ARCH")
    p.add_argument("--reuse", action="store_true", help="keep complete runs/exports in --out")
    p.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="ARCH=DIR",
        help="score this finished run for ARCH instead of training one (exported "
        "here if it has no export/model_int8.tflite)",
    )
    p.add_argument("--json", type=Path, help="also write the rows as JSON")
    return p.parse_args(argv)


def train_and_export(arch: str, args: argparse.Namespace) -> tuple[Path, float | None]:
    """Train + export one architecture; returns (run dir, training wall seconds or None when
    an existing run is scored: then metrics.json's summed epoch time is shown instead)."""
    from edgecnn.export import export
    from edgecnn.training import train

    given = dict(item.split("=", 1) for item in args.run)
    run_dir = Path(given[arch]) if arch in given else args.out / arch
    int8 = run_dir / "export" / "model_int8.tflite"
    if arch in given or (args.reuse and int8.exists() and (run_dir / "metrics.json").exists()):
        if not int8.exists() or not (run_dir / "export" / "model.onnx").exists():
            export(run_dir, formats=["tflite-int8", "onnx"], check=args.test)
        return run_dir, None
    val = {"val_split": args.val_split} if args.val_split else {"val_dir": args.test}
    start = time.perf_counter()
    train(args.train_dir, arch=arch, epochs=args.epochs, out=run_dir, force=True, **val)
    seconds = time.perf_counter() - start
    export(run_dir, formats=["tflite-int8", "onnx"], check=args.test)
    return run_dir, seconds


def score(run_dir: Path, test: Path) -> dict:
    """Keras / int8 TFLite / ONNX accuracy on `test`, decoded once with the model's contract."""
    from edgecnn.runtime import evaluate, load
    from edgecnn.runtime.dataset import list_dataset, load_pixels

    files = {
        "keras": run_dir / "model.keras",
        "int8": run_dir / "export/model_int8.tflite",
        "onnx": run_dir / "export/model.onnx",
    }
    backends = {"keras": "keras", "int8": "tflite", "onnx": "onnx"}
    first = load(files["int8"], backend="tflite", threads=1)
    decoded = load_pixels(list_dataset(test, classes=first.labels), first.contract, progress=False)
    out = {"n_test": int(len(decoded.targets))}
    for key, path in files.items():
        clf = first if key == "int8" else load(path, backend=backends[key], threads=2)
        out[f"{key}_accuracy"] = float(evaluate(clf, decoded)["accuracy"])
    return out


def int8_latency_ms(run_dir: Path) -> float | None:
    """Median batch-1 latency of the int8 TFLite file at 1 thread (`edgecnn bench`)."""
    from edgecnn.bench import BenchConfig, bench

    config = BenchConfig(backends=("tflite",), threads=(1,), runs=500, warmup=50, min_seconds=2.0)
    rows = bench([run_dir / "export" / "model_int8.tflite"], config=config, progress=False)["rows"]
    return rows[0].get("p50_ms") if rows and not rows[0].get("error") else None


def cost(run_dir: Path) -> dict:
    """Parameters and MACs per image, counted on the int8 TFLite graph (BatchNorm folded)."""
    from edgecnn.profile import profile

    total = profile(run_dir / "export" / "model_int8.tflite")["total"]
    return {"params": total["params"], "macs": total["macs"]}


def row_for(arch: str, args: argparse.Namespace) -> dict:
    run_dir, seconds = train_and_export(arch, args)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    contract = json.loads((run_dir / "edgecnn.json").read_text())
    return {
        "arch": arch,
        "run": str(run_dir),
        "img_size": contract["height"],
        **cost(run_dir),
        "train_seconds": round(seconds if seconds is not None else metrics["train_seconds"], 1),
        "train_time_is_epochs_only": seconds is None,
        "epochs_run": metrics.get("epochs_run"),
        "best_epoch": metrics.get("best_epoch"),
        **score(run_dir, args.test),
        "int8_bytes": (run_dir / "export/model_int8.tflite").stat().st_size,
        "int8_latency_ms": int8_latency_ms(run_dir),
    }


def render(rows: list[dict]) -> str:
    head = (
        "| architecture | input | params | MACs | train time | epochs | Keras | int8 TFLite "
        "| ONNX | int8 size | int8 latency (1 thread) |"
    )
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in rows:
        lat = "n/a" if r["int8_latency_ms"] is None else f"{r['int8_latency_ms']:.2f} ms"
        lines.append(
            f"| {r['arch']} | {r['img_size']}x{r['img_size']} | {r['params'] / 1e3:,.0f}k "
            f"| {r['macs'] / 1e6:,.1f}M | {r['train_seconds'] / 60:.1f} min"
            f"{'*' if r['train_time_is_epochs_only'] else ''} "
            f"| {r['epochs_run']} (best {r['best_epoch']}) | {100 * r['keras_accuracy']:.1f}% "
            f"| {100 * r['int8_accuracy']:.1f}% | {100 * r['onnx_accuracy']:.1f}% "
            f"| {r['int8_bytes'] / 1024:,.0f} KiB | {lat} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = parse_args(argv)
    for folder in (args.train_dir, args.test):
        if not folder.is_dir():
            print(f"{folder}: no such folder (give class-per-folder images)", file=sys.stderr)
            return 2
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    rows = [row_for(arch, args) for arch in archs]
    load = os.getloadavg()
    print("command:", shlex.join([sys.executable, *sys.argv]))
    val = f"{args.val_split:.0%} of train" if args.val_split else "the test folder"
    print(
        f"train {args.train_dir}, test {args.test} ({rows[0]['n_test']} images), "
        f"validation: {val}; {cpu_model()}, "
        f"{os.cpu_count()} cores, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}\n"
    )
    print(render(rows))
    if any(r["train_time_is_epochs_only"] for r in rows):
        print("\n* existing run: sum of its epoch times from metrics.json (no decoding/setup)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
