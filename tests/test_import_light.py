"""`import edgecnn` (and the runtime, the CLI parser, the training modules) stay free of TensorFlow.

Checked in a fresh interpreter, since this test process may already have imported TF.
"""

from __future__ import annotations

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
