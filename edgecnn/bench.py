"""Benchmark every artifact x backend x thread count, each in its own process.

    from edgecnn.bench import bench
    result = bench(["runs/cvd-edge"], threads=(1, 2), data="photos/test")
    result["rows"][0]["p50_ms"]

A run directory expands to `model.keras` and every `export/*.tflite|*.onnx`.  Each measurement
runs in a fresh `python -m edgecnn._bench_worker` so one backend's imports, thread pools and
memory never leak into another's numbers.  With `data`, the images are decoded once here (the
shared preprocessing), the Keras model's top-1 predictions are computed once in their own
process, and every row reports accuracy and top-1 agreement on exactly those images.  A backend
that fails gets a row holding its error; the others still run.  A backend whose package is not
installed (Keras on a device with only the runtime) gets a skipped row naming the pip extra.

The result is a plain JSON-able dict (`schema`, `env`, `config`, `rows`, `pipeline`) that
`edgecnn.bench_report` prints, writes and compares.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from edgecnn.runtime import env
from edgecnn.runtime.artifacts import EXPORT_DIR, KERAS_FILE, rank
from edgecnn.runtime.backends import MAX_THREADS
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.metadata import MODEL_SUFFIXES, model_kind

SCHEMA = "edgecnn-bench/1"
OUTPUT_DIR = "bench"  # RUN/bench: where `edgecnn bench` and the demo write their files
OUTPUT_FILES = {"json": "bench.json", "csv": "bench.csv", "md": "bench.md", "png": "bench.png"}
BACKENDS = ("tflite", "onnx", "opencv", "keras")
BACKENDS_FOR_KIND = {"tflite": ("tflite",), "onnx": ("onnx", "opencv"), "keras": ("keras",)}
PACKAGES = {
    "numpy": ("numpy",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
    "ai-edge-litert": ("ai-edge-litert",),
    "tflite-runtime": ("tflite-runtime",),
    "onnxruntime": ("onnxruntime",),
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "keras": ("keras",),
}
CHILD_TIMEOUT_S = 900


@dataclass(frozen=True)
class BenchConfig:
    """What to measure.  Warm-up runs until both `warmup` calls and `warmup_seconds` are done;
    the timed phase until both `runs` calls and `min_seconds` are done (a longer window keeps
    the median steady on a machine that is doing other work)."""

    backends: tuple[str, ...] | None = None
    threads: tuple[int, ...] = (1,)
    runs: int = 200
    warmup: int = 20
    warmup_seconds: float = 1.0
    min_seconds: float = 1.0
    max_images: int = 500
    pipeline_frames: int = 300
    seed: int = 0

    def __post_init__(self) -> None:
        # each backend and thread count once, in the order given (`--threads 1,1`)
        object.__setattr__(self, "threads", tuple(dict.fromkeys(self.threads)))
        if self.backends is not None:
            object.__setattr__(self, "backends", tuple(dict.fromkeys(self.backends)))
            unknown = [b for b in self.backends if b not in BACKENDS]
            if not self.backends:
                raise InputError(f"--backends names no backend; choose from {', '.join(BACKENDS)}")
            if unknown:
                raise InputError(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
        if not self.threads or any(not 1 <= int(t) <= MAX_THREADS for t in self.threads):
            raise InputError(
                f"thread counts must be from 1 to {MAX_THREADS}, got {list(self.threads)}"
            )
        if self.runs < 1:
            raise InputError(f"--runs must be >= 1, got {self.runs}")
        seconds = (self.warmup_seconds, self.min_seconds)
        if self.warmup < 0 or not all(0 <= s < math.inf for s in seconds):
            raise InputError(
                "--warmup, --warmup-seconds and --min-seconds must be >= 0 and finite, got "
                f"{self.warmup}, {self.warmup_seconds} and {self.min_seconds}"
            )
        if self.pipeline_frames < 1:
            raise InputError(f"--pipeline-frames must be >= 1, got {self.pipeline_frames}")
        if self.max_images < 1:
            raise InputError(f"--max-images must be >= 1, got {self.max_images}")


@dataclass(frozen=True)
class Job:
    artifact: Path
    backend: str
    threads: int


# --- what to run --------------------------------------------------------------------------


def list_artifacts(target: str | os.PathLike) -> list[Path]:
    """The model files a bench target stands for: a file itself, or everything in a run dir,
    in the order `edgecnn run` prefers them (`artifacts.RUN_ORDER`)."""
    path = Path(target)
    if path.is_file():
        model_kind(path)  # InputError for an unknown extension
        return [path]
    if not path.is_dir():
        raise InputError(f"{path}: no such file or run directory")
    found = [p for p in (path / EXPORT_DIR).glob("*") if p.suffix in MODEL_SUFFIXES and p.is_file()]
    if (path / KERAS_FILE).is_file():
        found.append(path / KERAS_FILE)
    if not found:
        found = [p for p in path.glob("*") if p.suffix in MODEL_SUFFIXES and p.is_file()]
    if not found:
        raise InputError(f"{path}: no model files (.tflite, .onnx, .keras) in it or in its export/")
    return sorted(found, key=lambda p: (rank(p.name), p.name))


def plan_jobs(artifacts: list[Path], config: BenchConfig) -> list[Job]:
    """Every artifact x compatible backend x thread count; InputError when nothing can run."""
    jobs = []
    for artifact in artifacts:
        for backend in BACKENDS_FOR_KIND[model_kind(artifact)]:
            if config.backends is not None and backend not in config.backends:
                continue
            jobs.extend(Job(artifact, backend, int(t)) for t in config.threads)
    if not jobs:
        names = ", ".join(a.name for a in artifacts)
        raise InputError(
            f"no backend in {list(config.backends or BACKENDS)} can run {names} "
            f"(.tflite: tflite; .onnx: onnx, opencv; .keras: keras)"
        )
    return jobs


def _artifacts(targets: list[str | os.PathLike]) -> list[Path]:
    """The model files of every target, each once however often it is named (`bench M M`, a
    run directory and a file of its own export/)."""
    files = {os.path.realpath(a): a for t in targets for a in list_artifacts(t)}
    return list(files.values())


def planned_rows(targets: list[str | os.PathLike], config: BenchConfig) -> list[dict]:
    """The (artifact, backend, threads) keys a bench of `targets` will produce, unmeasured."""
    jobs = plan_jobs(_artifacts(targets), config)
    rows = [
        {
            "artifact": j.artifact.name,
            "path": str(j.artifact),
            "backend": j.backend,
            "threads": j.threads,
        }
        for j in jobs
    ]
    _label_rows(rows, None)
    return rows


def keras_reference(artifacts: list[Path]) -> Path | None:
    """The Keras model the artifacts were exported from (RUN/model.keras), if it is there."""
    for a in artifacts:
        if a.suffix == ".keras":
            return a
        for candidate in (a.parent / KERAS_FILE, a.parent.parent / KERAS_FILE):
            if candidate.is_file():
                return candidate
    return None


# What each backend needs installed, as the one-line reason its rows are skipped without it.
_NEEDS = {
    "tflite": "ai-edge-litert",
    "onnx": "onnxruntime",
    "opencv": "OpenCV",
    "keras": "TensorFlow",
}


def missing_backend(backend: str) -> str | None:
    """Why `backend` cannot run on this machine ("needs X: pip install 'edgecnn[extra]'"), or
    None when its package is installed.  Checked without importing the package, so a device
    with only the runtime skips the Keras rows instead of starting TensorFlow-less workers."""
    from edgecnn.runtime.backends import get_backend

    cls = get_backend(backend)
    if cls.is_available():
        return None
    return f"needs {_NEEDS.get(backend, cls.packages[0])}: pip install 'edgecnn[{cls.extra}]'"


def _skipped(reason: str) -> dict:
    """A row's result when its backend is not installed: not measured, and why."""
    return {"error": reason, "skipped": True}


