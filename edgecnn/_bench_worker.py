"""One benchmark measurement in a fresh process: `python -m edgecnn._bench_worker SPEC OUT`.

`edgecnn.bench` starts one of these per artifact x backend x thread count so that each backend's
imports, thread pools and memory stay out of the others' numbers (peak RSS is this process's
own).  SPEC is a JSON file written by the parent; OUT receives one JSON object: the measurements,
or `{"error": ...}`.  On the tflite/onnx/opencv path only `edgecnn.runtime` is imported, never
TensorFlow — the row records whether that held.

Two modes:
- `bench`: load time, first inference, warm-up (by count and by time), steady-state latencies,
  FPS at batch 1, peak RSS, and with data: accuracy and top-1 agreement with the reference.
- `predict`: only top-1 predictions on the data, saved as .npy (the Keras reference, computed
  once and handed to every `bench` child).
"""

from __future__ import annotations

import io
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path

import numpy as np

BATCH = 32  # images per call when scoring accuracy; latency is always measured at batch 1


def _peak_rss_bytes() -> int:
    # Linux: VmHWM is this process's own peak; ru_maxrss survives fork+exec, so a worker started
    # by a process holding TensorFlow would report its parent's peak instead.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            lines = status.read().splitlines()
        for line in lines:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    # ru_maxrss is KiB on Linux and bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def _top1(clf, pixels: np.ndarray) -> np.ndarray:
    out = [
        np.argmax(clf.probs_pixels(pixels[i : i + BATCH]), axis=1)
        for i in range(0, len(pixels), BATCH)
    ]
    return np.concatenate(out).astype(np.int64)


def _sample_input(clf, spec: dict) -> np.ndarray:
    """One preprocessed image (1xHxWx3 float32): the first data image, or a fixed random one."""
    from edgecnn.runtime.preprocess import to_input

    if spec.get("pixels"):
        pixels = np.load(spec["pixels"], mmap_mode="r")[:1]
    else:
        c = clf.contract
        pixels = np.random.default_rng(0).integers(
            0, 256, (1, c.height, c.width, 3), dtype=np.uint8
        )
    return np.ascontiguousarray(to_input(np.asarray(pixels), clf.contract), dtype=np.float32)


def _backend_info(clf) -> dict:
    """What the runtime says it runs (module version, delegate, provider), flattened to scalars."""
    describe = getattr(clf, "describe", None)
    info = describe() if callable(describe) else {}
    out = {}
    for key, value in info.items():
        if key in ("path", "backend", "threads"):
            continue
        out["backend_version" if key == "module" else key] = (
            value
            if isinstance(value, (str, int, float, bool)) or value is None
            else json.dumps(value)
        )
    return out


def _time_calls(fn, x, *, count: int, seconds: float) -> tuple[list[int], float]:
    """Call fn(x) at least `count` times and for at least `seconds`; per-call ns and wall time."""
    times: list[int] = []
    clock = time.perf_counter_ns
    start = clock()
    deadline = start + int(seconds * 1e9)
    while len(times) < count or clock() < deadline:
        t = clock()
        fn(x)
        times.append(clock() - t)
    return times, (clock() - start) / 1e9


def measure(spec: dict) -> dict:
    t0 = time.perf_counter()
    from edgecnn.runtime import load

    import_s = time.perf_counter() - t0
    t = time.perf_counter()
    clf = load(spec["model"], backend=spec["backend"], threads=spec["threads"])
    load_s = time.perf_counter() - t
    x = _sample_input(clf, spec)
    t = time.perf_counter()
    clf.probs(x)
    first_ms = (time.perf_counter() - t) * 1e3
    warm, warm_s = _time_calls(clf.probs, x, count=spec["warmup"], seconds=spec["warmup_seconds"])
    lat, total_s = _time_calls(
        clf.probs, x, count=spec["runs"], seconds=spec.get("min_seconds", 0.0)
    )
    ms = np.asarray(lat, dtype=np.float64) / 1e6
    row = {
        "import_s": import_s,
        "load_s": load_s,
        "first_ms": first_ms,
        "warmup_runs": len(warm),
        "warmup_s": warm_s,
        "runs": len(lat),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
        "fps": len(lat) / total_s if total_s > 0 else None,
        "resolved_backend": getattr(clf, "backend", spec["backend"]),
        **_backend_info(clf),
    }
    if spec.get("pixels"):
        row.update(_accuracy(clf, spec))
    row["peak_rss_bytes"] = _peak_rss_bytes()
    row["imported_tensorflow"] = "tensorflow" in sys.modules
    return row


