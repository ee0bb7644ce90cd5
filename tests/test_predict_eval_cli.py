"""`edgecnn predict` and `edgecnn eval` on every artifact x backend: labels from the file,
table/JSON output, confusion PNG, run directories as MODEL."""

from __future__ import annotations

import importlib
import io
import json
import os
import shutil
import stat
import sys
import threading
from pathlib import Path

import cv2
import pytest
from _runtime_fixtures import LABELS, artifacts_once

from edgecnn.cli import main

CASES = [
    ("tflite", "tflite"),
    ("tflite_int8", "tflite"),
    ("onnx", "onnx"),
    ("onnx", "opencv"),
    ("onnx_int8", "onnx"),
    ("keras", "keras"),
]
IDS = [f"{a}-{b}" for a, b in CASES]
# OpenCV on the QDQ int8 file runs or refuses by OpenCV release: its own test below.


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    return artifacts_once(tmp_path_factory)


def _images(arts) -> list[str]:
    return [str(sorted((arts["data"] / label).iterdir())[0]) for label in LABELS]


def _cli(capsys, argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("artifact", "backend"), CASES, ids=IDS)
def test_predict_json(arts, capsys, artifact, backend):
    images = _images(arts)
    code, out, err = _cli(
        capsys,
        [
            "predict",
            arts[artifact],
            *images,
            "--backend",
            backend,
            "--threads",
            "1",
            "--top-k",
            "2",
            "--json",
        ],
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["backend"] == backend and doc["labels"] == list(LABELS)
    assert [r["image"] for r in doc["results"]] == images
    assert all(len(r["predictions"]) == 2 for r in doc["results"])
    top1 = [r["predictions"][0]["label"] for r in doc["results"]]
    assert top1 == list(LABELS)  # one image of each class, in label order


def test_predict_table(arts, capsys):
    images = _images(arts)
    code, out, err = _cli(capsys, ["predict", arts["tflite_int8"], *images])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["image", "top-1", "score"]
    assert len(lines) == 1 + len(images)
    for line, label in zip(lines[1:], LABELS):
        assert line.split()[1] == label


@pytest.mark.parametrize(("artifact", "backend"), CASES, ids=IDS)
def test_eval_prints_report_and_writes_json_and_png(arts, tmp_path, capsys, artifact, backend):
    report_file = tmp_path / "report.json"
    code, out, err = _cli(
        capsys, ["eval", arts[artifact], arts["data"], "--backend", backend, "--json", report_file]
    )
    assert code == 0, err
    report = json.loads(report_file.read_text())
    assert report["backend"] == backend and report["labels"] == list(LABELS)
    assert report["accuracy"] >= 0.9 and report["count"] == 18
    assert sum(map(sum, report["confusion_matrix"])) == 18
    assert f"accuracy {report['accuracy']:.4f} on 18 images" in out
    assert "confusion matrix (rows: true, columns: predicted)" in out
    for label in LABELS:
        assert any(line.startswith(label) for line in out.splitlines())
    png = tmp_path / f"{arts[artifact].stem}_{backend}_confusion.png"
    assert report["confusion_png"] == str(png)
    assert cv2.imread(str(png)) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([png.name, "report.json"])


def test_eval_default_png_beside_the_model_and_json_to_stdout(arts, tmp_path, capsys):
    model = tmp_path / "m.onnx"
    shutil.copy(arts["onnx"], model)
    code, out, err = _cli(capsys, ["eval", model, arts["data"], "--json", "-"])
    assert code == 0, err
    report = json.loads(out)
    assert (tmp_path / "m_onnx_confusion.png").is_file()
    assert "accuracy" in err  # the human report goes to stderr when JSON takes stdout
    assert report["accuracy"] >= 0.9


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_eval_json_into_a_named_pipe_is_written_in_place(arts, tmp_path, capsys):
    """`--json /dev/stdout` or a FIFO: renaming a temp file over it would replace the node."""
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    png = tmp_path / "confusion.png"
    code, out, err = _cli(
        capsys, ["eval", arts["onnx"], arts["data"], "--json", fifo, "--confusion", png]
    )
    reader.join(timeout=60)
    assert code == 0, err
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert json.loads(received[0])["accuracy"] >= 0.9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png", "report.fifo"]


def test_eval_and_predict_accept_a_run_directory(arts, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "export").mkdir(parents=True)
    shutil.copy(arts["keras"], run / "model.keras")
    shutil.copy(arts["tflite_int8"], run / "export" / "model_int8.tflite")
    shutil.copy(arts["onnx"], run / "export" / "model.onnx")
    png = tmp_path / "cm.png"
    code, out, err = _cli(capsys, ["eval", run, arts["data"], "--confusion", png])
    assert code == 0, err
    assert f"model {run / 'export' / 'model_int8.tflite'} (backend tflite" in out
    assert png.is_file()
    code, out, err = _cli(
        capsys, ["predict", run, _images(arts)[0], "--backend", "opencv", "--json"]
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["model"] == str(run / "export" / "model.onnx") and doc["backend"] == "opencv"


def test_eval_reports_skipped_files(arts, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(arts["data"], data)
    (data / "red" / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code, out, err = _cli(capsys, ["eval", arts["onnx"], data, "--confusion", tmp_path / "c.png"])
    assert code == 0, err
    assert f"skipped {data / 'red' / 'zz_broken.jpg'}: " in out


def test_predict_a_folder_means_its_images(arts, capsys, tmp_path):
    code, out, err = _cli(capsys, ["predict", arts["onnx"], arts["data"] / "green", "--json"])
    assert code == 0, err
    results = json.loads(out)["results"]
    assert len(results) == 6
    assert all(r["predictions"][0]["label"] == "green" for r in results)
    (tmp_path / "empty").mkdir()
    code, out, err = _cli(capsys, ["predict", arts["onnx"], tmp_path / "empty"])
    assert code == 2 and "folder has no image files" in err


def test_predict_decodes_a_big_folder_a_chunk_at_a_time(arts, capsys, tmp_path, monkeypatch):
    """Memory is one chunk of pixels, whatever the folder's size: the answers are the same as
    all at once, and a bad image in a later chunk still stops the command before any output."""
    from edgecnn.commands import predict
    from edgecnn.runtime.classifier import Classifier

    folder = tmp_path / "photos"
    folder.mkdir()
    files = [p for label in LABELS for p in sorted((arts["data"] / label).iterdir())[:4]]
    for i, f in enumerate(files):
        shutil.copy(f, folder / f"{i:02d}_{f.name}")
    argv = ["predict", arts["tflite"], folder, "--json"]
    code, whole, err = _cli(capsys, argv)
    assert code == 0, err

    batches = []
    real = Classifier.probs_pixels

    def spy(self, pixels, **kw):
        batches.append(len(pixels))
        return real(self, pixels, **kw)

    monkeypatch.setattr(Classifier, "probs_pixels", spy)
    monkeypatch.setattr(predict, "CHUNK", 3)
    code, chunked, err = _cli(capsys, argv)
    assert code == 0, err
    assert batches == [3] * (len(files) // 3) + ([len(files) % 3] if len(files) % 3 else [])
    assert json.loads(chunked)["results"] == json.loads(whole)["results"]

    (folder / "zz_last.jpg").write_text("not a photo")  # sorts last: in the last chunk
    code, out, err = _cli(capsys, argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and "zz_last.jpg" in err


@pytest.mark.parametrize("command", ["predict", "eval"])
def test_opencv_on_qdq_int8_answers_or_refuses_in_one_line(arts, capsys, command):
    target = _images(arts)[0] if command == "predict" else arts["data"]
    argv = [command, arts["onnx_int8"], target, "--backend", "opencv", "--threads", "1"]
    code, out, err = _cli(capsys, argv)
    if code == 0:
        assert any(label in out for label in LABELS)
        return
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "OpenCV DNN cannot run this ONNX file" in err


def test_predict_reads_one_image_piped_to_stdin(arts, capsys, monkeypatch):
    image = _images(arts)[0]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(Path(image).read_bytes())))
    code, out, err = _cli(capsys, ["predict", arts["onnx"], "-", image, "--json"])
    assert code == 0, err
    piped, named = json.loads(out)["results"]
    assert piped["image"] == "-" and named["image"] == image
    assert piped["predictions"] == named["predictions"]


@pytest.mark.parametrize(
    ("stdin", "argv_tail", "text"),
    [
        (b"", ["-", "-"], "-: stdin holds one image; give - once"),
        (b"not an image at all", ["-"], "-: not a decodable image"),
        (b"\xff" * 65, ["-"], "-: more than the 0 MB an image file may be"),
        ("tty", ["-"], "-: stdin is a terminal; pipe an image in"),
    ],
)
def test_predict_refuses_bad_stdin_in_one_line(arts, capsys, monkeypatch, stdin, argv_tail, text):
    preprocess = importlib.import_module("edgecnn.runtime.preprocess")  # the function shadows it

    monkeypatch.setattr(preprocess, "MAX_IMAGE_BYTES", 64)
    stream = io.TextIOWrapper(io.BytesIO(b"" if stdin == "tty" else stdin))
    if stdin == "tty":
        monkeypatch.setattr(stream.buffer, "isatty", lambda: True)
    monkeypatch.setattr(sys, "stdin", stream)
    code, out, err = _cli(capsys, ["predict", arts["onnx"], *argv_tail])
    assert code == 2 and out == "" and err.count("\n") == 1 and text in err, err


def test_outputs_never_overwrite_the_model_or_a_photo(arts, capsys, tmp_path):
    """Each refused in one line with exit 2 before any work, and the input left as it was."""
    model = tmp_path / "model.tflite"
    shutil.copy(arts["tflite_int8"], model)
    photo = _images(arts)[0]
    photo_bytes = Path(photo).read_bytes()
    model_bytes = model.read_bytes()
    cases = [
        ["eval", model, arts["data"], "--confusion", model],
        ["eval", model, arts["data"], "--json", photo],
        ["profile", model, "--json", model],
        ["run", model, "--source", Path(photo).parent, "--jsonl", photo],
        ["run", model, "--source", photo, "--jsonl", model],
        ["bench", model, "--runs", "2", "--data", arts["data"], "--md", photo],
    ]
    for argv in cases:
        code, out, err = _cli(capsys, argv)
        assert code == 2 and err.count("\n") == 1, (argv, err)
        assert "writing there would destroy it" in err, (argv, err)
        assert model.read_bytes() == model_bytes and Path(photo).read_bytes() == photo_bytes


def test_an_output_folder_that_is_a_file_is_one_line(arts, capsys, tmp_path):
    """`--json notes.txt/report.json`: the folder cannot be made; exit 2, before a traceback."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    code, out, err = _cli(capsys, ["profile", arts["tflite_int8"], "--json", blocker / "r.json"])
    assert code == 2
    assert (
        err == f"edgecnn profile: error: {blocker}: a file is in the way of a folder of that name\n"
    )


@pytest.mark.parametrize("option", ["model", "--source", "--record"])
def test_a_path_that_is_not_utf8_is_one_line_before_any_library_opens_it(arts, capsys, option):
    """OpenCV's binding crashes the process on such a name, LiteRT raises a TypeError."""
    odd = os.fsdecode(b"caf\xe9/model.tflite" if option == "model" else b"caf\xe9/clip.avi")
    model = odd if option == "model" else arts["tflite_int8"]
    argv = ["run", model, "--source", odd if option == "--source" else _images(arts)[0]]
    if option == "--record":
        argv += ["--record", odd]
    code, out, err = _cli(capsys, argv)
    assert code == 2 and out == ""
    assert (
        err
        == f"edgecnn run: error: caf\\udce9/{Path(odd).name}: the name is not UTF-8 text, which the model and video libraries cannot open; rename it\n"
    )


def test_outputs_that_cannot_be_written_are_refused_before_any_work(arts, capsys, tmp_path):
    """A folder as a report, an empty name, and bench's `-` (its reports are files)."""
    cases = [
        (["eval", arts["tflite_int8"], arts["data"], "--json", tmp_path], "that is a folder"),
        (["eval", arts["tflite_int8"], arts["data"], "--confusion", ""], "--confusion is empty"),
        (["run", arts["tflite_int8"], "--source", _images(arts)[0], "--jsonl", tmp_path], "folder"),
        (["bench", arts["tflite_int8"], "--runs", "2", "--json", "-"], "--json -: bench writes"),
    ]
    for argv, expected in cases:
        code, out, err = _cli(capsys, argv)
        assert code == 2 and out == "" and err.count("\n") == 1, (argv, out, err)
        assert expected in err, (argv, err)
    assert list(tmp_path.iterdir()) == []