# --- environment --------------------------------------------------------------------------


def environment() -> dict:
    """CPU, cores, OS, Python and installed backend versions (read without importing them)."""
    return {
        **env.machine(),
        "versions": env.package_versions(PACKAGES),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# --- running children ---------------------------------------------------------------------


def _run_child(spec: dict, workdir: Path, name: str) -> dict:
    spec_path = workdir / f"{name}.spec.json"
    out_path = workdir / f"{name}.out.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    cmd = [sys.executable, "-m", "edgecnn._bench_worker", str(spec_path), str(out_path)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {CHILD_TIMEOUT_S} s"}
    if out_path.is_file():
        return json.loads(out_path.read_text())
    tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:] or ["no output"]
    return {"error": f"worker exited with code {proc.returncode}: {tail[0][:300]}"}


def _geometry(contract) -> str:
    """What decides the decoded pixels and labels: artifacts sharing it share one image set."""
    d = contract.to_dict()
    d.pop("info", None)
    return json.dumps(d, sort_keys=True)


class _Data:
    """The --data images decoded once per distinct contract (the shared preprocessing), saved as
    .npy for the children, and the Keras reference predictions, once per Keras model."""

    def __init__(
        self, root: str | os.PathLike, config: BenchConfig, workdir: Path, progress: bool | None
    ) -> None:
        self.root, self.config, self.workdir, self.progress = root, config, workdir, progress
        self.sets: dict[str, dict] = {}
        self.references: dict[Path, dict] = {}

    def for_artifact(self, artifact: Path) -> dict:
        from edgecnn.runtime.metadata import read_contract

        contract = read_contract(artifact)
        if contract is None:
            raise InputError(
                f"{artifact}: --data needs a model that carries its labels and input "
                "size (edgecnn metadata)"
            )
        key = _geometry(contract)
        if key not in self.sets:
            self.sets[key] = self._decode(contract, len(self.sets))
        return self.sets[key]

    def _decode(self, contract, n: int) -> dict:
        import numpy as np

        from edgecnn.runtime.dataset import list_dataset, load_pixels

        ds = list_dataset(self.root, classes=contract.labels)
        if len(ds) > self.config.max_images:
            ds = ds.stratified_sample(self.config.max_images, self.config.seed)
        decoded = load_pixels(ds, contract, desc="bench: decoding", progress=self.progress)
        pixels, targets = self.workdir / f"pixels{n}.npy", self.workdir / f"targets{n}.npy"
        np.save(pixels, decoded.pixels)
        np.save(targets, decoded.targets)
        return {
            "pixels": str(pixels),
            "targets": str(targets),
            "n_images": int(len(decoded.targets)),
            "skipped": len(decoded.skipped),
            "size": [contract.height, contract.width],
        }

    def reference(self, keras_model: Path, images: dict) -> dict:
        """Top-1 of the Keras model on `images`, computed once in its own process (not at all
        where Keras is not installed: the reason becomes the reference's error)."""
        if keras_model not in self.references:
            n = len(self.references)
            save = self.workdir / f"reference{n}.npy"
            spec = {
                "mode": "predict",
                "model": str(keras_model),
                "backend": "keras",
                "threads": None,
                "pixels": images["pixels"],
                "save": str(save),
            }
            missing = missing_backend("keras")
            out = {"error": missing} if missing else _run_child(spec, self.workdir, f"reference{n}")
            self.references[keras_model] = {
                "path": str(save),
                "error": out.get("error"),
                "pixels": images["pixels"],
            }
        ref = self.references[keras_model]
        return ref if ref["pixels"] == images["pixels"] else {"error": "input contract differs"}

    def spec(self, artifact: Path) -> dict:
        """The data fields of one child's spec: its images and, if available, its reference."""
        images = self.for_artifact(artifact)
        spec = {"pixels": images["pixels"], "targets": images["targets"]}
        keras_model = keras_reference([artifact])
        if keras_model is not None:
            ref = self.reference(keras_model, images)
            if not ref.get("error"):
                spec["reference"] = ref["path"]
        return spec

    def summary(self) -> dict:
        first = next(iter(self.sets.values()))
        refs = {str(k): v["error"] for k, v in self.references.items()}
        ok = [k for k, err in refs.items() if not err]
        return {
            "dir": str(self.root),
            "n_images": first["n_images"],
            "skipped": first["skipped"],
            "size": first["size"],
            "reference": ok[0] if len(ok) == 1 else (", ".join(ok) or None),
            "reference_error": "; ".join(f"{k}: {e}" for k, e in refs.items() if e) or None,
        }