def _accuracy(clf, spec: dict) -> dict:
    pixels = np.load(spec["pixels"])
    pred = _top1(clf, pixels)
    out: dict = {"n_images": int(len(pred))}
    if spec.get("targets"):
        out["accuracy"] = float(np.mean(pred == np.load(spec["targets"])))
    if spec.get("reference"):
        out["agreement"] = float(np.mean(pred == np.load(spec["reference"])))
    return out


def predict(spec: dict) -> dict:
    from edgecnn.runtime import load
    from edgecnn.runtime.files import write_atomic

    clf = load(spec["model"], backend=spec["backend"], threads=spec["threads"])
    pred = _top1(clf, np.load(spec["pixels"]))
    npy = io.BytesIO()
    np.save(npy, pred)
    write_atomic(spec["save"], npy.getvalue())
    return {"n_images": int(len(pred))}


def pipeline(spec: dict) -> dict:
    """The live loop (`edgecnn run`'s) on a source: frames, FPS and per-stage p50/p99."""
    from edgecnn.runtime.live import live

    with live(
        spec["model"],
        spec["source"],
        backend=spec["backend"],
        threads=spec["threads"],
        max_frames=spec["frames"],
        on_status=lambda message: None,
    ) as loop:
        for _ in loop:
            pass
        summary = loop.summary().to_dict()
    stages = {
        k: {"p50_ms": v, "p99_ms": summary["p99_ms"][k]} for k, v in summary["p50_ms"].items()
    }
    return {
        "frames": summary["frames"],
        "fps": summary["fps"],
        "dropped": summary["dropped"],
        "stages": stages,
        "frame_age_ms": summary["frame_age_ms"],
    }


def decode(spec: dict) -> dict:
    """Decode-only ceiling: how fast the source alone delivers frames (no model)."""
    from edgecnn.runtime.live import open_source

    source = open_source(spec["source"])
    times = []
    start = time.perf_counter()
    try:
        while len(times) < spec["frames"]:
            t = time.perf_counter()
            if source.read() is None:
                break
            times.append((time.perf_counter() - t) * 1e3)
    finally:
        source.close()
    seconds = time.perf_counter() - start
    ms = np.asarray(times or [0.0])
    capture = {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}
    return {
        "frames": len(times),
        "fps": len(times) / seconds if seconds > 0 else None,
        "stages": {"capture": capture, "total": capture},
    }


MODES = {
    "bench": lambda spec: measure(spec),
    "predict": lambda spec: predict(spec),
    "pipeline": lambda spec: pipeline(spec),
    "decode": lambda spec: decode(spec),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m edgecnn._bench_worker SPEC.json OUT.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    try:
        result = MODES[spec.get("mode", "bench")](spec)
        code = 0
    except Exception as e:  # any failure becomes this row's error; the parent runs the rest
        result = {"error": f"{type(e).__name__}: {e}".strip().splitlines()[0][:400]}
        if os.environ.get("EDGECNN_BENCH_DEBUG"):
            traceback.print_exc()
        code = 1
    from edgecnn.runtime.files import write_atomic  # here: not part of any measured import

    write_atomic(argv[1], json.dumps(result))
    return code


if __name__ == "__main__":
    sys.exit(main())
