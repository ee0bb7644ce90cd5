"""How close `edgecnn run` gets to the hardware ceiling on a 640x480 video.

    python benchmarks/pipeline.py [MODEL_INT8.tflite] [--frames 600] [--keras MODEL.keras]
                                  [--repeat N]

Makes a 640x480 test video, then measures in one run:

  (a) decode-only throughput of that file with OpenCV (FFmpeg's own thread count, and the
      loop's single decoding thread: the faster rate and the lower CPU time a frame count);
  (b) bare inference throughput of the int8 TFLite model at 1 thread on an already-preprocessed
      input (the interpreter's invoke on a quantised tensor; also the loop's one-frame call,
      `Classifier.frame_probs`, with what it adds around the invoke);
  (c) `edgecnn run MODEL --source VIDEO --threads 1 --jsonl FILE` (headless, a subprocess);
      then the same loop in this process, its CPU time a frame split by thread (Linux), to
      show where the loop's own work goes beside the stages';
  (d) a naive loop: read -> resize -> Keras `model.predict`, one frame at a time.

With capture and inference overlapped on two cores the ceiling is min(a, b); two cores also
cannot beat 2 / (decode + resize + invoke CPU time per frame).  The script prints (c) against
both, which one is the limit, and the target: >= 90% of min(a, b), or >= 95% of the 2-core
bound where that is lower; (c) against the loop's one decoding thread alone, which no loop
that decodes on one thread can beat; then (c) / (d) and the capture-to-result latency p50/p99
of (c).
With `--repeat N`, (a), (b), the resize and (c) are measured N times in turn and the ratio to
the limit is printed for each, with the median and how many runs met the target: on a shared
machine one run's ratio moves by several points.  MODEL defaults to the newest
runs/*/export/model_int8.tflite; the Keras model for (d) to the run directory's model.keras.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT = 640, 480
ROOT = Path(__file__).resolve().parents[1]


def make_video(path: Path, frames: int, fps: float = 30.0) -> Path:
    """A 640x480 MPEG-4 clip with moving shapes over a gradient (real texture for the codec)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise SystemExit(f"OpenCV cannot write {path}")
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack(
        [xx * 255 // WIDTH, yy * 255 // HEIGHT, (xx + yy) * 255 // (WIDTH + HEIGHT)], -1
    )
    base = base.astype(np.uint8)
    for i in range(frames):
        img = np.roll(base, 4 * i, axis=1).copy()
        cx, cy = (80 + 7 * i) % WIDTH, (60 + 5 * i) % HEIGHT
        cv2.circle(img, (cx, cy), 60, (40, 40 + i % 200, 230), -1)
        cv2.rectangle(img, ((3 * i) % WIDTH, 300), ((3 * i) % WIDTH + 120, 420), (200, 80, 20), -1)
        cv2.putText(img, f"frame {i}", (20, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 2)
        writer.write(img)
    writer.release()
    return path


def _cpu(who: int = resource.RUSAGE_SELF) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _decode(video: Path, params: list[int]) -> dict:
    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG, params)
    n = 0
    t0, c0 = time.perf_counter(), _cpu()
    while cap.read()[0]:
        n += 1
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    cap.release()
    return {"frames": n, "fps": n / seconds, "cpu_ms": 1000 * cpu / n}


def decode_only(video: Path) -> dict:
    """Decoding alone, with FFmpeg's own thread count (one per core: the fastest) and with the
    loop's decoder (`DECODE_THREADS`: the least CPU a frame).  The ceiling takes the faster
    rate and the 2-core bound the cheaper frame, so neither flatters the loop."""
    from edgecnn.runtime.live.sources import DECODE_THREADS

    ffmpeg = _decode(video, [])
    loop = _decode(video, [cv2.CAP_PROP_N_THREADS, DECODE_THREADS])
    return {
        "frames": ffmpeg["frames"],
        "fps": max(ffmpeg["fps"], loop["fps"]),
        "cpu_ms": min(ffmpeg["cpu_ms"], loop["cpu_ms"]),
        "ffmpeg_threads": ffmpeg,
        "loop_decoder": loop,
    }


def preprocess_only(model: Path, video: Path, *, frames: int = 200) -> dict:
    """What the loop does to a decoded 640x480 frame before the model: `to_pixels` (the
    contract's resize), and `to_input` only for a model that does not take the pixels as
    they are."""
    from edgecnn.runtime import load, to_input, to_pixels

    clf = load(model, backend="tflite", threads=1)
    contract = clf.contract
    cap = cv2.VideoCapture(str(video))
    images = [cap.read()[1] for _ in range(20)]
    cap.release()
    t0, c0 = time.perf_counter(), _cpu()
    for i in range(frames):
        pixels = to_pixels(images[i % len(images)], contract)
        if not clf.takes_raw_pixels:
            to_input(pixels, contract)
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    return {
        "fps": frames / seconds,
        "cpu_ms": 1000 * cpu / frames,
        "resize": contract.interpolation,
    }


def bare_inference(model: Path, video: Path, *, seconds: float = 3.0) -> dict:
    """Interpreter invoke on an already-quantised input, and the loop's one-frame call
    (`Classifier.frame_probs` on `frame_input`: uint8 pixels as they are, or float32 input the
    backend quantises)."""
    from edgecnn.runtime import load, to_input, to_pixels
    from edgecnn.runtime.backends.tflite import find_interpreter

    clf = load(model, backend="tflite", threads=1)
    cap = cv2.VideoCapture(str(video))
    frame = cap.read()[1]
    cap.release()
    pixels = to_pixels(frame, clf.contract)
    x = to_input(pixels, clf.contract)[None]
    frame_input = clf.frame_input(pixels).copy()

    interpreter_cls, module = find_interpreter()
    it = interpreter_cls(model_path=str(model), num_threads=1)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    scale, zero = inp["quantization"]
    q = x if inp["dtype"] == np.float32 else np.clip(np.rint(x / scale + zero), -128, 127)
    it.set_tensor(inp["index"], q.astype(inp["dtype"]))

    def rate(step) -> tuple[float, float]:
        for _ in range(20):
            step()
        n, t0, c0 = 0, time.perf_counter(), _cpu()
        while time.perf_counter() - t0 < seconds:
            for _ in range(20):
                step()
            n += 20
        return n / (time.perf_counter() - t0), 1000 * (_cpu() - c0) / n

    invoke_fps, invoke_cpu = rate(it.invoke)
    probs_fps, probs_cpu = rate(lambda: clf.frame_probs(frame_input))
    return {
        "invoke_fps": invoke_fps,
        "probs_fps": probs_fps,
        "invoke_cpu_ms": invoke_cpu,
        "probs_cpu_ms": probs_cpu,
        "input": f"{clf.contract.height}x{clf.contract.width}",
        "interpreter": module,
    }


def _edgecnn_run(
    model: Path, video: Path, out: Path, *extra: str
) -> tuple[subprocess.CompletedProcess, float]:
    cmd = [sys.executable, "-m", "edgecnn", "run", str(model), "--source", str(video),
           "--threads", "1", "--jsonl", str(out), *extra]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    c0 = _cpu(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    return proc, _cpu(resource.RUSAGE_CHILDREN) - c0


def edgecnn_run(model: Path, video: Path, workdir: Path) -> dict:
    """The command as a user runs it; its CPU time per frame (start-up subtracted, measured by
    a one-frame run) is the load-independent figure."""
    out = workdir / "run.jsonl"
    _, startup_cpu = _edgecnn_run(model, video, workdir / "startup.jsonl", "--max-frames", "1")
    proc, cpu = _edgecnn_run(model, video, out)
    if proc.returncode != 0:
        raise SystemExit(f"edgecnn run failed ({proc.returncode}):\n{proc.stderr}")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    match = re.search(r"frames processed: (\d+).*?([\d.]+) FPS", proc.stderr)
    total = np.array([r["total_ms"] for r in rows])
    return {
        "frames": len(rows),
        "fps": float(match.group(2)) if match else float("nan"),
        "cpu_ms": 1000 * max(0.0, cpu - startup_cpu) / max(1, len(rows)),
        "latency_p50_ms": float(np.percentile(total, 50)),
        "latency_p99_ms": float(np.percentile(total, 99)),
        "stage_p50_ms": {
            k: float(np.median([r[f"{k}_ms"] for r in rows]))
            for k in ("capture", "preprocess", "inference", "postprocess")
        },
        "summary": proc.stderr.strip().splitlines()[-8:],
    }


def _thread_cpu(native_id: int) -> float:
    """CPU seconds of one thread of this process, from /proc (Linux)."""
    with open(f"/proc/self/task/{native_id}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _timed(owner: object, name: str, stage: str, spent: dict) -> None:
    """Wrap `owner.name` so that the CPU time of each call adds to `spent[(thread, stage)]` (by
    thread too: the capture and inference threads both resize, and may add at the same time)."""
    call = getattr(owner, name)

    def timed(*args, **kwargs):
        t0 = time.thread_time()
        try:
            return call(*args, **kwargs)
        finally:
            key = (threading.current_thread().name, stage)
            spent[key] = spent.get(key, 0.0) + time.thread_time() - t0

    setattr(owner, name, timed)


def loop_threads(model: Path, video: Path, workdir: Path, *, every: int = 100) -> dict | None:
    """The live loop of (c) in this process, writing the same JSON lines (`JsonlWriter`), with its
    CPU time a frame split by thread: `capture` (decoding, and the resize when it is ahead),
    `inference` (the invoke, and the resize otherwise), `iterating` (results and output) and
    `other` (FFmpeg's and the interpreter's own threads); and within the loop's threads by
    stage (`time.thread_time` around each decode, resize and invoke call, a few microseconds a
    frame): `stages` is what decoding, resizing and the invoke cost inside the loop, to set
    beside what they cost alone, and `own` the rest of the loop threads' time.  Counted between
    snapshots taken every `every` results, from the first to the last one while every loop
    thread was alive; None without /proc."""
    from edgecnn.runtime.live import live
    from edgecnn.runtime.live.outputs import JsonlWriter

    if not Path("/proc/self/task").is_dir():
        return None
    names = {"MainThread": "iterating", "edgecnn-capture": "capture", "edgecnn-infer": "inference"}
    spent: dict[tuple[str, str], float] = {}

    def snapshot(index: int) -> dict | None:
        try:
            per = {names[t.name]: _thread_cpu(t.native_id) for t in threading.enumerate()
                   if t.name in names}  # fmt: skip
        except FileNotFoundError:  # a thread ended between enumerate() and the read
            return None
        if len(per) < len(names):
            return None
        stages = {stage: sum(v for (_, s), v in spent.items() if s == stage)
                  for stage in ("decode", "resize", "invoke")}  # fmt: skip
        return {"index": index, "t": time.perf_counter(), "process": time.process_time(),
                **per, **stages}  # fmt: skip

    first = last = None
    sink = JsonlWriter(workdir / "threads.jsonl")
    with live(str(model), str(video), threads=1) as loop:
        _timed(loop.source, "read", "decode", spent)
        _timed(loop._capture, "prepare", "resize", spent)  # in the capture thread
        _timed(loop.classifier, "frame_pixels", "resize", spent)  # in the inference thread
        _timed(loop.classifier, "frame_probs", "invoke", spent)
        for i, result in enumerate(loop, 1):
            sink.write(result, None)
            if i % every == 0:
                snap = snapshot(i)
                first = first or snap
                last = snap or last
    sink.close()
    if first is None or last["index"] == first["index"]:
        return None
    frames = last["index"] - first["index"]
    keys = ("process", *names.values(), "decode", "resize", "invoke")
    ms = {k: 1000 * (last[k] - first[k]) / frames for k in keys}
    ms["other"] = ms["process"] - sum(ms[k] for k in names.values())
    stages = {k: ms.pop(k) for k in ("decode", "resize", "invoke")}
    own = sum(ms[k] for k in names.values()) - sum(stages.values())
    return {"frames": frames, "fps": frames / (last["t"] - first["t"]), "cpu_ms": ms,
            "stages_cpu_ms": stages, "own_cpu_ms": own}  # fmt: skip


def naive_keras(keras_path: Path, video: Path, *, frames: int) -> dict:
    """What a first attempt looks like: read, resize, model.predict, one frame at a time."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    model = keras.models.load_model(keras_path, compile=False)
    h, w = model.input_shape[1:3]
    cap = cv2.VideoCapture(str(video))
    n, t0 = 0, None
    while n < frames:
        ok, frame = cap.read()
        if not ok:
            break
        x = cv2.cvtColor(cv2.resize(frame, (w, h)), cv2.COLOR_BGR2RGB).astype(np.float32)[None]
        model.predict(x, verbose=0)
        if t0 is None:  # the first call builds the graph: not part of the steady state
            t0 = time.perf_counter()
            continue
        n += 1
    cap.release()
    return {"frames": n, "fps": n / (time.perf_counter() - t0)}


def limits(a: dict, b: dict, p: dict, c: dict) -> dict:
    """The run's ratio to what the hardware allows, and which side is the limit.

    The ceiling is min(decode-only, bare invoke): capture and inference overlapped on two cores.
    Two cores cannot beat 2 / (decode + resize + invoke CPU per frame) either; where that
    2-core bound is below the ceiling, it is the limit and the target is 95% of it, else 90%
    of the ceiling.
    """
    ceiling = min(a["fps"], b["invoke_fps"])
    stage_cpu = a["cpu_ms"] + p["cpu_ms"] + b["invoke_cpu_ms"]
    bound = 2000 / stage_cpu
    if bound < ceiling:
        limit, name, target = bound, "2-core CPU bound", 0.95
    else:
        limit, target = ceiling, 0.90
        name = "decode" if a["fps"] <= b["invoke_fps"] else "inference"
    return {
        "run_fps": c["fps"],
        "ceiling_fps": ceiling,
        "run_vs_ceiling": c["fps"] / ceiling,
        "stage_cpu_ms": stage_cpu,
        "two_core_bound_fps": bound,
        "run_vs_two_core_bound": c["fps"] / bound,
        "limit": name,
        "limit_fps": limit,
        "run_vs_limit": c["fps"] / limit,
        "target": target,
    }


def report(f: dict) -> str:
    a, b, p, c = f["decode"], f["inference"], f["preprocess"], f["edgecnn_run"]
    lines = [
        f"ceiling min(a, b)      {f['ceiling_fps']:8.1f} FPS   (c) / ceiling = "
        f"{f['run_vs_ceiling']:.1%}",
        f"CPU per frame: decode {a['cpu_ms']:.2f} + resize {p['cpu_ms']:.2f} + invoke "
        f"{b['invoke_cpu_ms']:.2f} = {f['stage_cpu_ms']:.2f} ms; edgecnn run "
        f"{c['cpu_ms']:.2f} ms",
        f"2-core bound 2/(sum)   {f['two_core_bound_fps']:8.1f} FPS   (c) / bound = "
        f"{f['run_vs_two_core_bound']:.1%}",
        f"one decoding thread    {a['loop_decoder']['fps']:8.1f} FPS   (c) / that = "
        f"{c['fps'] / a['loop_decoder']['fps']:.1%} (the loop's decoder: no faster on one thread)",
        f"limit: {f['limit']} ({f['limit_fps']:.1f} FPS); (c) / limit = "
        f"{f['run_vs_limit']:.1%}, target >= {f['target']:.0%}: "
        + ("met" if f["run_vs_limit"] >= f["target"] else "NOT met"),
    ]
    if f["run_vs_naive"]:
        lines.append(f"(c) / (d)              = {f['run_vs_naive']:.1f}x")
    lines.append(
        f"capture-to-result latency of (c): p50 {c['latency_p50_ms']:.2f} ms, "
        f"p99 {c['latency_p99_ms']:.2f} ms"
    )
    lines.append(
        "(c) stage p50 ms: " + "  ".join(f"{k} {v:.2f}" for k, v in c["stage_p50_ms"].items())
    )
    load = ", ".join(f"{x:.1f}" for x in f["load_average"])
    lines.append(
        f"load average during the run: {load} on {os.cpu_count()} CPUs (other work skews FPS)"
    )
    return "\n".join(lines)


def ratio_line(lim: dict) -> str:
    return (
        f"(c) {lim['run_fps']:.1f} FPS, limit {lim['limit']} "
        f"{lim['limit_fps']:.1f} FPS, (c) / limit = {lim['run_vs_limit']:.1%}"
    )


def repeat_summary(repeats: list[dict]) -> str:
    """The ratio to the limit over repeated measurements: each, the median, how many met."""
    ratios = [r["run_vs_limit"] for r in repeats]
    met = sum(r["run_vs_limit"] >= r["target"] for r in repeats)
    listed = ", ".join(f"{x:.1%}" for x in sorted(ratios))
    return (
        f"(c) / limit over {len(ratios)} runs: {listed}; median {float(np.median(ratios)):.1%}; "
        f"target met in {met} of {len(ratios)}"
    )


def default_model() -> Path | None:
    found = sorted(glob.glob(str(ROOT / "runs/*/export/model_int8.tflite")), key=os.path.getmtime)
    return Path(found[-1]) if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "model", nargs="?", type=Path, help="int8 .tflite (default: newest in runs/)"
    )
    parser.add_argument("--frames", type=int, default=600, help="frames in the test video")
    parser.add_argument("--keras", type=Path, help="Keras model for (d) (default: RUN/model.keras)")
    parser.add_argument("--naive-frames", type=int, default=150, help="frames for (d)")
    parser.add_argument(
        "--repeat", type=int, default=1,
        help="measure (a), (b), the resize and (c) this many times in turn and print the "
        "median ratio to the limit (a shared machine's speed drifts between runs)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    model = args.model or default_model()
    if model is None or not model.is_file():
        parser.error("no int8 model: pass MODEL or create runs/NAME/export/model_int8.tflite")
    keras_path = args.keras or model.parent.parent / "model.keras"

    with tempfile.TemporaryDirectory(prefix="edgecnn-pipeline-") as tmp:
        workdir = Path(tmp)
        video = make_video(workdir / "test_640x480.mp4", args.frames)
        print(f"model {model}\nvideo {WIDTH}x{HEIGHT}, {args.frames} frames, MPEG-4 (mp4v)\n")
        a = decode_only(video)
        ff, one = a["ffmpeg_threads"], a["loop_decoder"]
        print(f"(a) decode only (OpenCV)            {a['fps']:8.1f} FPS  "
              f"(CPU {a['cpu_ms']:.2f} ms/frame)")  # fmt: skip
        print(f"    FFmpeg's threads {ff['fps']:.1f} FPS, {ff['cpu_ms']:.2f} ms/frame; "
              f"the loop's one thread {one['fps']:.1f} FPS, {one['cpu_ms']:.2f} ms/frame")  # fmt: skip
        b = bare_inference(model, video)
        print(f"(b) inference, 1 thread ({b['input']})     {b['invoke_fps']:8.1f} FPS  "
              f"(the loop's one-frame call: {b['probs_fps']:.1f})")  # fmt: skip
        p = preprocess_only(model, video)
        print(f"    preprocess only ({p['resize']} resize)  {p['fps']:8.1f} FPS  "
              f"(CPU {p['cpu_ms']:.2f} ms/frame; not in min(a, b))")  # fmt: skip
        c = edgecnn_run(model, video, workdir)
        print(f"(c) edgecnn run --threads 1 --jsonl  {c['fps']:8.1f} FPS  ({c['frames']} frames; "
              f"CPU {c['cpu_ms']:.2f} ms/frame)")  # fmt: skip
        repeats = [limits(a, b, p, c)]
        threads = loop_threads(model, video, workdir)
        if threads:
            t = threads["cpu_ms"]
            print(f"    the same loop in this process: {threads['fps']:.1f} FPS, CPU {t['process']:.2f} "
                  f"ms/frame: capture thread {t['capture']:.2f}, inference thread "
                  f"{t['inference']:.2f}, iterating thread {t['iterating']:.2f}, other "
                  f"{t['other']:.2f}")  # fmt: skip
            st, alone = threads["stages_cpu_ms"], repeats[0]["stage_cpu_ms"]
            print(f"    its stages inside it: decode {st['decode']:.2f} + resize {st['resize']:.2f} + "
                  f"invoke {st['invoke']:.2f} = {sum(st.values()):.2f} ms/frame (alone "
                  f"{alone:.2f}); the loop's own work {threads['own_cpu_ms']:.2f}, other "
                  f"{t['other']:.2f}")  # fmt: skip
        for i in range(2, args.repeat + 1):
            again = limits(
                decode_only(video),
                bare_inference(model, video),
                preprocess_only(model, video),
                edgecnn_run(model, video, workdir),
            )
            repeats.append(again)
            print(f"    run {i}: " + ratio_line(again))
        d = None
        if keras_path.is_file():
            d = naive_keras(keras_path, video, frames=args.naive_frames)
            print(f"(d) naive read/resize/predict loop  {d['fps']:8.1f} FPS  (Keras)")
        else:
            print(f"(d) skipped: no Keras model at {keras_path}")

    figures = {
        "model": str(model), "decode": a, "inference": b, "preprocess": p, "edgecnn_run": c,
        "loop_threads": threads,
        "naive": d, "load_average": os.getloadavg(),
        "run_vs_naive": (c["fps"] / d["fps"]) if d else None,
        **repeats[0], "repeats": repeats,
    }  # fmt: skip
    print()
    print(report(figures))
    if len(repeats) > 1:
        print(repeat_summary(repeats))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