def _row(job: Job, result: dict) -> dict:
    row = {
        "artifact": job.artifact.name,
        "path": str(job.artifact),
        "format": model_kind(job.artifact),
        "file_bytes": job.artifact.stat().st_size,
        "backend": job.backend,
        "threads": job.threads,
    }
    row.update(result)
    row.setdefault("error", None)
    return row


def bench(
    targets: list[str | os.PathLike],
    *,
    config: BenchConfig | None = None,
    data: str | os.PathLike | None = None,
    pipeline: str | None = None,
    progress: bool | None = None,
) -> dict:
    """Measure every artifact of `targets` on every backend and thread count in `config`.

    Returns the JSON-able result (see module docstring).  Raises InputError for bad targets,
    backends or thread counts before anything runs; failures while measuring become rows.
    """
    from edgecnn.runtime.progress import Progress

    config = config or BenchConfig()
    if not targets:
        raise InputError("give at least one run directory or model file")
    artifacts = _artifacts(targets)
    jobs = plan_jobs(artifacts, config)
    if pipeline is not None:
        _check_pipeline_source(pipeline)
    env = environment()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgecnn-bench-") as tmp:
        workdir = Path(tmp)
        images = _Data(data, config, workdir, progress) if data else None
        if images is not None:
            for artifact in dict.fromkeys(j.artifact for j in jobs):
                images.for_artifact(artifact)  # decode up front: bad --data fails before measuring
        common = {
            "runs": config.runs,
            "warmup": config.warmup,
            "warmup_seconds": config.warmup_seconds,
            "min_seconds": config.min_seconds,
        }
        rows = []
        with Progress(len(jobs), "bench", enabled=progress) as bar:
            for i, job in enumerate(jobs):
                bar.desc = f"bench {job.artifact.name} {job.backend} x{job.threads}"
                bar.update(0)
                rows.append(_row(job, _measure(job, common, images, workdir, f"job{i}")))
                bar.update()
        pipeline_rows = None
        if pipeline is not None:
            pipeline_rows = _pipeline_rows(pipeline, jobs, config, workdir, progress)
    if pipeline_rows:
        _pipeline_ceilings(pipeline_rows, rows)
    _label_rows(rows, pipeline_rows)
    env["tflite_delegates"] = sorted(
        {r["delegate"] for r in rows if r.get("delegate") and r["backend"] == "tflite"}
    )
    return {
        "schema": SCHEMA,
        "env": env,
        "config": {**asdict(config), "targets": [str(t) for t in targets]},
        "data": images.summary() if images is not None else None,
        "rows": rows,
        "pipeline": pipeline_rows,
        "elapsed_s": time.perf_counter() - started,
    }


