"""`make pi-check`: edgecnn's device runtime on Raspberry Pi OS 64-bit, emulated on x86-64.

    .venv/bin/python tools/pi_check.py [--userlands bookworm,trixie] [--cache DIR] [--data DIR]

On an x86-64 Linux host, with no kernel support needed (no binfmt_misc, chroot or containers):

1. host tools    qemu-aarch64-static and mmdebstrap (apt-get installs them when run as root)
2. userlands     Debian's arm64 packages of Bookworm (Python 3.11) and Trixie (Python 3.13),
                 the bases of Raspberry Pi OS, run as a Pi 4 (Cortex-A72) and a Pi 5 (A76)
3. packages      the aarch64 wheels `pip install "edgecnn[tflite]" "edgecnn[onnx]"` brings, at
                 the versions uv.lock pins, plus edgecnn from this tree; imported on the "Pi"
4. model         a small model trained and exported here (int8 and fp32 TFLite, ONNX)
5. x86 reference raw backend outputs of saved input tensors, `edgecnn predict` and `edgecnn eval`
                 on check photos, a short clip
6. emulated Pi   the same on each userland, compared with x86 (criteria: _pi_compare.py), and
                 `edgecnn run --source CLIP --jsonl -` against predict on the clip's frames

Downloads (Debian packages as a ready root, wheels) are cached in --cache (default
$EDGECNN_PI_CHECK_CACHE, else ~/.cache/edgecnn-pi-check), so a second run downloads nothing.
Emulated run times say nothing about a Pi's speed and are not reported; `edgecnn bench` on the
device measures that.  Exit status: 0 every comparison passed, 1 a comparison or a step failed
(one line each), 2 bad usage or a host that cannot run the check.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import _pi_compare as compare
import _pi_model as model
import _pi_userland as userland
import _pi_wheels as wheels

REPO = Path(__file__).resolve().parent.parent
RAW_SCRIPT = Path(__file__).resolve().with_name("_pi_raw.py")
FRAMES_SCRIPT = Path(__file__).resolve().with_name("_pi_frames.py")
CACHE_ENV = "EDGECNN_PI_CHECK_CACHE"
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "cats-vs-dogs"
STAGES = 6
TRAIN_PER_CLASS = 500
RAW_IMAGES = 32  # check photos fed as saved tensors (same pixels on both sides)
# `edgecnn eval` runs on the first check photos of each class only: predict already covers
# every photo image by image, and float inference is slow under emulation
EVAL_PER_CLASS = 10
CLIP_IMAGES, FRAMES_PER_IMAGE = 8, 3
ALL_CLASSES = "1000"  # predict's --top-k: it shows min(top-k, number of classes)
COMMAND_TIMEOUT = 1800  # seconds for one emulated command before it counts as hung
SMOKE = (
    "import importlib.metadata as m, cv2, numpy, onnxruntime;"
    "import ai_edge_litert.interpreter;"
    "print(f'numpy {numpy.__version__}, "
    'opencv {cv2.__version__}, ai-edge-litert {m.version("ai-edge-litert")}, '
    "onnxruntime {onnxruntime.__version__}')"
)


_LOG_LOCK = threading.Lock()  # emulated commands run in threads and share a log


class CheckFailed(Exception):
    """A step of the check could not be done (exit 1, one line)."""


# --- command line -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pi_check.py",
        description="edgecnn's device runtime on Raspberry Pi OS (arm64) under qemu user-mode "
        "emulation, compared with x86-64.",
    )
    parser.add_argument(
        "--userlands", default=",".join(userland.USERLANDS), metavar="LIST",
        help=f"comma-separated subset of {','.join(userland.USERLANDS)} (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--cpu", choices=sorted(userland.CPUS), default=None,
        help="emulate this Pi CPU for every userland (default: bookworm as a Pi 4 cortex-a72, "
        "trixie as a Pi 5 cortex-a76)",
    )  # fmt: skip
    parser.add_argument(
        "--cache", type=Path, default=None, metavar="DIR",
        help=f"download cache (default: ${CACHE_ENV}, else ~/.cache/edgecnn-pi-check)",
    )  # fmt: skip
    data = parser.add_mutually_exclusive_group()
    data.add_argument(
        "--data", type=Path, default=None, metavar="DIR",
        help="photos with train/ (and test/) class folders (default: "
        "../shared/datasets/cats-vs-dogs when present, else generated shapes)",
    )  # fmt: skip
    data.add_argument("--synthetic", action="store_true", help="use generated shapes")
    parser.add_argument(
        "--photos", type=int, default=50, metavar="N",
        help="check photos per class (default 50; a top-1 change is allowed on 1%% of them)",
    )  # fmt: skip
    parser.add_argument(
        "--jobs", type=int, default=2, metavar="N", help="emulated processes at a time (2)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder (kept anyway on failure)"
    )
    return parser.parse_args(argv)


def check_usage(args: argparse.Namespace) -> list[userland.Userland]:
    """The userlands asked for; SystemExit(2) with one line for anything unusable."""
    names = [n.strip() for n in args.userlands.split(",") if n.strip()]
    unknown = [n for n in names if n not in userland.USERLANDS]
    if unknown or not names:
        _usage_error(f"--userlands: unknown {unknown or 'empty'}; choose from "
                     f"{', '.join(userland.USERLANDS)}")  # fmt: skip
    if args.photos < 1 or args.jobs < 1:
        _usage_error("--photos and --jobs must be at least 1")
    if args.data is not None and not (args.data / "train").is_dir():
        _usage_error(f"--data {args.data}: no train/ folder of class folders in it")
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        _usage_error(f"runs on an x86-64 Linux host, not {platform.system()} {platform.machine()}")
    return [userland.USERLANDS[n] for n in dict.fromkeys(names)]


def _usage_error(message: str) -> None:
    print(f"pi-check: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def cache_dir(option: Path | None) -> Path:
    if option is not None:
        return option
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path.home() / ".cache" / "edgecnn-pi-check"


def say(message: str) -> None:
    print(message, flush=True)


def stage(number: int, title: str) -> None:
    say(f"pi-check [{number}/{STAGES}] {title}")


# --- one interpreter: x86 or an emulated Pi -----------------------------------------------------


@dataclass(frozen=True)
class Side:
    """A Python that runs edgecnn: the repository's venv on x86, or a userland under qemu."""

    name: str
    python: tuple[str, ...]
    env: dict[str, str]
    out: Path  # its outputs (JSON, .npy, the commands' stderr)

    def run(self, args: Sequence[str], *, what: str) -> str:
        """Run `python ARGS` in `out` (not in the source tree, whose `edgecnn/` folder would
        shadow the installed package); its stdout, or CheckFailed naming `what` and its last
        stderr line."""
        try:
            done = subprocess.run(
                [*self.python, *args], env=self.env, cwd=self.out, capture_output=True,
                text=True, timeout=COMMAND_TIMEOUT, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"{what}: no answer after {COMMAND_TIMEOUT} s") from None
        with _LOG_LOCK, (self.out / "commands.log").open("a") as log:
            log.write(f"$ python {' '.join(args)}\n{done.stderr}\n")
        if done.returncode != 0:
            last = done.stderr.strip().splitlines()[-1:] or ["(no message)"]
            raise CheckFailed(f"{what} exited {done.returncode}: {last[0][:300]}")
        return done.stdout

    def cli(self, args: Sequence[str], *, what: str) -> str:
        return self.run(["-m", "edgecnn.cli", *args], what=what)

    @property
    def frames(self) -> Path:
        """The clip's frames as this side decodes them."""
        return self.out / "frames"

    def decode_clip(self, clip: Path) -> int:
        text = self.run([str(FRAMES_SCRIPT), str(clip), str(self.frames)],
                        what=f"{self.name}: decoding the clip")  # fmt: skip
        return int(text.strip())


