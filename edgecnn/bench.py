"""Benchmark every artifact x backend x thread count, each in its own process.

    from edgecnn.bench import bench
    result = bench(["runs/cvd-edge"], threads=(1, 2), data="photos/test")
    result["rows"][0]["p50_ms"]

A run directory expands to `model.keras` and every `export/*.tflite|*.onnx`.  Each measurement
runs in a fresh `python -m edgecnn._bench_worker` so one backend's imports, thread pools and
memory never leak into another's numbers.  With `data`, the images are decoded once here (the
shared preprocessing), the Keras model's top-1 predictions are computed once in their own
process, and every row reports accuracy and top-1 agreement on exactly those images.  A backend
that fails gets a row holding its error; the others still run.

The result is a plain JSON-able dict (`schema`, `env`, `config`, `rows`, `pipeline`) that
`edgecnn.bench_report` prints, writes and compares.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path

from edgecnn.runtime.errors import InputError
from edgecnn.runtime.metadata import MODEL_SUFFIXES, model_kind

SCHEMA = "edgecnn-bench/1"
BACKENDS = ("tflite", "onnx", "opencv", "keras")
BACKENDS_FOR_KIND = {"tflite": ("tflite",), "onnx": ("onnx", "opencv"), "keras": ("keras",)}
# Order in which a run directory's artifacts are listed (deployment candidates first).
ARTIFACT_ORDER = (
    "model_int8.tflite",
    "model_fp16.tflite",
    "model_drq.tflite",
    "model_fp32.tflite",
    "model_int8.onnx",
    "model.onnx",
    "model.keras",
)
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
    """What to measure.  Warm-up runs until both `warmup` calls and `warmup_seconds` are done."""

    backends: tuple[str, ...] | None = None
    threads: tuple[int, ...] = (1,)
    runs: int = 200
    warmup: int = 20
    warmup_seconds: float = 1.0
    max_images: int = 500
    pipeline_frames: int = 300
    seed: int = 0

    def __post_init__(self) -> None:
        if self.backends is not None:
            unknown = [b for b in self.backends if b not in BACKENDS]
            if unknown or not self.backends:
                raise InputError(
                    f"unknown backend(s) {unknown or self.backends}; choose from {', '.join(BACKENDS)}"
                )
        if not self.threads or any(int(t) < 1 for t in self.threads):
            raise InputError(f"thread counts must be >= 1, got {list(self.threads)}")
        if self.runs < 1:
            raise InputError(f"--runs must be >= 1, got {self.runs}")
        if self.warmup < 0 or self.warmup_seconds < 0:
            raise InputError("--warmup must be >= 0")
        if self.pipeline_frames < 1:
            raise InputError(f"pipeline frames must be >= 1, got {self.pipeline_frames}")
        if self.max_images < 1:
            raise InputError(f"max_images must be >= 1, got {self.max_images}")


@dataclass(frozen=True)
class Job:
    artifact: Path
    backend: str
    threads: int


# --- what to run --------------------------------------------------------------------------


def list_artifacts(target: str | os.PathLike) -> list[Path]:
    """The model files a bench target stands for: a file itself, or everything in a run dir."""
    path = Path(target)
    if path.is_file():
        model_kind(path)  # InputError for an unknown extension
        return [path]
    if not path.is_dir():
        raise InputError(f"{path}: no such file or run directory")
    found = [p for p in (path / "export").glob("*") if p.suffix in MODEL_SUFFIXES and p.is_file()]
    if (path / "model.keras").is_file():
        found.append(path / "model.keras")
    if not found:
        found = [p for p in path.glob("*") if p.suffix in MODEL_SUFFIXES and p.is_file()]
    if not found:
        raise InputError(f"{path}: no model files (.tflite, .onnx, .keras) in it or in its export/")
    rank = {name: i for i, name in enumerate(ARTIFACT_ORDER)}
    return sorted(found, key=lambda p: (rank.get(p.name, len(rank)), p.name))


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


def planned_rows(targets: list[str | os.PathLike], config: BenchConfig) -> list[dict]:
    """The (artifact, backend, threads) keys a bench of `targets` will produce, unmeasured."""
    jobs = plan_jobs([a for t in targets for a in list_artifacts(t)], config)
    return [{"artifact": j.artifact.name, "backend": j.backend, "threads": j.threads} for j in jobs]


def keras_reference(artifacts: list[Path]) -> Path | None:
    """The Keras model the artifacts were exported from (RUN/model.keras), if it is there."""
    for a in artifacts:
        if a.suffix == ".keras":
            return a
        for candidate in (a.parent / "model.keras", a.parent.parent / "model.keras"):
            if candidate.is_file():
                return candidate
    return None


# --- environment --------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            return importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return None


def environment() -> dict:
    """CPU, cores, OS, Python and installed backend versions (read without importing them)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {k: v for k, names in PACKAGES.items() if (v := _version(names))},
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