def _measure(job: Job, common: dict, images: _Data | None, workdir: Path, name: str) -> dict:
    """One bench row's measurements from its own worker process, or why it was skipped."""
    missing = missing_backend(job.backend)
    if missing:
        return _skipped(missing)
    spec = {**common, "model": str(job.artifact), "backend": job.backend, "threads": job.threads}
    if images is not None:
        spec.update(images.spec(job.artifact))
    return _run_child(spec, workdir, name)


def _check_pipeline_source(pipeline: str) -> None:
    """InputError, before anything is measured, for a --pipeline source that names nothing or
    gives no frame (a missing camera, a text file, a dead stream), named as --pipeline."""
    from edgecnn.runtime.live import open_source

    try:
        open_source(pipeline).close()
    except InputError as e:
        text = str(e)
        raise InputError(
            "--pipeline " + text.removeprefix("--source ") if text.startswith("--source ") else text
        ) from None


def _pipeline_ceilings(pipeline_rows: list[dict], rows: list[dict]) -> None:
    """With capture and inference overlapped, a loop can reach min(decode FPS, inference FPS):
    each pipeline row gets that ceiling (from the decode-only row and its own bench row)."""
    decode_fps = pipeline_rows[0].get("fps")
    bench_fps = {(r["path"], r["backend"], r["threads"]): r.get("fps") for r in rows}
    for row in pipeline_rows[1:]:
        infer_fps = bench_fps.get((row.get("path"), row["backend"], row["threads"]))
        limits = [f for f in (decode_fps, infer_fps) if f]
        if row.get("error") or not row.get("fps") or not limits:
            continue
        row["ceiling_fps"] = min(limits)
        row["of_ceiling"] = row["fps"] / row["ceiling_fps"]
        which = "decode" if row["ceiling_fps"] == decode_fps else "inference"
        row["note"] = (
            f"{100 * row['of_ceiling']:.0f}% of ceiling ({row['ceiling_fps']:.0f} FPS, {which})"
        )


