"""The device install is self-sufficient: `edgecnn[tflite]` or `edgecnn[onnx]` alone runs
predict, eval, run, bench and profile on `.tflite`/`.onnx` files and on run directories.

Each command runs in a subprocess whose Python cannot find what a device does not have
(TensorFlow, Keras, matplotlib, Pillow, onnx, tf2onnx, and the other extra's runtime): a
`sitecustomize.py` on PYTHONPATH hides those packages from every import finder, so `import X`
raises ModuleNotFoundError and `importlib.util.find_spec("X")` is None, as where they are not
installed.  bench's worker processes inherit it.  Every process writes at exit which hidden
packages it had imported anyway (none, unless the hiding broke), so the tests also prove that
each process ran hidden.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from _bench_fixtures import LABELS, cached_run
from _live_fixtures import write_video

# Never on a device, whichever runtime it has.
NOT_ON_DEVICE = ("tensorflow", "keras", "tf_keras", "matplotlib", "PIL", "onnx", "tf2onnx")
# The runtime extras: what each device install lacks on top.
VARIANTS = {
    "tflite": NOT_ON_DEVICE + ("onnxruntime",),
    "onnx": NOT_ON_DEVICE + ("ai_edge_litert", "tflite_runtime"),
}
# MACs of the bench fixture's model (conv 3x3x3->4 stride 2 on 32x32, depthwise 3x3, dense 4->2),
# whichever file format carries it.
TOTAL_MACS = 15 * 15 * 4 * 27 + 15 * 15 * 4 * 9 + 4 * 2
FAST_BENCH = ("--runs", "2", "--warmup", "0", "--warmup-seconds", "0", "--min-seconds", "0")

_SITECUSTOMIZE = '''
"""Hide packages as if they were not installed, and record at exit any that were imported."""
import atexit
import json
import os
import sys

HIDDEN = frozenset(os.environ["EDGECNN_TEST_HIDDEN"].split(","))


class _Hiding:
    """Wraps one meta-path finder: hidden top-level names are not found through it."""

    def __init__(self, inner):
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            return None
        return self.inner.find_spec(name, path, target)

    def __getattr__(self, name):  # find_distributions, invalidate_caches, ...
        return getattr(self.inner, name)


sys.meta_path[:] = [_Hiding(finder) for finder in sys.meta_path]


@atexit.register
def _report():
    imported = sorted({m.partition(".")[0] for m in sys.modules} & HIDDEN)
    out = os.path.join(os.environ["EDGECNN_TEST_REPORTS"], f"{os.getpid()}.json")
    with open(out, "w") as f:
        json.dump({"argv": sys.argv, "imported": imported}, f)
'''


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("device_site")
    (folder / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    return folder


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The bench fixture's run (model.keras, export/model_{fp32,int8}.tflite, model.onnx), its
    class-folder images and a short generated clip, built once with TensorFlow in this process."""
    run = cached_run(tmp_path_factory.getbasetemp())
    clip = write_video(tmp_path_factory.mktemp("device_clip") / "clip.avi", ["red", "blue"] * 4)
    return {
        "run": run,
        "tflite": run / "export" / "model_int8.tflite",
        "onnx": run / "export" / "model.onnx",
        "keras": run / "model.keras",
        "data": run.parent / "data",
        "clip": clip,
    }