def x86_side(work: Path) -> Side:
    out = work / "x86-64"
    out.mkdir()
    env = {**os.environ, "PYTHONNOUSERSITE": "1"}
    return Side("x86-64", (sys.executable,), env, out)


def device_side(u: userland.Userland, root: Path, cpu: userland.Cpu, paths: list[Path],
                work: Path) -> Side:  # fmt: skip
    out = work / u.suite
    out.mkdir(exist_ok=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(out),
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.pathsep.join(map(str, paths)),
        "PYTHONNOUSERSITE": "1",
    }
    command = tuple(userland.python_command(root, u, cpu))
    return Side(u.suite, command, env, out)


# --- stages 1-3: host, userlands, packages ------------------------------------------------------


@dataclass
class Device:
    """One userland made ready: its root, CPU, Python and glibc."""

    spec: userland.Userland
    root: Path
    cpu: userland.Cpu
    python: str = ""
    glibc: tuple[int, int] = (0, 0)
    side: Side | None = None


def prepare_host() -> None:
    stage(1, "host tools")
    try:
        versions = userland.ensure_host_tools()
    except userland.SetupError as e:
        _usage_error(str(e))
    say("  " + ", ".join(f"{tool} {v}" for tool, v in versions.items()))


def prepare_userlands(specs: list[userland.Userland], cpu_option: str | None, cache: Path,
                      logs: Path) -> list[Device]:  # fmt: skip
    stage(2, "Raspberry Pi OS userlands from Debian arm64 packages")
    devices = []
    for spec in specs:
        root, cached = userland.build_root(spec, cache / "rootfs", log=logs / "mmdebstrap.log")
        cpu = userland.CPUS[cpu_option or spec.cpu]
        userland.write_cpuinfo(root, cpu)
        device = Device(spec, root, cpu)
        device.python = userland.python_version(userland.python_command(root, spec, cpu))
        device.glibc = userland.glibc_version(root)
        devices.append(device)
        say(f"  {spec.suite:<9} Python {device.python}, glibc {device.glibc[0]}.{device.glibc[1]}, "
            f"as a {cpu.pi} ({cpu.qemu}){', cached' if cached else ''}")  # fmt: skip
    return devices


