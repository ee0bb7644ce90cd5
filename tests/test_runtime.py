"""edgecnn.runtime: load() -> Classifier over every backend, parity with Keras, frames of any
kind, run-directory resolution, evaluate() and the metrics module."""

from __future__ import annotations

import shutil
import warnings

import cv2
import numpy as np
import pytest
from _runtime_fixtures import LABELS, SIZE, artifacts_once, synthetic_images

from edgecnn.runtime import (
    Classifier,
    InputError,
    MetadataWarning,
    MissingDependencyError,
    evaluate,
    load,
    resolve_model,
    to_input,
)
from edgecnn.runtime.backends import available_backends, choose_backend, get_backend
from edgecnn.runtime.dataset import list_dataset, load_pixels
from edgecnn.runtime.metrics import (
    accuracy_interval,
    classification_report,
    confusion_png,
    format_report,
)

# (artifact, backend) pairs: every backend on every file kind it runs
CASES = [
    ("tflite", "tflite"),
    ("tflite_int8", "tflite"),
    ("tflite_uint8", "tflite"),
    ("onnx", "onnx"),
    ("onnx", "opencv"),
    ("onnx_int8", "onnx"),
    ("keras", "keras"),
]
# OpenCV's DNN module on the QDQ int8 file is its own test below: whether it can run that
# layout depends on the OpenCV release (5.0's classic engine can; 5.1 cannot load a quantized
# Gemm whose weights feed it alone, as this file's dense layer does).
FP32_CASES = [c for c in CASES if "int8" not in c[0] and c[1] != "keras"]


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    return artifacts_once(tmp_path_factory)


@pytest.fixture(scope="module")
def frames():
    """BGR frames (what a camera gives) and their classes."""
    rgb, y = synthetic_images(6, seed=123)
    return [cv2.cvtColor(img, cv2.COLOR_RGB2BGR) for img in rgb], y


_CLASSIFIERS: dict[tuple[str, str], Classifier] = {}


def open_case(arts, artifact: str, backend: str) -> Classifier:
    key = (artifact, backend)
    if key not in _CLASSIFIERS:
        _CLASSIFIERS[key] = load(arts[artifact], backend=backend, threads=2)
    return _CLASSIFIERS[key]


@pytest.fixture(scope="module")
def keras_clf(arts):
    return open_case(arts, "keras", "keras")


