"""`import edgecnn` (and the runtime, the CLI parser, the training modules) stay free of TensorFlow.

Checked in a fresh interpreter, since this test process may already have imported TF.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "keras", "tf2onnx", "onnx", "tf_keras")

_PROBE = """
import sys
{imports}
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print(",".join(heavy))
"""


@pytest.mark.parametrize(
    "imports",
    [
        "import edgecnn",
        "import edgecnn.runtime",
        "from edgecnn.runtime import dataset, metadata, preprocess",
        "import edgecnn.cli; edgecnn.cli.build_parser()",
        "import edgecnn.synthetic, edgecnn.models, edgecnn.data",
        "from edgecnn.training import Run, TrainingInterrupted",
    ],
)
def test_import_does_not_pull_in_tensorflow(imports):
    code = _PROBE.format(imports=imports, heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"{imports!r} imported {proc.stdout.strip()}"


_ONEDNN_PROBE = """
import os
import edgecnn.training
assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ or os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0", \
    "importing edgecnn.training changed the environment"
edgecnn.training.prefer_onednn()  # what train() does first, before it imports TensorFlow
from tensorflow.python.util import _pywrap_util_port
print(_pywrap_util_port.IsMklEnabled())
"""


@pytest.mark.parametrize(("setting", "enabled"), [(None, "True"), ("0", "False")])
def test_training_runs_tensorflow_with_onednn_unless_the_environment_says_otherwise(
    setting, enabled
):
    pytest.importorskip("tensorflow")
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("edgecnn.training turns oneDNN on for x86 CPUs only")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    proc = subprocess.run(
        [sys.executable, "-c", _ONEDNN_PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == enabled