def prepare_packages(devices: list[Device], cache: Path, work: Path, logs: Path) -> None:
    stage(3, 'device packages: "edgecnn[tflite]" and "edgecnn[onnx]" as uv.lock pins them')
    lock = wheels.read_toml(REPO / "uv.lock")
    source = wheels.install_source(REPO, work / "src")
    for d in devices:
        pins = wheels.lock_pins(lock, python=d.python)
        tag = f"cp{d.spec.python.replace('.', '')}-glibc{d.glibc[0]}.{d.glibc[1]}-aarch64"
        fetched_before = len(wheels.cached_wheels(pins, cache / "wheels" / tag))
        files = wheels.download(pins, cache / "wheels" / tag, python=d.python, glibc=d.glibc,
                                log=logs / "pip.log")  # fmt: skip
        site, _ = wheels.install(files, cache / "site" / d.spec.suite, python=d.python,
                                 glibc=d.glibc, log=logs / "pip.log")  # fmt: skip
        d.side = device_side(d.spec, d.root, d.cpu, [source, site], work)
        versions = d.side.run(["-c", SMOKE], what=f"{d.spec.suite}: importing the runtime")
        fetched = len(pins) - fetched_before
        say(f"  {d.spec.suite:<9} {len(pins)} wheels ({fetched} downloaded); imported on the Pi: "
            f"{versions.strip()}")  # fmt: skip


# --- stages 4-5: model and x86 reference --------------------------------------------------------


@dataclass
class Reference:
    """What x86 produced, and the inputs both sides share."""

    files: dict[str, Path]
    check: Path
    eval: Path  # a subset of `check`
    clip: Path
    inputs: dict[str, Path] = field(default_factory=dict)
    raw: dict[tuple[str, str], Path] = field(default_factory=dict)
    predictions: dict[str, compare.Predictions] = field(default_factory=dict)
    evals: dict[str, dict] = field(default_factory=dict)


def prepare_model(
    args: argparse.Namespace, work: Path, logs: Path
) -> tuple[model.Data, dict[str, Path]]:
    data_root = args.data or (None if args.synthetic or not DEFAULT_DATA.is_dir() else DEFAULT_DATA)
    data_dir = work / "data"
    if data_root is not None:
        data = model.photos(data_root, data_dir, train_per_class=TRAIN_PER_CLASS,
                            check_per_class=args.photos)  # fmt: skip
    else:
        data = model.shapes(data_dir, check_per_class=args.photos)
    stage(4, f"model: edgecnn train + export on {data.description}")
    files, epochs = model.train_and_export(data, work / "run", log=logs / "train-export.log")
    metrics = json.loads((work / "run" / "metrics.json").read_text())
    say(f"  {data.recipe.img_size} px edge net, {epochs} epochs, validation accuracy "
        f"{metrics.get('val_accuracy', 0):.1%}; exported {', '.join(files)}")  # fmt: skip
    return data, files


def prepare_reference(x86: Side, data: model.Data, files: dict[str, Path], work: Path) -> Reference:
    stage(5, "x86-64 reference: same-pixel tensors, predict, eval, a clip")
    clip = model.clip(data.check, work, images=CLIP_IMAGES, frames_per_image=FRAMES_PER_IMAGE)
    x86.decode_clip(clip)
    eval_dir = model.subset(data.check, work / "eval", per_class=EVAL_PER_CLASS)
    ref = Reference(files, data.check, eval_dir, clip)
    jobs = []
    for name, path in files.items():
        ref.inputs[name] = work / f"inputs-{name}.npy"
        n_raw = model.save_inputs(path, data.check, ref.inputs[name], count=RAW_IMAGES)
        jobs += raw_jobs(name, path, ref.inputs[name], x86.out)
        for backend in model.RAW_BACKENDS[name]:
            ref.raw[(name, backend)] = raw_output(x86.out, name, backend)
    run_raw(x86, "all", jobs, what="x86-64 raw outputs")
    for name, path in files.items():
        ref.predictions[name] = predict(x86, path, ref)
        ref.evals[name] = evaluate(x86, name, path, ref)
    say("  " + reference_summary(ref, n_raw))
    return ref


