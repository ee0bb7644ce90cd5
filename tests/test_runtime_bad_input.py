"""Every bad input of the runtime issue: an InputError with one clear line from the API, and
from `edgecnn predict`/`edgecnn eval` exit code 2 with exactly one line on stderr."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _runtime_fixtures import LABELS, artifacts_once, contract_json

from edgecnn.cli import main
from edgecnn.runtime import ImageError, InputError, load
from edgecnn.runtime.backends import choose_backend
from edgecnn.runtime.dataset import list_dataset


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    return artifacts_once(tmp_path_factory)


def _truncate(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def _bad_model_files(arts, tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, text the error must contain)."""
    (tmp / "garbage.tflite").write_bytes(b"\x00\x01garbage" * 100)
    (tmp / "empty.onnx").write_bytes(b"")
    (tmp / "text.onnx").write_text("this is not a model\n" * 20)
    (tmp / "model.pb").write_bytes(b"whatever")
    (tmp / "noext").write_bytes(b"whatever")
    (tmp / "junk.keras").write_bytes(b"PK\x03\x04 not really a zip")
    return {
        "missing": (tmp / "nope.tflite", "no such file"),
        "wrong-extension": (tmp / "model.pb", "unknown model type '.pb'"),
        "no-extension": (tmp / "noext", "unknown model type"),
        "truncated-tflite": (_truncate(arts["tflite"], tmp / "t.tflite"), "cannot load TFLite"),
        "truncated-int8-tflite": (_truncate(arts["tflite_int8"], tmp / "t8.tflite", 0.9), "TFLite"),
        "header-only-tflite": (_truncate(arts["tflite"], tmp / "h.tflite", 0.01), "TFLite"),
        "garbage-tflite": (tmp / "garbage.tflite", "not a TFLite flatbuffer"),
        "truncated-onnx": (_truncate(arts["onnx"], tmp / "t.onnx"), "not a valid ONNX file"),
        "empty-onnx": (tmp / "empty.onnx", "not a valid ONNX file"),
        "text-onnx": (tmp / "text.onnx", "ONNX"),
        "truncated-keras": (_truncate(arts["keras"], tmp / "t.keras"), "not a .keras archive"),
        "junk-keras": (tmp / "junk.keras", "not a .keras archive"),
    }


BAD_MODELS = [
    "missing",
    "wrong-extension",
    "no-extension",
    "truncated-tflite",
    "truncated-int8-tflite",
    "header-only-tflite",
    "garbage-tflite",
    "truncated-onnx",
    "empty-onnx",
    "text-onnx",
    "truncated-keras",
    "junk-keras",
]


@pytest.mark.parametrize("case", BAD_MODELS)
def test_bad_model_file_raises_one_line(arts, tmp_path, case):
    path, text = _bad_model_files(arts, tmp_path)[case]
    backends = ["auto", "opencv"] if path.suffix == ".onnx" else ["auto"]
    for backend in backends:
        with pytest.raises(InputError) as err:
            load(path, backend=backend)
        message = str(err.value)
        assert "\n" not in message
        assert str(path) in message
        if backend == "auto":
            assert text in message


@pytest.mark.parametrize(
    ("artifact", "backend", "allowed"),
    [
        ("onnx", "tflite", "onnx, opencv"),
        ("tflite", "onnx", "tflite"),
        ("tflite", "opencv", "tflite"),
        ("tflite", "keras", "tflite"),
        ("keras", "onnx", "keras"),
        ("onnx", "keras", "onnx, opencv"),
    ],
)
def test_unsupported_backend_for_a_file(arts, artifact, backend, allowed):
    with pytest.raises(InputError, match=rf"backend '{backend}' cannot run .*use one of {allowed}"):
        load(arts[artifact], backend=backend)


def test_unknown_backend_and_bad_threads(arts):
    with pytest.raises(InputError, match="unknown backend 'tensorrt'; choose one of auto, tflite"):
        load(arts["onnx"], backend="tensorrt")
    with pytest.raises(InputError, match="unknown backend"):
        choose_backend("onnx", "gpu")
    for bad in (0, -1, 1.5, 257, 100_000):  # 100,000 LiteRT threads crash the process
        with pytest.raises(InputError, match="threads must be an integer from 1 to 256"):
            load(arts["onnx"], threads=bad)


