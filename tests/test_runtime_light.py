"""The runtime stays light: importing edgecnn.runtime and predicting with a .tflite or .onnx
file (API and CLI) never imports TensorFlow, Keras, tf2onnx or onnx.  Checked in fresh
interpreters, since this test process itself has TensorFlow loaded by the fixtures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from _runtime_fixtures import artifacts_once

HEAVY = ("tensorflow", "keras", "tf2onnx", "onnx", "tf_keras", "jax", "torch")

PROBE = """
import json, sys
HEAVY = {heavy!r}
def heavy():
    return sorted({{m.split(".")[0] for m in sys.modules if m.split(".")[0] in HEAVY}})
import edgecnn
import edgecnn.runtime
after_import = heavy()
{body}
print(json.dumps({{"after_import": after_import, "after_predict": heavy(), "result": result}}))
"""


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    return artifacts_once(tmp_path_factory)


def _probe(body: str) -> dict:
    code = PROBE.format(heavy=HEAVY, body=body)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("artifact", "backend"),
    [
        ("tflite", "auto"),
        ("tflite_int8", "tflite"),
        ("onnx", "auto"),
        ("onnx", "opencv"),
        ("onnx_int8", "onnx"),
        ("onnx_bare", "onnx"),
    ],
)
def test_predict_with_runtime_files_imports_no_tensorflow(arts, artifact, backend):
    image = next((arts["data"] / "red").iterdir())
    body = f"""
import warnings
warnings.simplefilter("ignore")
import numpy as np
from edgecnn.runtime import load, evaluate
clf = load({str(arts[artifact])!r}, backend={backend!r}, threads=1)
pred = clf.predict({str(image)!r}, top_k=1)
clf.predict(np.zeros((480, 640, 3), np.uint8))
acc = evaluate(clf, {str(arts["data"])!r})["accuracy"]
result = [clf.backend, pred[0][0], acc]
"""
    out = _probe(body)
    assert out["after_import"] == []
    assert out["after_predict"] == [], f"heavy modules imported: {out['after_predict']}"
    assert out["result"][0] == (backend if backend != "auto" else artifact)
    if "bare" not in artifact:
        assert out["result"][1] == "red"


@pytest.mark.parametrize("command", ["predict", "eval"])
def test_cli_on_runtime_files_imports_no_tensorflow(arts, tmp_path, command):
    image = next((arts["data"] / "red").iterdir())
    target = str(image) if command == "predict" else str(arts["data"])
    extra = ["--confusion", str(tmp_path / "c.png")] if command == "eval" else []
    body = f"""
import contextlib, io
from edgecnn.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    codes = [main([{command!r}, {str(arts["tflite_int8"])!r}, {target!r}, *{extra!r}]),
             main([{command!r}, {str(arts["onnx"])!r}, {target!r}, *{extra!r}])]
result = codes
"""
    out = _probe(body)
    assert out["result"] == [0, 0]
    assert out["after_predict"] == [], f"heavy modules imported: {out['after_predict']}"


def test_keras_backend_is_the_one_that_imports_tensorflow(arts):
    body = f"""
from edgecnn.runtime import load
clf = load({str(arts["keras"])!r}, threads=1)
result = clf.backend
"""
    out = _probe(body)
    assert out["after_import"] == []
    assert "keras" in out["after_predict"]


def test_the_command_line_module_imports_nothing_heavy():
    """Ctrl-C during start-up is one line only if `main` is already running when the heavy
    imports happen: importing `edgecnn.cli` itself must not import the runtime (cv2, numpy)."""
    code = "import sys, edgecnn.cli; print(sorted(m for m in ('cv2', 'numpy', 'edgecnn.runtime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_ctrl_c_while_a_command_module_is_imported_is_one_line(monkeypatch, capsys):
    from edgecnn import cli

    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_command_module", interrupted)
    assert cli.main(["predict", "model.tflite", "photo.jpg"]) == 130
    assert capsys.readouterr().err == "edgecnn: interrupted\n"


def test_an_unknown_option_is_named_with_its_command(capsys):
    from edgecnn import cli

    assert cli.main(["eval", "--bogus", "model.tflite", "photos"]) == 2
    assert capsys.readouterr().err == "edgecnn eval: error: unrecognized arguments: --bogus\n"