def reference_summary(ref: Reference, n_raw: int) -> str:
    """What x86 measured, for the stage line: counts and each file's accuracy on the photos."""
    first = ref.predictions[model.FILES[0]]
    photos = len(first.under(str(ref.check)).images)
    frames = len(first.images) - photos
    n_eval = ref.evals[model.FILES[0]]["count"]
    accuracy = ", ".join(
        f"{name} {_accuracy(p.under(str(ref.check)))}" for name, p in ref.predictions.items()
    )
    return (
        f"{n_raw} input tensors, {photos} check photos ({n_eval} for eval), a {frames}-frame "
        f"clip; top-1 accuracy {accuracy}"
    )


def _accuracy(photos: compare.Predictions) -> str:
    """Top-1 accuracy of predictions on class-folder photos (the folder names the truth)."""
    truth = [Path(image).parent.name for image in photos.images]
    right = sum(t == p for t, p in zip(truth, photos.top1_labels()))
    return f"{right / max(1, len(truth)):.1%}"


def eval_images(ref: Reference) -> set[str]:
    """The check photos `edgecnn eval` runs on, named as predict names them."""
    return {str(ref.check / p.relative_to(ref.eval)) for p in ref.eval.rglob("*") if p.is_file()}


def raw_jobs(name: str, path: Path, inputs: Path, out: Path) -> list[dict]:
    return [
        {"model": str(path), "backend": b, "input": str(inputs),
         "output": str(raw_output(out, name, b))}
        for b in model.RAW_BACKENDS[name]
    ]  # fmt: skip


def raw_output(out: Path, name: str, backend: str) -> Path:
    return out / f"raw-{name}-{backend}.npy"


def run_raw(side: Side, tag: str, jobs: list[dict], *, what: str) -> None:
    """`_pi_raw.py` on `side` for `jobs` (input tensors -> backend outputs, saved)."""
    spec = side.out / f"raw-jobs-{tag}.json"
    spec.write_text(json.dumps({"threads": 1, "jobs": jobs}))
    side.run([str(RAW_SCRIPT), str(spec)], what=what)


def predict(side: Side, path: Path, ref: Reference) -> compare.Predictions:
    """`edgecnn predict` on the check photos and the clip's frames, every class's score."""
    text = side.cli(
        ["predict", str(path), str(ref.check), str(side.frames), "--json", "--top-k", ALL_CLASSES,
         "--threads", "1"],
        what=f"{side.name}: edgecnn predict {path.name}",
    )  # fmt: skip
    return compare.parse_predictions(json.loads(text))


def evaluate(side: Side, name: str, path: Path, ref: Reference) -> dict:
    text = side.cli(
        ["eval", str(path), str(ref.eval), "--json", "-", "--threads", "1",
         "--confusion", str(side.out / f"confusion-{name}.png")],
        what=f"{side.name}: edgecnn eval {name}",
    )  # fmt: skip
    return json.loads(text)


# --- stage 6: the emulated Pi -------------------------------------------------------------------


@dataclass(frozen=True)
class FileResult:
    """The comparisons of one model file on one userland."""

    suite: str
    name: str
    verdicts: dict[str, compare.Verdict]

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts.values())

    def line(self) -> str:
        cells = " | ".join(f"{what}: {v.figures}" for what, v in self.verdicts.items())
        return f"  {self.suite:<9} {self.name:<18} {cells}  {'ok' if self.ok else 'FAIL'}"

    def failures(self) -> list[str]:
        return [
            f"{self.suite} {self.name} {what}: {v.reason}"
            for what, v in self.verdicts.items()
            if not v.ok
        ]