def _label_rows(rows: list[dict], pipeline_rows: list[dict] | None) -> None:
    """Artifact names stay bare unless two runs have files of the same name: then RUN/name."""
    paths = {r["path"] for r in rows}
    names = [Path(p).name for p in paths]
    if len(set(names)) == len(names):
        return
    labels = {}
    for p in paths:
        path = Path(p)
        run = path.parent.parent if path.parent.name == EXPORT_DIR else path.parent
        labels[path.name, p] = f"{run.name}/{path.name}"
    for r in rows:
        r["artifact"] = labels[r["artifact"], r["path"]]
    for r in pipeline_rows or []:
        if "path" in r:
            r["artifact"] = labels.get((r["artifact"], r["path"]), r["artifact"])


def _pipeline_rows(
    source: str, jobs: list[Job], config: BenchConfig, workdir: Path, progress: bool | None
) -> list[dict]:
    """The live loop per artifact x backend x threads, after the source's decode-only ceiling."""
    from edgecnn.runtime.progress import Progress

    base = {"source": str(source), "frames": config.pipeline_frames}
    rows = []
    with Progress(len(jobs) + 1, "bench: pipeline", enabled=progress) as bar:
        ceiling = _run_child({**base, "mode": "decode"}, workdir, "decode")
        rows.append(
            {
                "artifact": "(decode only)",
                "backend": "-",
                "threads": "-",
                **ceiling,
                "note": "ceiling: source decode alone",
            }
        )
        bar.update()
        for i, job in enumerate(jobs):
            spec = {
                **base,
                "mode": "pipeline",
                "model": str(job.artifact),
                "backend": job.backend,
                "threads": job.threads,
            }
            row = {
                "artifact": job.artifact.name,
                "path": str(job.artifact),
                "backend": job.backend,
                "threads": job.threads,
            }
            missing = missing_backend(job.backend)
            row.update(_skipped(missing) if missing else _run_child(spec, workdir, f"pipe{i}"))
            rows.append(row)
            bar.update()
    return rows


def default_output_dir(targets: list[str | os.PathLike]) -> Path:
    """RUN_DIR/bench for a run directory (or a file inside RUN/export), else bench/ beside the
    first file."""
    first = Path(targets[0])
    if first.is_dir():
        return first / OUTPUT_DIR
    if first.parent.name == EXPORT_DIR:
        return first.parent.parent / OUTPUT_DIR
    return first.parent / OUTPUT_DIR
