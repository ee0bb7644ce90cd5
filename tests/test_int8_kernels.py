"""The int8 files through every kernel path a host picks by itself, forced on every host.

LiteRT runs `model_int8.tflite` through the XNNPACK delegate, which picks its int8 microkernels
by cpuid (AMX, AVX-512 VNNI, AVX-VNNI, AVX2, SSE, NEON dot product) and offers no switch to cap
that. What can be forced, and is run here on every machine:

- `OpResolverType.AUTO`: XNNPACK, what `edgecnn.runtime` runs;
- `BUILTIN_WITHOUT_DEFAULT_DELEGATES`: TFLite's optimized kernels without XNNPACK; their int8
  matrix products go through ruy, which picks its own SIMD path (AVX-512, AVX2+FMA, AVX, NEON)
  by cpuid;
- the same with `RUY_PATHS=1`: ruy's portable C++ path (ruy reads the variable, a hex mask of
  its paths, when an interpreter first multiplies);
- `BUILTIN_REF`: TFLite's reference kernels, portable C++ without SIMD.

ONNX Runtime's CPU provider (MLAS) also picks its u8 x s8 kernels by cpuid (AMX, AVX-512 VNNI,
AVX-VNNI, AVX2) with no switch to cap it. `session.x64quantprecision=1` would move x86 CPUs to
u8 x u8 kernels, but only for weights outside [-64, 64] (its Avx2WeightS8ToU8Transformer leaves
weights that fit 7 bits alone), and `model_int8.onnx` keeps its weights in 7 bits
(tests/test_export.py): a pair of products then sums to at most 2 x 255 x 64 = 32640, so even
AVX2's 16-bit VPMADDUBSW sums are exact and every x86 CPU computes the same int32 sums. What
can be forced, and is run here: the fused int8 kernels (`ORT_ENABLE_ALL`, what the runtime
uses), `session.disable_quant_qdq=1` (QDQ left unfused: float ops between DequantizeLinear and
QuantizeLinear) and `ORT_DISABLE_ALL`.

Every path computes the same int32 sums of int8 products. What may differ is how a sum is
rescaled to the next layer's int8 scale: TFLite's reference kernels and ruy's paths use a 31-bit
fixed-point multiplier with one or two roundings, XNNPACK and ONNX Runtime a float32
multiplier, the unfused ONNX graph float32 arithmetic throughout. Each of these rounds the same
real value, so a layer fed the same int8 inputs answers within one level; a level it rounds the
other way then travels through the layers after it. The tolerances below follow from that.
"""

from __future__ import annotations

import importlib
import json
import platform
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from _export_fixtures import CLASSES, exported_run

from edgecnn.runtime import load
from edgecnn.runtime.backends.onnx import OnnxBackend
from edgecnn.runtime.backends.tflite import TFLiteBackend, find_interpreter
from edgecnn.runtime.dataset import list_dataset, load_pixels

# images without any class in them: no margins, many rounding ties, every layer busy
NOISE_IMAGES = 100
# logits of two paths may differ by one level from the last layer's own rounding, plus one
# reaching it from the layers before: the global mean divides a conv output rounded the other
# way by the positions it averages (169 here), so earlier flips move a logit by less than a level
LOGIT_LEVELS = 2
TFLITE_PATHS = ("xnnpack", "optimized", "optimized-portable-ruy", "reference")