def check_file(side: Side, name: str, ref: Reference) -> FileResult:
    """Every comparison of one file on one emulated userland (a failed command fails only the
    comparisons that need its output)."""
    path = ref.files[name]
    verdicts = {"same pixels": _guarded(lambda: same_pixels(side, name, ref))}
    try:
        here = predict(side, path, ref)
    except CheckFailed as e:
        here = None
        verdicts["predict"] = compare.Verdict(False, "failed", str(e))
    flips = 0
    if here is not None:
        x86_photos = ref.predictions[name].under(str(ref.check))
        photos = here.under(str(ref.check))
        verdicts["predict"] = compare.compare_end_to_end(x86_photos, photos)
        evaluated = eval_images(ref)
        flips = compare.top1_changes(x86_photos.only(evaluated), photos.only(evaluated))
    verdicts["eval"] = _guarded(
        lambda: compare.compare_eval(ref.evals[name], evaluate(side, name, path, ref), flips=flips)
    )
    if here is None:
        verdicts["run"] = compare.Verdict(False, "not compared", "predict gave no frame labels")
    else:
        verdicts["run"] = _guarded(lambda: live(side, path, ref, here.under(str(side.frames))))
    return FileResult(side.name, name, verdicts)


def _guarded(step: Callable[[], compare.Verdict]) -> compare.Verdict:
    try:
        return step()
    except CheckFailed as e:
        return compare.Verdict(False, "failed", str(e))


def same_pixels(side: Side, name: str, ref: Reference) -> compare.Verdict:
    """The saved x86 input tensors through the file's backends here, against x86's outputs."""
    import numpy as np

    jobs = raw_jobs(name, ref.files[name], ref.inputs[name], side.out)
    run_raw(side, name, jobs, what=f"{side.name}: raw outputs of {name}")
    backends = model.RAW_BACKENDS[name]
    parts = []
    for backend in backends:
        x86 = np.load(ref.raw[(name, backend)])
        here = np.load(raw_output(side.out, name, backend))
        v = compare.compare_raw(x86, here, exact=name in model.EXACT_FILES)
        prefix = f"{backend} " if len(backends) > 1 else ""
        parts.append(compare.Verdict(v.ok, prefix + v.figures, prefix + v.reason))
    return compare.Verdict(
        all(p.ok for p in parts),
        ", ".join(p.figures for p in parts),
        "; ".join(p.reason for p in parts if not p.ok),
    )


def live(side: Side, path: Path, ref: Reference, frames: compare.Predictions) -> compare.Verdict:
    """`edgecnn run --jsonl -` on the clip against predict's labels of its frames, here."""
    text = side.cli(
        ["run", str(path), "--source", str(ref.clip), "--jsonl", "-", "--threads", "1"],
        what=f"{side.name}: edgecnn run {path.name}",
    )  # fmt: skip
    return compare.compare_live(compare.jsonl_labels(text), frames)


def run_devices(devices: list[Device], ref: Reference, jobs: int) -> list[FileResult]:
    """Every file on every userland, `jobs` emulated commands at a time; a result line is
    printed as each finishes."""
    stage(
        6, f"emulated Pi vs x86-64, per file: same pixels | predict | eval | run ({jobs} at a time)"
    )
    sides = [d.side for d in devices if d.side is not None]
    for side in sides:
        side.decode_clip(ref.clip)
    heavy_first = sorted(ref.files, key=lambda name: name in model.EXACT_FILES)  # float: ~10x
    units = [(side, name) for name in heavy_first for side in sides]
    results: dict[tuple[str, str], FileResult] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(check_file, side, name, ref): (side.name, name)
                   for side, name in units}  # fmt: skip
        for future in as_completed(futures):
            result = future.result()
            results[futures[future]] = result
            say(result.line())
    return [results[(side.name, name)] for side, name in units]


# --- main -----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    specs = check_usage(args)
    cache = cache_dir(args.cache)
    prepare_host()
    work = Path(tempfile.mkdtemp(prefix="edgecnn-pi-check-"))
    logs = work / "logs"
    logs.mkdir()
    failures: list[str] = []
    try:
        devices = prepare_userlands(specs, args.cpu, cache, logs)
        prepare_packages(devices, cache, work, logs)
        data, files = prepare_model(args, work, logs)
        ref = prepare_reference(x86_side(work), data, files, work)
        for result in run_devices(devices, ref, args.jobs):
            failures += result.failures()
    except (CheckFailed, RuntimeError, wheels.LockError, OSError) as e:
        failures.append(str(e))
    minutes, seconds = divmod(round(time.monotonic() - started), 60)
    wall = f"wall time of the check: {minutes} min {seconds:02d} s"
    for line in failures:
        print(f"pi-check: FAIL {line}", file=sys.stderr)
    if failures or args.keep:
        say(f"pi-check: work folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        say(f"pi-check: {len(failures)} failure(s) ({wall})")
        return 1
    say(f"pi-check: all passed ({wall})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