def test_images_that_are_not_images(arts, tmp_path):
    clf = load(arts["tflite"])
    (tmp_path / "notes.jpg").write_text("a text file named like a photo\n")
    png = next((arts["data"] / "red").iterdir())
    (tmp_path / "half.png").write_bytes(png.read_bytes()[:40])
    cases = [
        (tmp_path / "notes.jpg", "not a decodable image"),
        (tmp_path / "half.png", "not a decodable image"),
        (tmp_path / "missing.png", "no such file"),
        (tmp_path, "is a directory"),
        (b"\x00" * 64, "not a decodable image"),
        (b"", "empty"),
        (np.zeros((10, 10, 2), np.uint8), "got shape (10, 10, 2)"),
        (np.zeros((0, 10, 3), np.uint8), "empty image"),
        (np.zeros((4, 4, 4, 3), np.uint8), "got shape"),
        (12345, "expected a path, bytes or an image array"),
    ]
    for image, text in cases:
        with pytest.raises(ImageError) as err:
            clf.predict(image)
        assert text in str(err.value) and "\n" not in str(err.value)


def _heic(path: Path) -> Path:
    """The start of an iPhone photo: an ISO base media `ftyp` box of brand heic (edgecnn refuses
    the file from its header, before any decoder)."""
    ftyp = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"
    path.write_bytes(ftyp + b"\x00\x00\x0f\xe8meta" + bytes(4072))
    return path


def test_heic_and_avif_photos_are_refused_with_what_to_do(arts, tmp_path):
    clf = load(arts["tflite"])
    avif = b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(512)
    cases = [
        (_heic(tmp_path / "IMG_0001.HEIC"), "HEIC/HEIF photo", "convert it to JPEG"),
        (avif, "an AVIF image", "convert it to JPEG or PNG"),  # a real one: test_hostile_files
    ]
    for image, what, todo in cases:
        with pytest.raises(ImageError) as err:
            clf.predict(image)
        assert what in str(err.value) and todo in str(err.value) and "\n" not in str(err.value)


def test_probs_refuses_input_of_the_wrong_shape(arts):
    clf = load(arts["onnx"])
    with pytest.raises(InputError, match=r"expected model input of shape \(N, 32, 32, 3\)"):
        clf.probs(np.zeros((2, 64, 64, 3), np.float32))


def _onnx_with_contract(arts, path: Path, contract: str) -> Path:
    """The product's ONNX file with its contract replaced: a mismatch the exporter never writes."""
    import onnx

    proto = onnx.load(str(arts["onnx"]))
    for entry in proto.metadata_props:
        if entry.key == "edgecnn":
            entry.value = contract
    onnx.save(proto, str(path))
    return path


def test_metadata_that_does_not_fit_the_graph(arts, tmp_path):
    wrong_size = _onnx_with_contract(arts, tmp_path / "size.onnx", contract_json(size=64))
    with pytest.raises(InputError, match="metadata says input 64x64 but the model takes 32x32"):
        load(wrong_size)
    four = _onnx_with_contract(arts, tmp_path / "labels.onnx", contract_json(labels=(*LABELS, "x")))
    with pytest.raises(InputError, match="lists 4 labels but the model has 3 outputs"):
        load(four)
    broken = _onnx_with_contract(arts, tmp_path / "json.onnx", "{not json")
    with pytest.raises(InputError, match="contract is not valid JSON"):
        load(broken)


def test_tflite_with_a_corrupt_appended_contract(arts, tmp_path):
    # deliberately not the exporter's layout: an incomplete contract in a hand-made zip
    data = arts["tflite_bare"].read_bytes()
    path = tmp_path / "m.tflite"
    with zipfile.ZipFile(path.with_suffix(".zip"), "w") as zf:
        zf.writestr("edgecnn.json", '{"labels": ["only_one"], "height": 32, "width": 32}')
    path.write_bytes(data + path.with_suffix(".zip").read_bytes())
    with pytest.raises(InputError, match="at least 2 labels"):
        load(path)


# --- the command line: exit 2, one line ------------------------------------------------------