def device(
    site_dir: Path, variant: str, *args: str, tmp_path: Path, module: bool = True
) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """`edgecnn ARGS` (`python ARGS` with module=False) as on a device with only the `variant`
    extra installed: the completed process and one report per Python process it started
    (itself and any bench workers)."""
    reports = tmp_path / f"reports-{len(list(tmp_path.glob('reports-*')))}"
    reports.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(site_dir), os.environ.get("PYTHONPATH")) if p
        ),
        "EDGECNN_TEST_HIDDEN": ",".join(VARIANTS[variant]),
        "EDGECNN_TEST_REPORTS": str(reports),
    }
    proc = subprocess.run(
        [sys.executable, *(["-m", "edgecnn"] if module else []), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc, [json.loads(p.read_text()) for p in sorted(reports.glob("*.json"))]


def ok(proc: subprocess.CompletedProcess, reports: list[dict]) -> None:
    """Exit 0, no traceback, and every process ran with the device's packages only."""
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert reports, "the device environment was not in effect (no process report)"
    assert all(r["imported"] == [] for r in reports), reports


# case -> (device variant, backend that runs the model, model file that runs: a run directory's
# best file that the variant's backends can run)
CASES = {
    "tflite-file": ("tflite", "tflite", "model_int8.tflite"),
    "onnx-file-opencv": ("tflite", "opencv", "model.onnx"),
    "run-dir-tflite": ("tflite", "tflite", "model_int8.tflite"),
    "onnx-file": ("onnx", "onnx", "model.onnx"),
    "run-dir-onnx": ("onnx", "onnx", "model.onnx"),
}


def _target(case: str, files: dict[str, Path]) -> Path:
    if case.startswith("run-dir"):
        return files["run"]
    return files["tflite"] if case.startswith("tflite") else files["onnx"]


@pytest.fixture(params=sorted(CASES))
def case(request, files):
    variant, backend, resolved = CASES[request.param]
    return {
        "variant": variant,
        "backend": backend,
        "file": resolved,
        "model": _target(request.param, files),
    }


def test_predict(site_dir, files, case, tmp_path):
    images = [str(files["data"] / "cat" / "cat_0.png"), str(files["data"] / "dog")]
    proc, reports = device(
        site_dir,
        case["variant"],
        "predict",
        str(case["model"]),
        *images,
        "--json",
        tmp_path=tmp_path,
    )
    ok(proc, reports)
    doc = json.loads(proc.stdout)
    assert doc["labels"] == list(LABELS)
    assert Path(doc["model"]).name == case["file"] and doc["backend"] == case["backend"]
    assert len(doc["results"]) == 1 + 6  # one image, and the six in the folder
    for result in doc["results"]:
        scores = [p["score"] for p in result["predictions"]]
        assert {p["label"] for p in result["predictions"]} == set(LABELS)
        assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 0.02


def test_eval_json_and_confusion_png(site_dir, files, case, tmp_path):
    png = tmp_path / "confusion.png"
    proc, reports = device(
        site_dir, case["variant"], "eval", str(case["model"]), str(files["data"]),
        "--json", "-", "--confusion", str(png), tmp_path=tmp_path,
    )  # fmt: skip
    ok(proc, reports)
    report = json.loads(proc.stdout)
    assert report["labels"] == list(LABELS) and report["count"] == 12
    assert sum(map(sum, report["confusion_matrix"])) == 12
    assert 0.0 <= report["accuracy"] <= 1.0
    assert report["confusion_png"] == str(png)
    image = cv2.imread(str(png))
    assert image is not None and image.shape[0] > 50 and image.shape[1] > 50
    # the human-readable report went to stderr, naming the file and backend that ran
    assert f"{case['file']} (backend {case['backend']}," in proc.stderr


def test_run_on_a_clip(site_dir, files, case, tmp_path):
    proc, reports = device(
        site_dir, case["variant"], "run", str(case["model"]), "--source", str(files["clip"]),
        "--jsonl", "-", "--max-frames", "5", tmp_path=tmp_path,
    )  # fmt: skip
    ok(proc, reports)
    frames = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [f["index"] for f in frames] == list(range(5))
    assert all(f["label"] in LABELS and 0 < f["score"] <= 1 for f in frames)
    assert f"with {case['file']} ({case['backend']})" in proc.stderr


# skipped rows and the reason each prints, per variant
SKIPS = {
    "tflite": {"onnx": "needs onnxruntime: pip install 'edgecnn[onnx]'"},
    "onnx": {"tflite": "needs ai-edge-litert: pip install 'edgecnn[tflite]'"},
}
KERAS_SKIP = "needs TensorFlow: pip install 'edgecnn[train]'"


def test_bench_with_data_writes_the_plot(site_dir, files, case, tmp_path):
    out = {k: tmp_path / f"bench.{k}" for k in ("json", "png")}
    proc, reports = device(
        site_dir, case["variant"], "bench", str(case["model"]), "--data", str(files["data"]),
        *FAST_BENCH, "--no-save", "--json", str(out["json"]), "--plot", str(out["png"]),
        tmp_path=tmp_path,
    )  # fmt: skip
    ok(proc, reports)
    result = json.loads(out["json"].read_text())
    measured = [r for r in result["rows"] if not r["error"]]
    skipped = [r for r in result["rows"] if r.get("skipped")]
    assert measured and len(measured) + len(skipped) == len(result["rows"])
    for r in measured:
        assert r["p50_ms"] > 0 and r["n_images"] == 12 and 0 <= r["accuracy"] <= 1
        assert r["imported_tensorflow"] is False
    reasons = {**SKIPS[case["variant"]], "keras": KERAS_SKIP}
    for r in skipped:
        assert r["error"] == reasons[r["backend"]]
        assert f"skipped: {r['error']}" in proc.stdout
    if case["model"].is_dir():  # the run's model.keras is listed and skipped, not failed
        assert [r["artifact"] for r in skipped if r["backend"] == "keras"] == ["model.keras"]
        assert KERAS_SKIP in result["data"]["reference_error"]  # no agreement with Keras
    assert len(reports) >= 1 + len(measured)  # every measured row ran in its own hidden worker
    plot = cv2.imread(str(out["png"]))
    assert plot is not None and plot.shape[0] > 80 and plot.shape[1] > 400


def test_profile(site_dir, files, case, tmp_path):
    proc, reports = device(
        site_dir, case["variant"], "profile", str(case["model"]), "--json", tmp_path=tmp_path
    )
    ok(proc, reports)
    report = json.loads(proc.stdout)
    assert Path(report["model"]).name == case["file"]
    assert report["total"]["macs"] == TOTAL_MACS
    assert not any("not worked out" in n for n in report.get("notes", []))
    if case["file"] == "model_int8.tflite":  # measured against model_fp32.tflite with LiteRT
        assert report["quant_error_source"].startswith("measured vs model_fp32.tflite")
        assert report["quant_error"]


_HELP_ALL = """
import contextlib, io, json
from edgecnn.cli import COMMANDS, main

out = {}
for args in (["--help"], *([name, "--help"] for name in COMMANDS)):
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        try:
            main(args)
            code = None
        except SystemExit as e:
            code = e.code
    out[" ".join(args)] = [code, text.getvalue()]
print(json.dumps(out))
"""


def test_help_of_every_command(site_dir, tmp_path):
    from edgecnn.cli import COMMANDS

    proc, reports = device(site_dir, "tflite", "-c", _HELP_ALL, tmp_path=tmp_path, module=False)
    ok(proc, reports)
    helps = json.loads(proc.stdout)
    assert sorted(helps) == sorted(["--help", *(f"{name} --help" for name in COMMANDS)])
    for args, (code, text) in helps.items():
        assert code == 0, (args, text)
        assert text.startswith(f"usage: edgecnn {args.removesuffix('--help')}".rstrip()), text


@pytest.mark.parametrize(
    ("variant", "key", "needle"),
    [
        ("onnx", "tflite", "pip install 'edgecnn[tflite]'"),
        ("tflite", "keras", "pip install 'edgecnn[train]'"),
    ],
)
@pytest.mark.parametrize("command", ["predict", "profile"])
def test_a_file_the_device_cannot_run_is_one_clear_line(
    site_dir, files, tmp_path, variant, key, needle, command
):
    args = [command, str(files[key])]
    if command == "predict":
        args.append(str(files["data"] / "cat" / "cat_0.png"))
    proc, reports = device(site_dir, variant, *args, tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"edgecnn {command}: error:"), proc.stderr
    assert "is not installed" in lines[0] and needle in lines[0]
    assert all(r["imported"] == [] for r in reports)


def test_bench_of_only_a_keras_model_is_one_clear_line(site_dir, files, tmp_path):
    proc, _ = device(
        site_dir,
        "tflite",
        "bench",
        str(files["keras"]),
        *FAST_BENCH,
        "--no-save",
        tmp_path=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith(f"{KERAS_SKIP})")