@pytest.mark.parametrize(("artifact", "backend"), CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_classifier_reads_labels_and_classifies(arts, frames, artifact, backend):
    clf = open_case(arts, artifact, backend)
    assert clf.backend == backend
    assert clf.labels == LABELS
    assert (clf.contract.height, clf.contract.width) == (SIZE, SIZE)
    assert clf.path == arts[artifact]
    assert clf.describe()["threads"] == 2
    images, y = frames
    preds = [clf.predict(img) for img in images]
    assert all(len(p) == len(LABELS) for p in preds)
    assert all(p[0][1] >= p[1][1] >= p[2][1] for p in preds)  # best first
    accuracy = np.mean([LABELS.index(p[0][0]) == t for p, t in zip(preds, y)])
    assert accuracy >= 0.9


@pytest.mark.parametrize(("artifact", "backend"), CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_batch_paths_agree_with_single_predictions(arts, frames, artifact, backend):
    clf = open_case(arts, artifact, backend)
    images, _ = frames
    single = [clf.predict(img, top_k=1)[0] for img in images]
    batch = [p[0] for p in clf.predict_batch(images, top_k=1)]
    assert [s[0] for s in single] == [b[0] for b in batch]
    np.testing.assert_allclose([s[1] for s in single], [b[1] for b in batch], atol=1e-5)

    pixels = np.stack(
        [
            cv2.cvtColor(
                cv2.resize(i, (SIZE, SIZE), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB
            )
            for i in images
        ]
    )
    p1 = clf.probs(to_input(pixels, clf.contract))
    p2 = clf.probs_pixels(pixels, batch=4)  # uneven chunks: 4 + 4 + ... exercise batch resizing
    assert p1.dtype == np.float32 and p1.shape == (len(images), len(LABELS))
    np.testing.assert_allclose(p1, p2, atol=1e-5)
    np.testing.assert_allclose(p1.sum(axis=1), 1.0, atol=0.02)
    assert clf.probs(np.zeros((0, SIZE, SIZE, 3), np.float32)).shape == (0, len(LABELS))


@pytest.mark.parametrize(("artifact", "backend"), CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_one_frame_path_gives_what_the_batch_path_gives(arts, frames, artifact, backend):
    """What the live loop calls per frame (`frame_pixels` -> `frame_input` -> `frame_probs`)
    gives `probs_pixels`' numbers; a model that takes raw pixels is handed the frame's pixels
    themselves (no copy, no float step), any other float32 model input.  `frame_probs` (each
    backend's lean one-frame path) is bit-identical to `probs` on uint8 and on float input,
    and its row is the caller's: the next frame does not overwrite it."""
    clf = open_case(arts, artifact, backend)
    images, _ = frames
    for image in images:
        pixels = clf.frame_pixels(image)
        assert pixels.dtype == np.uint8 and pixels.shape == (SIZE, SIZE, 3)
        expected = clf.probs_pixels(pixels.copy())
        x = clf.frame_input(pixels)
        assert x.shape == (1, SIZE, SIZE, 3)
        if clf.takes_raw_pixels:
            assert x.dtype == np.uint8 and np.shares_memory(x, pixels)
        else:
            assert x.dtype == np.float32 and not np.shares_memory(x, pixels)
        np.testing.assert_allclose(clf.probs(x), expected, rtol=0, atol=1e-6)
        row = clf.frame_probs(x)
        assert row.dtype == np.float32 and row.shape == (len(LABELS),)
        np.testing.assert_array_equal(row, clf.probs(x)[0])
        x_float = x.astype(np.float32)
        np.testing.assert_array_equal(clf.frame_probs(x_float), clf.probs(x_float)[0])
        kept = row.copy()
        clf.frame_probs(clf.frame_input(clf.frame_pixels(images[0][::-1].copy())))
        np.testing.assert_array_equal(row, kept)


def test_backend_takes_uint8_pixels_only_where_the_model_does(arts):
    """`Backend.run` takes float32 model input; `run_pixels` (uint8 as it is) exists only where
    `takes_raw_pixels`, with exactly the float path's numbers."""
    rgb, _ = synthetic_images(4, seed=3)
    raw = get_backend("tflite").open(arts["tflite_uint8"], threads=1)
    assert raw.takes_raw_pixels
    np.testing.assert_array_equal(raw.run_pixels(rgb), raw.run(rgb.astype(np.float32)))
    with pytest.raises(TypeError, match="uint8"):
        raw.run_pixels(rgb.astype(np.float32))
    for artifact, backend in [("tflite_int8", "tflite"), ("onnx", "onnx")]:
        other = get_backend(backend).open(arts[artifact], threads=1)
        assert not other.takes_raw_pixels
        with pytest.raises(NotImplementedError, match="float32 model input only"):
            other.run_pixels(rgb)


@pytest.mark.parametrize(
    ("artifact", "backend"), FP32_CASES, ids=[f"{a}-{b}" for a, b in FP32_CASES]
)
def test_fp32_backends_match_keras(arts, keras_clf, artifact, backend):
    """Parity: the same top-1 as the Keras model on every image, and near-identical scores."""
    clf = open_case(arts, artifact, backend)
    rgb, _ = synthetic_images(15, seed=7)
    x = to_input(rgb, clf.contract)
    ref = keras_clf.probs(x)
    got = clf.probs(x)
    assert (got.argmax(1) == ref.argmax(1)).all()
    np.testing.assert_allclose(got, ref, atol=1e-4)


@pytest.mark.parametrize("artifact", ["tflite_int8", "tflite_uint8", "onnx_int8"])
def test_int8_models_agree_with_keras_on_most_images(arts, keras_clf, artifact):
    clf = open_case(arts, artifact, "onnx" if artifact == "onnx_int8" else "tflite")
    rgb, _ = synthetic_images(15, seed=7)
    x = to_input(rgb, clf.contract)
    agree = (clf.probs(x).argmax(1) == keras_clf.probs(x).argmax(1)).mean()
    assert agree >= 0.9


def test_opencv_runs_qdq_int8_onnx_or_refuses_in_one_line(arts, keras_clf):
    """OpenCV releases differ on export-style QDQ files: the backend runs them (falling back to
    OpenCV 5.0's classic engine) or refuses with one line naming every engine it tried."""
    try:
        clf = load(arts["onnx_int8"], backend="opencv", threads=1)
    except InputError as e:
        message = str(e)
        assert "\n" not in message
        assert message.startswith(f"{arts['onnx_int8']}: OpenCV DNN cannot run this ONNX file (")
        assert "default:" in message
        assert message.endswith(
            "try the float model.onnx, or ONNX Runtime: pip install 'edgecnn[onnx]'"
        )
        return
    assert clf.describe()["engine"] in ("default", "classic")
    rgb, _ = synthetic_images(10, seed=8)
    x = to_input(rgb, clf.contract)
    assert (clf.probs(x).argmax(1) == keras_clf.probs(x).argmax(1)).mean() >= 0.9


def test_auto_moves_on_when_an_installed_engine_refuses_the_file(arts, monkeypatch):
    onnx_backend = get_backend("onnx")

    def refuse(cls, path, *, threads):
        raise InputError(f"{path}: this engine cannot run it")

    monkeypatch.setattr(onnx_backend, "open", classmethod(refuse))
    clf = load(arts["onnx"], threads=1)  # ONNX Runtime refuses; OpenCV runs the float file
    assert clf.backend == "opencv"
    assert clf.predict(np.zeros((32, 32, 3), np.uint8))[0][0] in LABELS
    with pytest.raises(InputError, match="this engine cannot run it"):
        load(arts["onnx"], backend="onnx", threads=1)  # asked for by name: no fallback


def test_auto_stops_at_a_file_an_engine_found_malformed(arts, monkeypatch):
    from edgecnn.runtime.errors import BrokenModelError

    tried = []

    def broken(cls, path, *, threads):
        raise BrokenModelError(f"{path}: cannot load ONNX model (Invalid model)")

    def record(cls, path, *, threads):
        tried.append(cls.name)
        raise InputError("no")

    monkeypatch.setattr(get_backend("onnx"), "open", classmethod(broken))
    monkeypatch.setattr(get_backend("opencv"), "open", classmethod(record))
    with pytest.raises(BrokenModelError, match=r"cannot load ONNX model \(Invalid model\)$"):
        load(arts["onnx"], threads=1)
    assert tried == []  # OpenCV, which checks less, never saw the file


def test_auto_names_every_refusal_when_no_engine_can_run_the_file(arts, monkeypatch):
    for name in ("onnx", "opencv"):
        monkeypatch.setattr(
            get_backend(name),
            "open",
            classmethod(lambda cls, path, *, threads: (_ for _ in ()).throw(InputError("no"))),
        )
    with pytest.raises(InputError, match=r"no installed backend can run this file") as e:
        load(arts["onnx"], threads=1)
    assert "onnx: no" in str(e.value) and "opencv: no" in str(e.value)


@pytest.mark.parametrize(
    ("artifact", "dtype"), [("tflite_int8", "int8"), ("tflite_uint8", "uint8")]
)
def test_int8_tflite_quantisation_comes_from_the_file(arts, artifact, dtype):
    info = open_case(arts, artifact, "tflite").describe()
    assert info["input"]["dtype"] == dtype and info["input"]["scale"] > 0
    assert info["output"]["dtype"] == dtype and info["output"]["scale"] > 0
    assert info["delegate"].startswith("XNNPACK")
    assert "ai_edge_litert" in info["module"]


@pytest.mark.parametrize(
    "frame",
    [
        np.full((480, 640, 3), (255, 0, 0), np.uint8),  # VGA BGR, pure blue
        np.full((7, 500, 3), (255, 0, 0), np.uint8),  # extreme aspect ratio
        np.full((2000, 31, 4), (255, 0, 0, 128), np.uint8),  # BGRA
        np.full((40, 40), 200, np.uint8),  # gray HxW
        np.full((40, 40, 1), 200, np.uint8),  # gray HxWx1
        np.full((64, 64, 3), (1.0, 0.0, 0.0), np.float32),  # float 0..1
        np.full((64, 64, 3), (65535, 0, 0), np.uint16),  # 16-bit
        np.full((1, 1, 3), (255, 0, 0), np.uint8),  # a single pixel
    ],
    ids=["vga", "7x500", "bgra", "gray2d", "gray1ch", "float", "uint16", "1x1"],
)
@pytest.mark.parametrize("artifact", ["tflite_int8", "onnx"])
def test_any_frame_is_accepted(arts, frame, artifact):
    clf = open_case(arts, artifact, "auto")
    pred = clf.predict(frame, top_k=2)
    assert len(pred) == 2 and pred[0][0] in LABELS and 0.0 <= pred[0][1] <= 1.0
    if frame.ndim == 3 and frame.shape[2] >= 3 and frame[0, 0, 0] > 0 and frame[0, 0, 1] == 0:
        assert pred[0][0] == "blue"  # BGR order kept: channel 0 is blue


def test_paths_and_bytes_are_accepted(arts):
    clf = open_case(arts, "onnx", "onnx")
    image = next((arts["data"] / "red").iterdir())
    assert clf.predict(image, top_k=1)[0][0] == "red"
    assert clf.predict(str(image), top_k=1)[0][0] == "red"
    assert clf.predict(image.read_bytes(), top_k=1)[0][0] == "red"


def test_top_k(arts):
    clf = open_case(arts, "tflite", "tflite")
    frame = np.zeros((10, 10, 3), np.uint8)
    assert len(clf.predict(frame, top_k=1)) == 1
    assert len(clf.predict(frame, top_k=99)) == len(LABELS)
    assert len(clf.predict(frame)) == len(LABELS)
    with pytest.raises(InputError, match="top_k"):
        clf.predict(frame, top_k=0)


def test_auto_picks_a_backend_by_file_type(arts):
    assert load(arts["tflite"]).backend == "tflite"
    assert load(arts["onnx"]).backend == "onnx"
    assert set(available_backends()) == {"tflite", "onnx", "opencv", "keras"}


def test_auto_falls_back_to_opencv_without_onnxruntime(arts, monkeypatch):
    monkeypatch.setattr(get_backend("onnx"), "is_available", classmethod(lambda cls: False))
    assert choose_backend("onnx").name == "opencv"
    assert load(arts["onnx"]).backend == "opencv"
    with pytest.raises(MissingDependencyError, match=r"edgecnn\[onnx\]"):
        load(arts["onnx"], backend="onnx")


@pytest.mark.parametrize(("kind", "extra"), [("tflite", "tflite"), ("keras", "train")])
def test_missing_backend_package_names_the_extra(monkeypatch, kind, extra):
    for name in ("tflite", "keras"):
        monkeypatch.setattr(get_backend(name), "is_available", classmethod(lambda cls: False))
    with pytest.raises(MissingDependencyError, match=rf"pip install 'edgecnn\[{extra}\]'"):
        choose_backend(kind)


def test_model_without_metadata_warns_and_numbers_its_classes(arts):
    for key in ("tflite_bare", "onnx_bare"):
        with pytest.warns(MetadataWarning, match="no edgecnn metadata"):
            clf = load(arts[key])
        assert clf.labels == ("class_0", "class_1", "class_2")
        assert clf.contract.info.get("assumed") is True
        # folders are matched by sorted name -> index, the order training uses
        report = evaluate(clf, arts["data"])
        assert report["labels"] == sorted(LABELS)
        assert report["accuracy"] >= 0.9


def test_resolve_model_picks_the_best_artifact_of_a_run(arts, tmp_path):
    run = tmp_path / "run"
    (run / "export").mkdir(parents=True)
    shutil.copy(arts["keras"], run / "model.keras")
    assert resolve_model(run) == run / "model.keras"
    shutil.copy(arts["onnx"], run / "export" / "model.onnx")
    assert resolve_model(run) == run / "export" / "model.onnx"
    shutil.copy(arts["tflite"], run / "export" / "model_fp32.tflite")
    assert resolve_model(run) == run / "export" / "model_fp32.tflite"
    shutil.copy(arts["tflite_int8"], run / "export" / "model_int8.tflite")
    assert resolve_model(run) == run / "export" / "model_int8.tflite"
    assert resolve_model(run / "export") == run / "export" / "model_int8.tflite"
    assert resolve_model(run, backend="opencv") == run / "export" / "model.onnx"
    assert resolve_model(run, backend="keras") == run / "model.keras"
    clf = load(run, backend="onnx")
    assert clf.backend == "onnx" and clf.path.name == "model.onnx"
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no model file found"):
        resolve_model(tmp_path / "empty")


def test_evaluate_folder_reports_metrics_and_skipped_files(arts, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(arts["data"], data)
    (data / "green" / "broken.png").write_bytes(b"this is not a png file at all")
    clf = open_case(arts, "tflite", "tflite")
    report = evaluate(clf, data, batch=5)
    n = sum(1 for _ in arts["data"].rglob("*.png"))
    assert report["count"] == n
    assert report["accuracy"] >= 0.9
    assert report["labels"] == list(LABELS)
    assert np.asarray(report["confusion_matrix"]).sum() == n
    assert set(report["per_class"]) == set(LABELS)
    assert report["per_class"]["red"]["support"] == 6
    assert [s["path"] for s in report["skipped"]] == [str(data / "green" / "broken.png")]
    assert report["backend"] == "tflite" and report["model"] == str(arts["tflite"])


def test_evaluate_decodes_a_big_folder_a_chunk_at_a_time(arts, tmp_path, monkeypatch):
    """Memory is one chunk of pixels, whatever the folder's size: the same report as all at
    once, and a chunk in which nothing decodes is skipped, not the end of the run."""
    import importlib

    ev = importlib.import_module("edgecnn.runtime.evaluate")  # the package exports evaluate()

    data = tmp_path / "data"
    shutil.copytree(arts["data"], data)
    for name in ("aa_1.png", "aa_2.png", "aa_3.png"):  # sort first: one whole chunk of 3
        (data / "blue" / name).write_bytes(b"this is not a png file at all")
    clf = open_case(arts, "tflite", "tflite")
    whole = evaluate(clf, data)

    sizes = []
    real = ev.load_pixels

    def spy(dataset, *args, **kwargs):
        sizes.append(len(dataset))
        return real(dataset, *args, **kwargs)

    monkeypatch.setattr(ev, "load_pixels", spy)
    monkeypatch.setattr(ev, "CHUNK", 3)
    chunked = evaluate(clf, data)
    n = sum(1 for _ in data.rglob("*.png"))
    assert sizes == [3] * (n // 3) + ([n % 3] if n % 3 else [])
    for key in ("accuracy", "confusion_matrix", "per_class", "skipped", "count"):
        assert chunked[key] == whole[key], key
    assert len(chunked["skipped"]) == 3 and chunked["count"] == n - 3

    for png in data.rglob("*.png"):
        png.write_bytes(b"broken")
    with pytest.raises(InputError, match=f"none of the {n} image files could be decoded"):
        evaluate(clf, data)


def test_evaluate_matches_folder_names_not_folder_order(arts, tmp_path):
    """A data folder with only some classes: targets still index the model's labels."""
    data = tmp_path / "data"
    shutil.copytree(arts["data"] / "red", data / "red")
    shutil.copytree(arts["data"] / "blue", data / "blue")
    report = evaluate(open_case(arts, "onnx", "onnx"), data)
    assert report["per_class"]["green"]["support"] == 0
    assert report["per_class"]["red"]["support"] == 6
    assert report["accuracy"] >= 0.9


def test_evaluate_on_decoded_pixels(arts):
    clf = open_case(arts, "onnx_int8", "onnx")
    decoded = load_pixels(
        list_dataset(arts["data"], classes=clf.labels), clf.contract, progress=False
    )
    report = evaluate(clf, decoded)
    assert report["count"] == len(decoded.targets) and report["data"] is None
    assert report["accuracy"] == evaluate(clf, arts["data"])["accuracy"]


def test_evaluate_refuses_folders_that_are_not_labels(arts, tmp_path):
    (tmp_path / "cat").mkdir()
    shutil.copy(next((arts["data"] / "red").iterdir()), tmp_path / "cat" / "a.png")
    with pytest.raises(InputError, match=r"not among the model's labels"):
        evaluate(open_case(arts, "onnx", "onnx"), tmp_path)


def test_classification_report_numbers():
    r = classification_report([0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 0, 2], ["a", "b", "c"])
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["confusion_matrix"] == [[1, 1, 0], [1, 2, 0], [0, 0, 1]]
    assert r["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert r["per_class"]["b"]["recall"] == pytest.approx(2 / 3)
    assert r["per_class"]["a"]["f1"] == pytest.approx(0.5)
    assert r["per_class"]["c"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    never = classification_report([0, 1], [0, 0], ["a", "b"])  # 'b' never predicted: 0, not NaN
    assert never["per_class"]["b"]["precision"] == 0.0


def test_accuracy_comes_with_its_95_percent_interval():
    """Wilson's interval: 4 of 6 is 0.300 to 0.903 (the textbook value); more photos narrow it;
    all right still leaves room below 100%."""
    r = classification_report([0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 0, 2], ["a", "b", "c"])
    assert r["accuracy_interval"] == pytest.approx([0.300, 0.903], abs=5e-4)
    assert "accuracy 0.6667 on 6 images (95% interval 0.3000 to 0.9032)" in format_report(r)
    lo, hi = accuracy_interval(819, 1000)
    assert (round(lo, 3), round(hi, 3)) == (0.794, 0.842)
    lo4, hi4 = accuracy_interval(4 * 819, 4000)
    assert lo < lo4 < 0.819 < hi4 < hi
    assert (
        accuracy_interval(20, 20)[1] == pytest.approx(1.0) and accuracy_interval(20, 20)[0] < 0.85
    )
    assert accuracy_interval(0, 0) == (0.0, 1.0)


def test_confusion_png_is_written_atomically_and_readable(tmp_path):
    path = confusion_png([[5, 1], [0, 7]], ["cat", "dog"], tmp_path / "c.png", title="t")
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 100 and img.shape[1] > 100
    assert (img < 128).any() and (img == 255).any()  # text/dark cells on a white background
    assert [p.name for p in tmp_path.iterdir()] == ["c.png"]  # no temp file left behind
    with pytest.raises(InputError, match="does not exist"):
        confusion_png([[1, 0], [0, 1]], ["a", "b"], tmp_path / "nope" / "c.png")


def test_no_warnings_for_files_with_metadata(arts):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(arts["tflite_int8"])
        load(arts["onnx"], backend="opencv")


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_tflite_falls_back_to_tensorflow_lite_without_litert(arts, monkeypatch):
    import importlib.util

    from edgecnn.runtime.backends import tflite as tflite_backend

    real = importlib.util.find_spec
    hidden = {"ai_edge_litert", "tflite_runtime"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in hidden else real(name, *a)
    )
    interpreter, module = tflite_backend.find_interpreter()
    assert module.startswith("tensorflow ")
    clf = load(arts["tflite_int8"], backend="tflite", threads=1)
    assert clf.describe()["module"].startswith("tensorflow ")
    ref = open_case(arts, "tflite_int8", "tflite")
    rgb, _ = synthetic_images(3, seed=5)
    x = to_input(rgb, clf.contract)
    np.testing.assert_allclose(clf.probs(x), ref.probs(x), atol=1e-6)


@pytest.mark.parametrize("scale", [1.0, 0.37])
@pytest.mark.parametrize("artifact", ["tflite_int8", "tflite_uint8"])
def test_tflite_input_quantisation_matches_the_formula(arts, artifact, scale):
    backend = load(arts[artifact], threads=1)._backend
    q = backend._qin
    q.scale = scale
    x = np.random.default_rng(0).uniform(-80, 400, size=(1, SIZE, SIZE, 3)).astype(np.float32)
    expected = np.clip(np.rint(x / scale) + q.zero_point, q.lo, q.hi).astype(q.dtype)
    got = backend._quantise(x)
    assert got.dtype == q.dtype and np.shares_memory(got, backend._qbuf)  # no new array
    diff = np.abs(got.astype(np.int32) - expected)
    if scale == 1.0:  # integer steps: exact
        assert diff.max() == 0
    else:  # x * (1/scale) may round the other way than x / scale exactly at .5
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