def _photos_and_noise(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """The run's training and validation photos (a model with real margins on them), and noise."""
    contract = load(run / "export" / "model_int8.tflite").contract
    info = json.loads((run / "edgecnn.json").read_text(encoding="utf-8"))["info"]
    folders = [info["data_dir"], info["val_dir"]]
    photos = np.concatenate(
        [
            load_pixels(list_dataset(f, classes=CLASSES), contract, progress=False).pixels
            for f in folders
        ]
    )
    noise = np.random.default_rng(0).integers(0, 256, (NOISE_IMAGES, *photos.shape[1:]))
    return photos, noise.astype(np.uint8)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    run, _ = exported_run(tmp_path_factory)
    photos, noise = _photos_and_noise(run)
    return run / "export", photos, np.concatenate([photos, noise])


class _TFLiteRun:
    """One int8 .tflite file on one kernel path: probabilities through the runtime's own
    TFLiteBackend, and every op's int8 output (all tensors are kept, so each op can be compared
    with the same op on another path)."""

    def __init__(self, path: Path, pixels: np.ndarray, resolver, ruy_paths: str | None) -> None:
        interpreter_cls, module = find_interpreter()
        with pytest.MonkeyPatch.context() as mp:
            if ruy_paths:
                mp.setenv("RUY_PATHS", ruy_paths)
            else:
                mp.delenv("RUY_PATHS", raising=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # preserve_all_tensors warns it is for debugging
                it = interpreter_cls(
                    model_path=str(path),
                    num_threads=1,
                    experimental_op_resolver_type=resolver,
                    experimental_preserve_all_tensors=True,
                )
            it.allocate_tensors()
            backend = TFLiteBackend(path, 1, it, module)
            nodes = it._get_ops_details()
            self.delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
            self.ops = [n for n in nodes if n["op_name"] != "DELEGATE"]
            wanted = {t for op in self.ops for t in (*op["inputs"], *op["outputs"]) if t >= 0}
            probs, tensors = [], []
            for x in pixels:
                probs.append(backend.run(x[None])[0])
                tensors.append({t: it.get_tensor(t).copy() for t in wanted})
        self.path = path
        self.probs = np.array(probs)
        self.tensors = tensors
        self.details = {d["index"]: d for d in it.get_tensor_details()}
        self.inputs = [d["index"] for d in it.get_input_details()]
        self.output_scale = float(it.get_output_details()[0]["quantization"][0])

    def level_diff(self, other: _TFLiteRun, tensor: int) -> np.ndarray:
        """Per image, the largest difference in int8 levels of `tensor` between two paths."""
        return np.array(
            [
                np.abs(a[tensor].astype(np.int32) - b[tensor].astype(np.int32)).max()
                for a, b in zip(self.tensors, other.tensors, strict=True)
            ]
        )


@pytest.fixture(scope="module")
def tflite_runs(images):
    export_dir, _, pixels = images
    interpreter_cls, _ = find_interpreter()
    resolver = importlib.import_module(interpreter_cls.__module__).OpResolverType
    choices = {
        "xnnpack": (resolver.AUTO, None),
        "optimized": (resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES, None),
        "optimized-portable-ruy": (resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES, "1"),
        "reference": (resolver.BUILTIN_REF, None),
    }
    path = export_dir / "model_int8.tflite"
    return {name: _TFLiteRun(path, pixels, *choices[name]) for name in TFLITE_PATHS}


def test_auto_delegates_every_int8_op_to_xnnpack_and_the_forced_paths_do_not(tflite_runs):
    xnnpack = tflite_runs["xnnpack"]
    assert xnnpack.delegates, "the default resolver applied no XNNPACK delegate"
    # with every tensor kept, XNNPACK takes one op per delegate node, so each op's output is
    # still its own: what the per-op comparison below relies on
    by_output = {tuple(op["outputs"]): op for op in xnnpack.ops}
    for node in xnnpack.delegates:
        op = by_output[tuple(node["outputs"])]
        assert sorted(node["inputs"]) == sorted(t for t in op["inputs"] if t >= 0), op["op_name"]
    assert {op["op_name"] for op in xnnpack.ops} >= {"CONV_2D", "FULLY_CONNECTED", "SOFTMAX"}
    for name in ("optimized", "optimized-portable-ruy", "reference"):
        assert tflite_runs[name].delegates == [], name


@pytest.mark.parametrize("path", ["xnnpack", "optimized", "optimized-portable-ruy"])
def test_each_tflite_op_fed_the_same_int8_inputs_answers_within_one_level(tflite_runs, path):
    """Same int32 sums, another rounding of the rescale: one level at most, on any input."""
    run, ref = tflite_runs[path], tflite_runs["reference"]
    produced = {t for op in ref.ops for t in op["outputs"]} | set(ref.inputs)
    compared = 0
    for op in ref.ops:
        inputs = [t for t in op["inputs"] if t in produced]  # weights are the file's own
        same = np.all([run.level_diff(ref, t) == 0 for t in inputs], axis=0)
        diff = run.level_diff(ref, op["outputs"][0])
        assert diff[same].max(initial=0) <= 1, (op["op_name"], diff[same].max())
        compared += int(same.sum())
    # the first op always sees the same pixels: never a vacuous comparison
    assert compared >= len(ref.tensors)


@pytest.mark.parametrize("path", ["xnnpack", "optimized", "optimized-portable-ruy"])
def test_tflite_answers_match_the_reference_kernels_within_the_rounding_budget(
    tflite_runs, images, path
):
    run, ref = tflite_runs[path], tflite_runs["reference"]
    softmax = next(op for op in ref.ops if op["op_name"] == "SOFTMAX")
    logits = softmax["inputs"][0]
    assert run.level_diff(ref, logits).max() <= LOGIT_LEVELS
    tol = _tflite_budget(ref)
    assert np.abs(run.probs - ref.probs).max() <= tol + 1e-6
    _same_answer_wherever_the_margin_exceeds(run.probs, ref.probs, tol, photos=len(images[1]))


def _same_answer_wherever_the_margin_exceeds(
    probs: np.ndarray, ref: np.ndarray, tol: float, *, photos: int
) -> None:
    """Top-1 agrees on every image whose reference top-2 margin exceeds twice `tol` (two
    probabilities each moving by up to `tol` cannot swap), and every photo has such a margin:
    the fixture's model is trained far enough for int8 rounding not to decide its answers."""
    top2 = np.sort(ref, axis=1)[:, -2:]
    safe = top2[:, 1] - top2[:, 0] > 2 * tol
    assert safe[:photos].all(), f"{int((~safe[:photos]).sum())} photos within {2 * tol:.3f}"
    assert np.array_equal(probs[safe].argmax(1), ref[safe].argmax(1))


def _tflite_budget(run: _TFLiteRun) -> float:
    """How far two kernel paths' probabilities may differ: the logits' budget through softmax's
    steepest slope (it moves no probability by more than half the change of the logits, at
    p = 1/2), and the output's own rounding."""
    softmax = next(op for op in run.ops if op["op_name"] == "SOFTMAX")
    logit_scale = run.details[softmax["inputs"][0]]["quantization"][0]
    return LOGIT_LEVELS * logit_scale / 2 + run.output_scale


def _onnx_budget(model_path: Path) -> float:
    """The same for the int8 ONNX file, plus one level for QLinearSoftmax, which computes its
    uint8 probabilities from a table of exponentials and rounds them its own way (it reads the
    top class one level lower)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model_path)).graph
    scales = {t.name: float(numpy_helper.to_array(t)) for t in graph.initializer if not t.dims}
    producer = {out: node for node in graph.node for out in node.output}
    softmax = next(n for n in graph.node if n.op_type == "Softmax")
    logit_scale = scales[producer[softmax.input[0]].input[1]]
    output_scale = scales[producer[graph.output[0].name].input[1]]
    return LOGIT_LEVELS * logit_scale / 2 + 2 * output_scale


def _onnx_session(path: Path, dump: Path, *, level: str, config: dict[str, str]):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    options.optimized_model_filepath = str(dump)
    for key, value in config.items():
        options.add_session_config_entry(key, value)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return OnnxBackend(path, 1, session, f"onnxruntime {ort.__version__}")


@pytest.fixture(scope="module")
def onnx_runs(images, tmp_path_factory):
    import onnx

    export_dir, _, pixels = images
    path = export_dir / "model_int8.onnx"
    dumps = tmp_path_factory.mktemp("ort_graphs")
    choices = {
        "fused": ("ORT_ENABLE_ALL", {}),  # what runtime/backends/onnx.py opens
        "unfused": ("ORT_ENABLE_ALL", {"session.disable_quant_qdq": "1"}),
        "unoptimized": ("ORT_DISABLE_ALL", {}),
    }
    runs = {}
    for name, (level, config) in choices.items():
        backend = _onnx_session(path, dumps / f"{name}.onnx", level=level, config=config)
        ops = {n.op_type for n in onnx.load(str(dumps / f"{name}.onnx")).graph.node}
        runs[name] = (backend.run(pixels.astype(np.float32)), ops)
    return path, runs


def test_onnx_runtime_fuses_int8_kernels_by_default_and_can_be_forced_not_to(onnx_runs, images):
    path, runs = onnx_runs
    assert {"QLinearConv", "QGemm"} <= runs["fused"][1]
    for name in ("unfused", "unoptimized"):
        assert "Conv" in runs[name][1] and "QLinearConv" not in runs[name][1], name
    # the runtime's own ONNX backend is the fused path
    product = load(path, backend="onnx", threads=1).probs_pixels(images[2])
    np.testing.assert_array_equal(product, runs["fused"][0])


@pytest.mark.parametrize("path", ["unfused", "unoptimized"])
def test_onnx_int8_kernels_match_the_unfused_graph_within_the_rounding_budget(
    onnx_runs, images, path
):
    model_path, runs = onnx_runs
    tol = _onnx_budget(model_path)
    fused, other = runs["fused"][0], runs[path][0]
    assert np.abs(fused - other).max() <= tol + 1e-6
    _same_answer_wherever_the_margin_exceeds(fused, other, tol, photos=len(images[1]))


# --- the same files as older x86 CPUs ----------------------------------------------------------
#
# XNNPACK and MLAS pick their kernels by cpuid and cannot be told otherwise, but a process run by
# qemu's user-mode emulator sees the cpuid of the CPU model it is given.  Each model below makes
# both runtimes take another family of kernels than a host with AVX-512 VNNI or AMX does (qemu
# emulates no AVX-512, so those stay with the hosts that have them).  Same pixels, same files.
QEMU = shutil.which("qemu-x86_64-static") or shutil.which("qemu-x86_64")
EMULATED_SCRIPT = Path(__file__).with_name("_emulated_cpu_probs.py")
EMULATED_IMAGES = 60  # emulation runs the kernels ~100x slower
CPU_MODELS = {  # qemu -cpu name: (instruction sets it must report, ones it must not)
    "Nehalem": ({"SSE42"}, {"AVX"}),
    "SandyBridge": ({"AVX"}, {"AVX2", "FMA3"}),
    "EPYC-Rome": ({"AVX2", "FMA3"}, {"AVX512F"}),
}


@pytest.fixture(scope="module")
def emulated(images, tmp_path_factory):
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(
            f"x86-64 CPU models are emulated on x86-64 hosts only, not {platform.machine()}"
        )
    if QEMU is None:
        pytest.skip(
            "qemu-x86_64-static not installed (apt-get install qemu-user-static): the int8 files "
            "cannot be run as older x86 CPUs here"
        )
    export_dir, photos, pixels = images
    n_photos = min(len(photos), EMULATED_IMAGES - 10)
    chosen = np.concatenate([pixels[:n_photos], pixels[len(photos) : len(photos) + 10]])
    work = tmp_path_factory.mktemp("emulated")
    np.save(work / "pixels.npy", chosen)
    results = {}
    for cpu in CPU_MODELS:
        out = work / f"{cpu}.npz"
        done = subprocess.run(
            [QEMU, "-cpu", cpu, sys.executable, str(EMULATED_SCRIPT), str(export_dir),
             str(work / "pixels.npy"), str(out)],
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{cpu}: {done.stderr.strip().splitlines()[-1:]}"
        results[cpu] = dict(np.load(out))
    return chosen, n_photos, results


@pytest.mark.parametrize("cpu", list(CPU_MODELS))
def test_int8_files_answer_the_same_on_older_x86_cpus(emulated, tflite_runs, onnx_runs, cpu):
    """The int8 TFLite file (XNNPACK) and the int8 ONNX file (ONNX Runtime's fused kernels) on
    an emulated SSE4.2, AVX or AVX2 CPU give this host's answers within the rounding budget of
    the kernel-path tests above: every path computes the same int32 sums and at most rounds a
    rescaled sum the other way."""
    pixels, n_photos, results = emulated
    has, lacks = CPU_MODELS[cpu]
    features = set(results[cpu]["features"])
    assert has <= features and not lacks & features, f"{cpu} reported {sorted(features)}"

    tflite = tflite_runs["xnnpack"]
    here = load(tflite.path, backend="tflite", threads=1).probs_pixels(pixels)
    tol = _tflite_budget(tflite)
    assert np.abs(results[cpu]["tflite"] - here).max() <= tol + 1e-6
    _same_answer_wherever_the_margin_exceeds(results[cpu]["tflite"], here, tol, photos=n_photos)

    path, _ = onnx_runs
    here = load(path, backend="onnx", threads=1).probs_pixels(pixels)
    tol = _onnx_budget(path)
    assert np.abs(results[cpu]["onnx"] - here).max() <= tol + 1e-6
    _same_answer_wherever_the_margin_exceeds(results[cpu]["onnx"], here, tol, photos=n_photos)


# Float32 files on an older CPU: the same model, other vector widths, and no fused multiply-add
# on Nehalem and SandyBridge, so sums are rounded in another order and at other points. What
# `make pi-check` allows between aarch64 and x86 on the same pixels.
FLOAT_TOLERANCE = 1e-5


@pytest.mark.parametrize("cpu", list(CPU_MODELS))
def test_float_files_answer_the_same_on_older_x86_cpus(emulated, images, cpu):
    """`model_fp32.tflite` (XNNPACK's float kernels) and `model.onnx` (ONNX Runtime's MLAS) on
    an emulated SSE4.2, AVX or AVX2 CPU: probabilities within `FLOAT_TOLERANCE` of this host's
    and the same top-1 answer on every image whose margin rounding cannot decide."""
    pixels, n_photos, results = emulated
    export_dir = images[0]
    for key, path, backend in (
        ("tflite_fp32", export_dir / "model_fp32.tflite", "tflite"),
        ("onnx_fp32", export_dir / "model.onnx", "onnx"),
    ):
        here = load(path, backend=backend, threads=1).probs_pixels(pixels)
        assert np.abs(results[cpu][key] - here).max() <= FLOAT_TOLERANCE, (key, cpu)
        _same_answer_wherever_the_margin_exceeds(
            results[cpu][key], here, FLOAT_TOLERANCE, photos=n_photos
        )
