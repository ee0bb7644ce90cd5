"""Cold start: process start -> first prediction, runtime path vs TensorFlow path.

What a device pays every time the classifier process starts (boot, crash restart, a cron job,
a serverless call).  Every repetition is a fresh Python process that imports edgecnn, opens the
model and classifies one 640x480 frame; the time is measured from just before the parent spawns
the child to the moment the child has the prediction (wall clock on the same machine), so it
includes interpreter start, imports, model loading and the first inference.  The CLI rows time
a whole `edgecnn predict` process, exit included.

    python benchmarks/cold_start.py runs/NAME            # a run directory with export/
    python benchmarks/cold_start.py runs/NAME --runs 9 --json cold_start.json

Target: runtime path (.tflite via LiteRT, .onnx via ONNX Runtime) <= 0.5 s median.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import time
import numpy as np
from edgecnn.runtime import load
clf = load({model!r}, backend={backend!r}, threads={threads})
pred = clf.predict(np.full((480, 640, 3), 127, np.uint8), top_k=1)
t, cpu = time.time(), time.process_time()
heavy = sorted({{m.split(".")[0] for m in __import__("sys").modules}} & {{"tensorflow", "keras"}})
print(t, cpu, pred[0][0], ",".join(heavy) or "-")
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def time_api(model: Path, backend: str, threads: int) -> tuple[float, float, str]:
    """Seconds from spawning a fresh interpreter to its first prediction, the CPU seconds the
    child used until then (less sensitive to a busy machine), and the heavy modules it loaded."""
    code = CHILD.format(model=str(model), backend=backend, threads=threads)
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=300
    )
    if proc.returncode != 0:
        raise SystemExit(f"child failed for {model} ({backend}):\n{proc.stderr}")
    t, cpu, _label, heavy = proc.stdout.strip().splitlines()[-1].split()
    return float(t) - start, float(cpu), heavy


def time_cli(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of a whole command (start to exit)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=_env(), timeout=300)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"command failed: {shlex.join(argv)}\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def cases(run: Path, threads: int, image: Path | None) -> list[dict]:
    export = run / "export"
    found = []
    for name, model, backend in [
        ("runtime: int8 .tflite via LiteRT", export / "model_int8.tflite", "tflite"),
        ("runtime: fp32 .tflite via LiteRT", export / "model_fp32.tflite", "tflite"),
        ("runtime: .onnx via ONNX Runtime", export / "model.onnx", "onnx"),
        ("runtime: .onnx via OpenCV DNN", export / "model.onnx", "opencv"),
        ("tensorflow: .keras via Keras", run / "model.keras", "keras"),
    ]:
        if model.is_file():
            found.append({"name": name, "kind": "api", "model": model, "backend": backend})
    if image is not None:
        edgecnn = str(Path(sys.executable).with_name("edgecnn"))
        for name, model in [
            ("cli: edgecnn predict int8 .tflite", export / "model_int8.tflite"),
            ("cli: edgecnn predict .onnx", export / "model.onnx"),
            ("cli: edgecnn predict .keras", run / "model.keras"),
        ]:
            if model.is_file():
                argv = [edgecnn, "predict", str(model), str(image), "--threads", str(threads)]
                found.append({"name": name, "kind": "cli", "argv": argv, "model": model})
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="run directory (model.keras, export/*)")
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per case")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--image",
        type=Path,
        default=None,
        help="an image file: also time whole `edgecnn predict` processes",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    todo = cases(args.run, args.threads, args.image)
    if not todo:
        raise SystemExit(f"{args.run}: no model.keras or export/*.tflite|onnx found")
    rows = []
    load_before = os.getloadavg()
    print(
        f"load average before: {load_before[0]:.2f} on {os.cpu_count()} CPUs "
        "(cold starts are mostly imports and file reads: a busy machine inflates them)"
    )
    for case in todo:
        if case["kind"] == "api":
            time_api(case["model"], case["backend"], args.threads)  # warm the OS file cache
            results = [
                time_api(case["model"], case["backend"], args.threads) for _ in range(args.runs)
            ]
            samples, cpus = [r[0] for r in results], [r[1] for r in results]
            heavy = results[0][2]
            command = (
                f"{sys.executable} -c '<import edgecnn.runtime; load({case['model']}, "
                f"backend={case['backend']!r}); predict(640x480 frame)>'"
            )
        else:
            time_cli(case["argv"])
            results = [time_cli(case["argv"]) for _ in range(args.runs)]
            samples, cpus = [r[0] for r in results], [r[1] for r in results]
            command, heavy = shlex.join(case["argv"]), "?"
        rows.append(
            {
                "case": case["name"],
                "median_s": statistics.median(samples),
                "min_s": min(samples),
                "max_s": max(samples),
                "cpu_median_s": statistics.median(cpus),
                "runs": len(samples),
                "tf_imported": heavy,
                "command": command,
                "runtime_path": case["kind"] == "api" and case["backend"] in ("tflite", "onnx"),
            }
        )
        r = rows[-1]
        print(
            f"{r['case']:<36} median {r['median_s']:.3f} s  (min {r['min_s']:.3f}, "
            f"max {r['max_s']:.3f}, n={r['runs']}; CPU {r['cpu_median_s']:.3f} s; "
            f"TF/Keras imported: {heavy})",
            flush=True,
        )
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.2f}\n")
    for r in rows:
        print(f"$ {r['command']}")
    runtime = [r["median_s"] for r in rows if r["runtime_path"]]
    if runtime:
        verdict = "meets" if max(runtime) <= 0.5 else "MISSES"
        print(
            f"\nruntime path (LiteRT / ONNX Runtime) worst median {max(runtime):.3f} s: "
            f"{verdict} the 0.5 s target"
        )
    if args.json:
        doc = {
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "load_average": [load_before[0], load_after[0]],
            "rows": rows,
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