def _prepare_data(data: str | os.PathLike, artifacts: list[Path], config: BenchConfig,
                  workdir: Path, progress: bool | None) -> dict:
    """Decode the evaluation images once (shared preprocessing) into .npy files for children."""
    import numpy as np

    from edgecnn.runtime.dataset import list_dataset, load_pixels
    from edgecnn.runtime.metadata import read_contract

    contract = next((c for a in artifacts if (c := read_contract(a)) is not None), None)
    if contract is None:
        raise InputError("--data needs a model that carries its labels and input size (edgecnn metadata)")
    ds = list_dataset(data, classes=contract.labels)
    if len(ds) > config.max_images:
        ds = ds.stratified_sample(config.max_images, config.seed)
    decoded = load_pixels(ds, contract, desc="bench: decoding", progress=progress)
    np.save(workdir / "pixels.npy", decoded.pixels)
    np.save(workdir / "targets.npy", decoded.targets)
    return {
        "pixels": str(workdir / "pixels.npy"),
        "targets": str(workdir / "targets.npy"),
        "n_images": int(len(decoded.targets)),
        "skipped": len(decoded.skipped),
        "dir": str(data),
        "size": [contract.height, contract.width],
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
    artifacts = [a for t in targets for a in list_artifacts(t)]
    jobs = plan_jobs(artifacts, config)
    if pipeline is not None:
        from edgecnn.runtime.live import make_source

        make_source(pipeline)  # InputError for a source that names nothing, before measuring
    env = environment()
    reference = keras_reference(artifacts)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgecnn-bench-") as tmp:
        workdir = Path(tmp)
        data_info = _prepare_data(data, artifacts, config, workdir, progress) if data else None
        common = {
            "runs": config.runs,
            "warmup": config.warmup,
            "warmup_seconds": config.warmup_seconds,
        }
        if data_info:
            common.update(pixels=data_info["pixels"], targets=data_info["targets"])
        ref_error = None
        total = len(jobs) + (1 if data_info and reference else 0)
        with Progress(total, "bench", enabled=progress) as bar:
            if data_info and reference:
                ref_out = _run_child(
                    {"mode": "predict", "model": str(reference), "backend": "keras", "threads": None,
                     "pixels": data_info["pixels"], "save": str(workdir / "reference.npy")},
                    workdir, "reference",
                )
                bar.update()
                ref_error = ref_out.get("error")
                if not ref_error:
                    common["reference"] = str(workdir / "reference.npy")
            rows = []
            for i, job in enumerate(jobs):
                spec = {**common, "model": str(job.artifact), "backend": job.backend, "threads": job.threads}
                rows.append(_row(job, _run_child(spec, workdir, f"job{i}")))
                bar.update()
        pipeline_rows = None
        if pipeline is not None:
            pipeline_rows = _pipeline_rows(pipeline, jobs, config, workdir, progress)
    env["tflite_delegates"] = sorted({r["delegate"] for r in rows if r.get("delegate") and r["backend"] == "tflite"})
    return {
        "schema": SCHEMA,
        "env": env,
        "config": {**asdict(config), "targets": [str(t) for t in targets]},
        "data": _public_data_info(data_info, reference, ref_error),
        "rows": rows,
        "pipeline": pipeline_rows,
        "elapsed_s": time.perf_counter() - started,
    }


def _pipeline_rows(source: str, jobs: list[Job], config: BenchConfig, workdir: Path,
                   progress: bool | None) -> list[dict]:
    """The live loop per artifact x backend x threads, after the source's decode-only ceiling."""
    from edgecnn.runtime.progress import Progress

    base = {"source": str(source), "frames": config.pipeline_frames}
    rows = []
    with Progress(len(jobs) + 1, "bench: pipeline", enabled=progress) as bar:
        ceiling = _run_child({**base, "mode": "decode"}, workdir, "decode")
        rows.append({"artifact": "(decode only)", "backend": "-", "threads": "-", **ceiling,
                     "note": "ceiling: source decode alone"})
        bar.update()
        for i, job in enumerate(jobs):
            spec = {**base, "mode": "pipeline", "model": str(job.artifact), "backend": job.backend,
                    "threads": job.threads}
            row = {"artifact": job.artifact.name, "backend": job.backend, "threads": job.threads,
                   **_run_child(spec, workdir, f"pipe{i}")}
            if ceiling.get("fps") and row.get("fps"):
                row["of_ceiling"] = row["fps"] / ceiling["fps"]
                row["note"] = f"{100 * row['of_ceiling']:.0f}% of decode-only"
            rows.append(row)
            bar.update()
    return rows


def _public_data_info(info: dict | None, reference: Path | None, ref_error: str | None) -> dict | None:
    if info is None:
        return None
    return {
        "dir": info["dir"],
        "n_images": info["n_images"],
        "skipped": info["skipped"],
        "size": info["size"],
        "reference": str(reference) if reference and not ref_error else None,
        "reference_error": ref_error,
    }


def default_output_dir(targets: list[str | os.PathLike]) -> Path:
    """RUN_DIR/bench for a run directory (or a file inside RUN/export), else ./bench."""
    first = Path(targets[0])
    if first.is_dir():
        return first / "bench"
    if first.parent.name == "export":
        return first.parent.parent / "bench"
    return first.parent / "bench"
