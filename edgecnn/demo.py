"""`edgecnn demo`: the whole product in one offline command, ending in a report to open.

    from edgecnn.demo import demo
    report = demo("runs/demo", quick=True)     # -> runs/demo/report.html

The story, each step a public stage of edgecnn used exactly as a user would:

1. data    `edgecnn.synthetic` writes a labelled shapes dataset: train/, val/ and held-back
           images the model never sees (they feed the benchmark's accuracy and the video clip).
2. train   `edgecnn.training` fits the default `edge` model, with its progress bar.
3. export  `edgecnn.export` writes every format and verifies each against the Keras model.
4. bench   `edgecnn.bench` measures every backend, each in its own process.
5. shifts  the int8 model classifies the held-back images clean and under each camera-like
           shift of `edgecnn.runtime.shifts` (what `edgecnn eval MODEL DATA --shifts` runs).
6. live    a short video clip made of held-back images goes through the live loop
           (`edgecnn.runtime.live.run_live`) on the int8 model, headless, recorded annotated.
7. report  `edgecnn.report` turns all of it into one self-contained `report.html`.

The output folder belongs to the demo (a marker file says so): running again replaces it;
a folder that is not empty and not a demo is refused.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.runtime.errors import InputError
from edgecnn.runtime.files import temp_file, write_atomic
from edgecnn.runtime.formatting import file_size, pct, table

MARKER = ".edgecnn-demo"
SUMMARY_FILE = "demo.json"
REPORT_FILE = "report.html"
SEED = 0
DATA_DIR = "shapes"  # the run is named after it: train() calls data/train "<parent>"


@dataclass(frozen=True)
class Budget:
    """How much work the demo does; sized so each named budget fits its time on 2 cores."""

    name: str
    classes: tuple[str, ...]  # shapes from edgecnn.synthetic.SHAPES, chosen to differ clearly
    train_per_class: int
    val_per_class: int
    heldback_per_class: int
    img_size: int
    epochs: int
    batch: int
    calib_count: int
    bench_runs: int
    bench_warmup: int
    bench_all_artifacts: bool  # False: one artifact per backend (int8/fp32 TFLite, ONNX, Keras)
    clip_images: int  # held-back images shown in the clip
    frames_per_image: int
    heldback_size: int = 128  # held-back images are larger than the model input, like photos
    clip_size: int = 384  # clip frames are square: the overlay is drawn at a readable scale

    def __post_init__(self) -> None:
        if len(self.classes) < 2 or min(self.train_per_class, self.val_per_class) < 2:
            raise InputError("a demo budget needs >= 2 classes and >= 2 images per class")
        if min(self.epochs, self.batch, self.bench_runs, self.frames_per_image) < 1:
            raise InputError("epochs, batch, bench runs and frames per image must be >= 1")


# Measured on a shared 2-core machine (see the commit log for figures).  Small batches give the
# short runs enough optimiser steps.  Validation sets are the export's check sets: at least
# ~150 images, so the int8 gate (accuracy within its standard error, confident answers kept)
# is not decided by one or two borderline images.
BUDGETS = {
    "default": Budget(
        "default",
        classes=("circle", "triangle", "cross", "stripes"),
        train_per_class=150,
        val_per_class=60,
        heldback_per_class=10,
        img_size=48,
        epochs=20,
        batch=16,
        calib_count=600,
        bench_runs=100,
        bench_warmup=10,
        bench_all_artifacts=True,
        clip_images=12,
        frames_per_image=15,
    ),
    "quick": Budget(
        "quick",
        classes=("circle", "cross", "stripes"),
        train_per_class=80,
        val_per_class=50,
        heldback_per_class=4,
        img_size=40,
        epochs=12,
        batch=8,
        calib_count=60,
        bench_runs=30,
        bench_warmup=5,
        bench_all_artifacts=False,
        clip_images=6,
        frames_per_image=8,
    ),
    "tiny": Budget(
        "tiny",
        classes=("circle", "cross", "stripes"),
        train_per_class=16,
        val_per_class=8,
        heldback_per_class=3,
        img_size=32,
        epochs=1,
        batch=16,
        calib_count=24,
        bench_runs=5,
        bench_warmup=1,
        bench_all_artifacts=False,
        clip_images=3,
        frames_per_image=4,
        heldback_size=64,
        clip_size=160,
    ),
}


def demo(
    out: str | os.PathLike = "runs/demo",
    *,
    quick: bool = False,
    show: bool = False,
    progress: bool = True,
    budget: str | Budget | None = None,
) -> Path:
    """Run the whole pipeline on built-in data into `out`; returns the path of report.html.

    Args:
        out: the demo's own folder; replaced if it holds an earlier demo, refused if it holds
            anything else.
        quick: the `quick` budget (about a minute) instead of `default` (a few minutes).
        show: also show the live run in an OpenCV window when this OpenCV and machine can.
        progress: progress bars and step lines on stderr, the summary table on stdout.
        budget: a name from BUDGETS or a `Budget`; overrides `quick` (the tests use "tiny").

    Example:
        >>> demo("runs/demo", quick=True)
        PosixPath('runs/demo/report.html')
    """
    plan = _resolve_budget(budget, quick)
    root = _prepare_out(Path(out))
    say = _say if progress else (lambda message: None)
    steps: dict[str, float] = {}
    started = time.perf_counter()
    summary: dict[str, Any] = {"budget": asdict(plan), "out": str(root), "steps": steps}

    say(f"edgecnn demo ({plan.name} budget) into {root}")
    with _step(steps, "data", say):
        summary["data"] = _make_data(root, plan)
    with _step(steps, "train", say):
        summary["train"] = _train(root, plan, progress)
    run_dir = Path(summary["train"]["run"])
    with _step(steps, "export", say):
        summary["export"] = _export(run_dir, plan, progress)
    with _step(steps, "bench", say):
        summary["bench"] = _bench(run_dir, root, plan, progress)
    with _step(steps, "shifts", say):
        summary["shifts"] = _shifts(run_dir, root, progress)
    with _step(steps, "live", say):
        summary["live"] = _live(run_dir, root, plan, show=show, progress=progress, say=say)
    with _step(steps, "report", say):
        summary["total_seconds"] = round(time.perf_counter() - started, 1)
        _write_json(root / SUMMARY_FILE, summary)
        from edgecnn.report import write_report

        report = write_report(root)
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    _write_json(root / SUMMARY_FILE, summary)
    if progress:
        print(format_summary(summary, report))
    return report


# --- the output folder ---------------------------------------------------------------------


def _resolve_budget(budget: str | Budget | None, quick: bool) -> Budget:
    if isinstance(budget, Budget):
        return budget
    name = budget or ("quick" if quick else "default")
    if name not in BUDGETS:
        raise InputError(f"unknown demo budget {name!r}; choose one of {', '.join(BUDGETS)}")
    return BUDGETS[name]


def _prepare_out(root: Path) -> Path:
    """Empty `root` for a new demo: only an absent, empty or earlier-demo folder is accepted."""
    if root.exists() and not root.is_dir():
        raise InputError(f"--out {root}: exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        if not (root / MARKER).is_file():
            raise InputError(
                f"--out {root}: folder is not empty and was not made by edgecnn demo; "
                "pick another --out"
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("made by `edgecnn demo`; the next demo run replaces this folder\n")
    return root


@contextmanager
def _step(steps: dict[str, float], name: str, say) -> Iterator[None]:
    say(f"--- {name}")
    t0 = time.perf_counter()
    yield
    steps[name] = round(time.perf_counter() - t0, 1)
    say(f"--- {name} done in {steps[name]:.1f} s")


def _say(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr, flush=True)


def _write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


# --- 1. data -------------------------------------------------------------------------------


def _make_data(root: Path, plan: Budget) -> dict[str, Any]:
    """train/ and val/ at model resolution; held-back images larger, as a camera would see them."""
    from edgecnn.synthetic import class_names, generate, generate_split

    data = root / DATA_DIR
    train_dir, val_dir = generate_split(
        data, classes=plan.classes, train_per_class=plan.train_per_class,
        val_per_class=plan.val_per_class, size=plan.img_size, seed=SEED,
    )  # fmt: skip
    # generate_split uses seeds 2*SEED and 2*SEED+1; the held-back images get a stream of their own.
    heldback = generate(
        data / "heldback", classes=plan.classes, per_class=plan.heldback_per_class,
        size=plan.heldback_size, seed=2 * SEED + 2, formats=("png",),
    )  # fmt: skip
    return {
        "classes": list(class_names(plan.classes)),
        "train": str(train_dir),
        "val": str(val_dir),
        "heldback": str(heldback),
        "counts": {
            "train": plan.train_per_class * len(plan.classes),
            "val": plan.val_per_class * len(plan.classes),
            "heldback": plan.heldback_per_class * len(plan.classes),
        },
        "image_size": plan.img_size,
        "heldback_size": plan.heldback_size,
    }


# --- 2. train ------------------------------------------------------------------------------


def _train(root: Path, plan: Budget, progress: bool) -> dict[str, Any]:
    from edgecnn.training import train

    data = root / DATA_DIR
    run = train(
        data / "train", val_dir=data / "val", arch="edge", img_size=plan.img_size,
        epochs=plan.epochs, batch=plan.batch, seed=SEED, out=root / "run", force=True,
        progress=progress, patience=plan.epochs,  # a fixed budget: no early stop on a plateau
    )  # fmt: skip
    m = run.metrics
    return {
        "run": str(run.path),
        "model": str(run.model_path),
        "val_accuracy": m.get("val_accuracy"),
        "best_epoch": m.get("best_epoch"),
        "epochs_run": m.get("epochs_run"),
        "train_seconds": m.get("train_seconds"),
    }


# --- 3. export -----------------------------------------------------------------------------


def _export(run_dir: Path, plan: Budget, progress: bool) -> dict[str, Any]:
    """Every format, verified.  A format that fails verification is reported, not fatal: the
    demo shows what passed and why the rest did not (export.json has the figures)."""
    from edgecnn.export import export
    from edgecnn.runtime.artifacts import EXPORT_DIR, MANIFEST
    from edgecnn.runtime.errors import VerificationError

    error = None
    try:
        export(run_dir, calib_count=plan.calib_count, seed=SEED, progress=progress)
    except VerificationError as e:
        error = str(e)
        _say(f"export: {error} (the demo continues with the files that passed)")
    manifest_path = run_dir / EXPORT_DIR / MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    artifacts = {
        fmt: {
            "file": a.get("file"),
            "bytes": a.get("bytes"),
            "passed": a.get("passed"),
            "agreement": (a.get("parity") or {}).get("agreement"),
            "max_abs_diff": (a.get("parity") or {}).get("max_abs_diff"),
            "accuracy": (a.get("parity") or {}).get("accuracy"),
            "summary": a.get("summary"),
        }
        for fmt, a in manifest["artifacts"].items()
    }
    return {"manifest": str(manifest_path), "artifacts": artifacts, "error": error}


# --- 4. bench ------------------------------------------------------------------------------


def _bench_targets(run_dir: Path, plan: Budget) -> list[Path]:
    """All artifacts, or for the small budgets one per backend family (every backend still runs:
    tflite on int8 and fp32, onnx and opencv on model.onnx, keras on model.keras)."""
    if plan.bench_all_artifacts:
        return [run_dir]
    from edgecnn.runtime.artifacts import KERAS_FILE, by_name

    wanted = [run_dir / by_name(f).path for f in ("tflite-int8", "tflite-fp32", "onnx")]
    return [p for p in (*wanted, run_dir / KERAS_FILE) if p.is_file()]


def _bench(run_dir: Path, root: Path, plan: Budget, progress: bool) -> dict[str, Any]:
    from edgecnn import bench_report
    from edgecnn.bench import OUTPUT_DIR, OUTPUT_FILES, BenchConfig, bench

    config = BenchConfig(
        threads=(1,), runs=plan.bench_runs, warmup=plan.bench_warmup,
        warmup_seconds=0.2 if plan.name == "tiny" else 0.5, max_images=200, seed=SEED,
    )  # fmt: skip
    result = bench(
        [str(t) for t in _bench_targets(run_dir, plan)], config=config,
        data=root / DATA_DIR / "heldback", progress=None if progress else False,
    )  # fmt: skip
    out = run_dir / OUTPUT_DIR
    paths = {
        kind: bench_report.WRITERS[kind](result, out / name) for kind, name in OUTPUT_FILES.items()
    }
    rows = [
        {k: r.get(k) for k in ("artifact", "backend", "threads", "p50_ms", "p99_ms", "fps",
                               "accuracy", "agreement", "error")}
        for r in result["rows"]
    ]  # fmt: skip
    return {
        "files": {k: str(v) for k, v in paths.items()},
        "rows": rows,
        "elapsed_s": round(result.get("elapsed_s", 0.0), 1),
    }


# --- 5. shifts -----------------------------------------------------------------------------

SHIFT_THREADS = 2


def _shifts(run_dir: Path, root: Path, progress: bool) -> dict[str, Any]:
    """The model `edgecnn run RUN` runs (the int8 file), on every held-back image: clean, then
    under each shift of the suite (one pass per shift, at the images' own resolution).  The
    held-back images are the benchmark's accuracy set: larger than the model input, as photos
    are, and never seen in training or export."""
    from edgecnn.runtime import evaluate, load
    from edgecnn.runtime.evaluate import match_folder
    from edgecnn.runtime.shifts import evaluate_shifts

    model = _live_model(run_dir)
    clf = load(model, threads=SHIFT_THREADS)
    data = root / DATA_DIR / "heldback"
    bars = None if progress else False
    clean = evaluate(clf, data, progress=bars)
    dataset = match_folder(clf, data)[0]
    shifted = evaluate_shifts(clf, dataset, seed=SEED, progress=bars)
    return {
        "model": str(model),
        "backend": clf.backend,
        "threads": SHIFT_THREADS,
        "data": str(data),
        "images": shifted["images"],
        "seed": SEED,
        "accuracy": clean["accuracy"],
        "correct": int(np.trace(clean["confusion_matrix"])),
        "shifts": shifted["shifts"],
        "shift_mean_accuracy": shifted["shift_mean_accuracy"],
        "example": str(dataset.paths[0]),  # image 0: the report shows it under every shift
    }


# --- 6. live -------------------------------------------------------------------------------


def render_clip(
    heldback: Path, path: Path, *, images: int, frames_per_image: int, size: int, fps: float = 10.0
) -> list[str]:
    """Write a short video of held-back images (a slow zoom on each, hard cuts between them,
    classes interleaved) and return the true class of every frame, in order."""
    import cv2

    from edgecnn.runtime.dataset import list_dataset
    from edgecnn.runtime.preprocess import read_image

    ds = list_dataset(heldback)
    by_class = {c: [p for p, t in zip(ds.paths, ds.targets) if ds.classes[t] == c]
                for c in ds.classes}  # fmt: skip
    order = [(c, by_class[c][i]) for i in range(max(map(len, by_class.values())))
             for c in ds.classes if i < len(by_class[c])][:images]  # fmt: skip
    fd, tmp = temp_file(path, suffix=f".partial{path.suffix}")  # OpenCV writes it by name
    os.close(fd)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    truth = []
    try:
        if not writer.isOpened():
            raise InputError(f"{path}: OpenCV cannot write an mp4 video here")
        for cls, image_path in order:
            image = read_image(image_path)
            interpolation = cv2.INTER_AREA if image.shape[0] >= size else cv2.INTER_CUBIC
            image = cv2.resize(image, (size, size), interpolation=interpolation)
            for k in range(frames_per_image):
                writer.write(_zoom(image, 1.0 - 0.08 * k / max(1, frames_per_image - 1)))
                truth.append(cls)
        writer.release()
        os.replace(tmp, path)
    except BaseException:
        writer.release()
        tmp.unlink(missing_ok=True)
        raise
    return truth


def _zoom(image: np.ndarray, scale: float) -> np.ndarray:
    """The centre `scale` fraction of `image`, resized back to full size (a camera pushing in)."""
    import cv2

    h, w = image.shape[:2]
    ch, cw = round(h * scale), round(w * scale)
    y, x = (h - ch) // 2, (w - cw) // 2
    return cv2.resize(image[y : y + ch, x : x + cw], (w, h), interpolation=cv2.INTER_LINEAR)


def _window(show: bool, say) -> tuple[bool, str]:
    """Whether `--show` can open a window here, and what the report says about it; when it
    cannot (headless OpenCV, no display), say why once and carry on headless."""
    if not show:
        return False, "headless"
    from edgecnn.runtime.live.outputs import check_gui

    try:
        check_gui()
    except InputError as e:
        say(f"--show: no window possible: {e}; continuing headless")
        return False, f"headless: --show was asked for, but {e}"
    return True, "shown in a window at the clip's own frame rate"


def _live(
    run_dir: Path, root: Path, plan: Budget, *, show: bool, progress: bool, say
) -> dict[str, Any]:
    from edgecnn.runtime.live import run_live

    live_dir = root / "live"
    live_dir.mkdir(exist_ok=True)
    clip = live_dir / "clip.mp4"
    truth = render_clip(
        root / DATA_DIR / "heldback", clip, images=plan.clip_images,
        frames_per_image=plan.frames_per_image, size=plan.clip_size,
    )  # fmt: skip
    model = _live_model(run_dir)
    window, window_note = _window(show, say)
    log = sys.stderr if progress else io.StringIO()
    summary = run_live(
        model, str(clip), threads=2, show=window, realtime=window,
        record=live_dir / "annotated.mp4", jsonl=live_dir / "live.jsonl", console=False, log=log,
    )  # fmt: skip
    results = [json.loads(line) for line in (live_dir / "live.jsonl").read_text().splitlines()]
    correct = sum(r["label"] == truth[r["seq"]] for r in results if r["seq"] < len(truth))
    _write_json(live_dir / "truth.json", {"frames": truth})
    return {
        "model": str(model),
        "clip": str(clip),
        "annotated": str(live_dir / "annotated.mp4"),
        "jsonl": str(live_dir / "live.jsonl"),
        "frames_in_clip": len(truth),
        "frames_per_image": plan.frames_per_image,
        "accuracy": correct / len(results) if results else None,
        "window": window,
        "window_note": window_note,
        "summary": summary.to_dict(),
    }


def _live_model(run_dir: Path) -> Path:
    """What `edgecnn run RUN` runs: the int8 TFLite file (what goes onto a Pi), or the best
    verified artifact if it failed (`runtime.resolve_model`)."""
    from edgecnn.runtime.resolve import resolve_model

    return resolve_model(run_dir)


# --- summary -------------------------------------------------------------------------------


def format_summary(summary: dict[str, Any], report: Path) -> str:
    """The table printed at the end: what each step produced and how long it took."""
    t = summary["train"]
    ex = summary["export"]["artifacts"]
    lv = summary["live"]
    sh = summary["shifts"]
    steps = summary["steps"]
    rows = [
        ["data", f"{steps.get('data', 0):.1f}",
         f"{sum(summary['data']['counts'].values())} images, {len(summary['data']['classes'])} "
         f"classes ({', '.join(summary['data']['classes'])})"],
        ["train", f"{steps.get('train', 0):.1f}",
         f"edge model, {t['epochs_run']} epochs, val accuracy {pct(t['val_accuracy'])}"],
        ["export", f"{steps.get('export', 0):.1f}",
         f"{sum(1 for a in ex.values() if a['passed'])}/{len(ex)} formats verified"],
    ]  # fmt: skip
    for fmt, a in ex.items():
        size = file_size(a.get("bytes") or None, kb_digits=0)
        verdict = "ok" if a.get("passed") else "FAILED"
        dp = "-" if a.get("max_abs_diff") is None else f"{a['max_abs_diff']:.1e}"
        rows.append(
            [
                "",
                "",
                f"  {fmt:<12} {size:>7}  {verdict:<6} agreement "
                f"{pct(a.get('agreement')):>6}  max |dp| {dp}  "
                f"accuracy {pct(a.get('accuracy'))}",
            ]
        )
    ok = [r for r in summary["bench"]["rows"] if not r.get("error") and r.get("p50_ms")]
    rows.append(
        [
            "bench",
            f"{steps.get('bench', 0):.1f}",
            f"{len(ok)}/{len(summary['bench']['rows'])} artifact x backend rows, 1 thread",
        ]
    )
    for r in ok:
        rows.append(
            [
                "",
                "",
                f"  {r['artifact']:<18} {r['backend']:<7} p50 {r['p50_ms']:.3f} ms"
                f"  acc {pct(r.get('accuracy'))}",
            ]
        )
    worst = min(sh["shifts"].items(), key=lambda kv: kv[1]["accuracy"])
    rows.append(
        [
            "shifts",
            f"{steps.get('shifts', 0):.1f}",
            f"{Path(sh['model']).name} on {sh['images']} held-back images: clean "
            f"{pct(sh['accuracy'])}, mean over {len(sh['shifts'])} camera shifts "
            f"{pct(sh['shift_mean_accuracy'])} (worst {worst[0]} {pct(worst[1]['accuracy'])})",
        ]
    )
    s = lv["summary"]
    rows.append(
        [
            "live",
            f"{steps.get('live', 0):.1f}",
            f"{s['frames']} frames of a generated clip, {s['fps']:.0f} FPS, "
            f"accuracy {pct(lv['accuracy'])} ({Path(lv['model']).name})",
        ]
    )
    rows.append(["report", f"{steps.get('report', 0):.1f}", str(report)])
    rows.append(["total", f"{summary['total_seconds']:.1f}", ""])
    return "\n" + table(["step", "seconds", "result"], rows, rule=True) + f"\n\nopen {report}"


def budget_with(name: str, **changes: Any) -> Budget:
    """A named budget with some fields changed (e.g. `budget_with("tiny", epochs=2)`)."""
    return replace(_resolve_budget(name, False), **changes)
