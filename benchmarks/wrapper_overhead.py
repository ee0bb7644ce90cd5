"""Three targets of `edgecnn bench`, measured on one exported run.

1. Wrapper overhead: `Classifier.probs` on an already-preprocessed input vs the backend's bare
   call (LiteRT `set_tensor`/`invoke`/`get_tensor` on a pre-quantised int8 tensor; ONNX Runtime
   `session.run`), for int8 TFLite and ONNX.  Target <= 1.15x.
2. int8 vs fp32 TFLite at 1 thread (`edgecnn bench`, each in its own process).
3. Run-to-run spread: two consecutive `edgecnn bench` runs; every p50 within 15%.

    .venv/bin/python benchmarks/wrapper_overhead.py RUN [--runs 300] [--threads 1]

RUN is a run directory with `export/`: `edgecnn train ../shared/datasets/cats-vs-dogs/train
--val-dir ../shared/datasets/cats-vs-dogs/test --out RUN`, then `edgecnn export RUN`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

WRAPPER_TARGET = 1.15
SPREAD_TARGET = 0.15


def _interleaved(fns: dict, *, runs: int, block: int = 25) -> dict[str, float]:
    """p50 ms of each callable, measured in alternating blocks so drift hits all alike."""
    times: dict[str, list[int]] = {k: [] for k in fns}
    clock = time.perf_counter_ns
    for fn in fns.values():  # warm-up
        for _ in range(block):
            fn()
    while min(len(v) for v in times.values()) < runs:
        for name, fn in fns.items():
            for _ in range(block):
                t = clock()
                fn()
                times[name].append(clock() - t)
    return {k: float(np.percentile(np.asarray(v) / 1e6, 50)) for k, v in times.items()}


def _input(clf) -> np.ndarray:
    from edgecnn.runtime import to_input

    c = clf.contract
    pixels = np.random.default_rng(0).integers(0, 256, (1, c.height, c.width, 3), dtype=np.uint8)
    return to_input(pixels, c)


def tflite_overhead(path: Path, *, threads: int, runs: int) -> dict[str, float]:
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.runtime import load

    clf = load(path, backend="tflite", threads=threads)
    x = _input(clf)
    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    scale, zero = inp["quantization"]
    feed = x
    if inp["dtype"] != np.float32:  # the bare call gets an input that is already quantised
        info = np.iinfo(inp["dtype"])
        feed = np.clip(np.rint(x / scale + zero), info.min, info.max).astype(inp["dtype"])

    def bare():
        it.set_tensor(inp["index"], feed)
        it.invoke()
        return it.get_tensor(out["index"])

    return _interleaved({"bare": bare, "wrapper": lambda: clf.probs(x)}, runs=runs)


def onnx_overhead(path: Path, *, threads: int, runs: int) -> dict[str, float]:
    import onnxruntime as ort

    from edgecnn.runtime import load

    clf = load(path, backend="onnx", threads=threads)
    x = _input(clf)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return _interleaved(
        {"bare": lambda: sess.run(None, {name: x}), "wrapper": lambda: clf.probs(x)}, runs=runs
    )


def _bench(targets: list[Path], *, threads: int, runs: int) -> dict:
    from edgecnn.bench import BenchConfig, bench

    config = BenchConfig(
        backends=("tflite", "onnx"),
        threads=(threads,),
        runs=runs,
        warmup=50,
        warmup_seconds=1.0,
        min_seconds=2.0,
    )
    return bench(targets, config=config, progress=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory with export/")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    export = args.run / "export"
    print("command:", shlex.join([sys.executable, *sys.argv]))
    ok = True

    print(
        f"\n1. wrapper overhead (Classifier.probs vs bare call, {args.threads} thread, p50 of {args.runs})"
    )
    for name, fn in (
        ("model_int8.tflite", tflite_overhead),
        ("model.onnx", onnx_overhead),
        ("model_int8.onnx", onnx_overhead),
    ):
        path = export / name
        if not path.is_file():
            print(f"   {name}: not in {export}, skipped")
            continue
        r = fn(path, threads=args.threads, runs=args.runs)
        ratio = r["wrapper"] / r["bare"]
        ok &= ratio <= WRAPPER_TARGET
        verdict = "ok" if ratio <= WRAPPER_TARGET else "ABOVE TARGET"
        print(
            f"   {name:<18} bare {r['bare']:.3f} ms  wrapper {r['wrapper']:.3f} ms  "
            f"ratio {ratio:.3f}x (target <= {WRAPPER_TARGET}x) {verdict}"
        )

    print(
        f"\n2+3. two consecutive `edgecnn bench` runs (tflite+onnx, {args.threads} thread, {args.runs} runs)"
    )
    targets = [
        p
        for p in (
            export / n
            for n in ("model_int8.tflite", "model_fp32.tflite", "model.onnx", "model_int8.onnx")
        )
        if p.is_file()
    ]
    first = _bench(targets, threads=args.threads, runs=args.runs)
    second = _bench(targets, threads=args.threads, runs=args.runs)
    p50 = {(r["artifact"], r["backend"]): r.get("p50_ms") for r in first["rows"]}
    worst = 0.0
    for r in second["rows"]:
        a, b = p50.get((r["artifact"], r["backend"])), r.get("p50_ms")
        if not a or not b:
            print(f"   {r['artifact']} {r['backend']}: error {r.get('error')}")
            continue
        spread = abs(b - a) / min(a, b)
        worst = max(worst, spread)
        print(
            f"   {r['artifact']:<18} {r['backend']:<7} p50 {a:.3f} ms then {b:.3f} ms  spread {100 * spread:.1f}%"
        )
    ok &= worst <= SPREAD_TARGET
    print(
        f"   worst spread {100 * worst:.1f}% (target <= {100 * SPREAD_TARGET:.0f}%) "
        f"{'ok' if worst <= SPREAD_TARGET else 'ABOVE TARGET'}"
    )
    i8 = p50.get(("model_int8.tflite", "tflite"))
    f32 = p50.get(("model_fp32.tflite", "tflite"))
    if i8 and f32:
        ok &= i8 < f32
        print(
            f"\n   int8 vs fp32 TFLite at {args.threads} thread: {i8:.3f} ms vs {f32:.3f} ms p50 -> "
            f"int8 is {f32 / i8:.2f}x {'faster' if i8 < f32 else 'SLOWER'}"
        )
    print("\nall targets met" if ok else "\nsome targets NOT met (see above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