def _cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", BAD_MODELS)
@pytest.mark.parametrize("command", ["predict", "eval"])
def test_cli_bad_model_exits_2_with_one_line(arts, tmp_path, capsys, case, command):
    path, text = _bad_model_files(arts, tmp_path)[case]
    image = next((arts["data"] / "red").iterdir())
    target = str(image) if command == "predict" else str(arts["data"])
    code, out, err = _cli(capsys, [command, str(path), target])
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"edgecnn {command}: error: ")
    assert text in err


@pytest.mark.parametrize(
    ("argv_tail", "text"),
    [
        (["IMAGE_NOT_IMAGE"], "not a decodable image"),
        (["IMAGE_MISSING"], "no such file"),
        (["IMAGE_HEIC"], "a HEIC/HEIF photo (the iPhone camera's default format)"),
        (["--backend", "tflite", "--", "ONNX"], "cannot run .onnx files"),
        (["--top-k", "0"], "--top-k must be at least 1"),
        (["--threads", "0"], "threads must be an integer from 1 to 256, got 0"),
        (["--threads", "100000"], "threads must be an integer from 1 to 256, got 100000"),
    ],
)
def test_cli_predict_bad_input(arts, tmp_path, capsys, argv_tail, text):
    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello, I am text\n" * 5)
    good = next((arts["data"] / "red").iterdir())
    sub = {
        "IMAGE_NOT_IMAGE": str(bad),
        "IMAGE_MISSING": str(tmp_path / "nope.jpg"),
        "IMAGE_HEIC": str(_heic(tmp_path / "IMG_0001.HEIC")),
        "ONNX": str(good),
    }
    tail = [sub.get(a, a) for a in argv_tail]
    if "--" in tail:  # unsupported backend: the MODEL is the .onnx file
        i = tail.index("--")
        argv = ["predict", str(arts["onnx"]), *tail[:i], tail[i + 1]]
    else:  # the bad image or option comes after a good image
        argv = ["predict", str(arts["tflite"]), str(good), *tail]
    code, out, err = _cli(capsys, argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and text in err


def test_cli_eval_bad_data_dirs(arts, tmp_path, capsys):
    (tmp_path / "one" / "red").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    cases = [
        (tmp_path / "missing", "no such folder"),
        (tmp_path / "empty", "no class folders; expected a sub-folder of images for each"),
        (arts["tflite"], "is a file"),
        (tmp_path / "one", "has no image files"),
        (arts["data"] / "red", "holds images but no class folders named after the labels"),
    ]
    for data, text in cases:
        code, out, err = _cli(capsys, ["eval", str(arts["onnx"]), str(data)])
        assert code == 2 and out == "" and err.count("\n") == 1 and text in err, err


def test_an_empty_folder_names_the_class_folders_it_expected(tmp_path):
    with pytest.raises(InputError, match=r"each of the 5 classes \(a/, b/, c/, \.\.\.\)$"):
        list_dataset(tmp_path, classes=("a", "b", "c", "d", "e"))
    with pytest.raises(InputError, match=r"each of the 2 classes \(a/, b/\)$"):
        list_dataset(tmp_path, classes=("a", "b"))


def test_cli_without_metadata_warns_in_one_line_and_works(arts, capsys):
    image = next((arts["data"] / "red").iterdir())
    code, out, err = _cli(capsys, ["predict", str(arts["onnx_bare"]), str(image), "--top-k", "1"])
    assert code == 0
    assert err.count("\n") == 1 and err.startswith("edgecnn predict: warning: ")
    assert "class_0..class_2" in err
    assert "class_" in out


@pytest.mark.parametrize("artifact", ["tflite_int8", "onnx"])
def test_cli_error_is_one_line_at_the_process_level(arts, tmp_path, artifact):
    """In a real process, native libraries' own stderr chatter must not add lines either."""
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + b"\x00" * 100)
    good = next((arts["data"] / "red").iterdir())
    proc = subprocess.run(
        [sys.executable, "-m", "edgecnn", "predict", str(arts[artifact]), str(good), str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"edgecnn predict: error: {bad}: not a decodable image (corrupt, truncated or another format)"
    ]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a full disk)")
@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_a_full_disk_under_stdout_is_one_line(arts, extra):
    """`> /dev/full`, as a full SD card behaves: one line and exit 2, not two tracebacks."""
    good = next((arts["data"] / "red").iterdir())
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "edgecnn", "predict", str(arts["tflite"]), str(good), *extra],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "edgecnn predict: error: cannot write the output: No space left on device"
    ]
