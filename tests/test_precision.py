"""Every compute path a host would pick by itself, forced on every host.

`--precision auto` is float32 everywhere (bfloat16 is forced in tests/test_flip_tta.py), and
TensorFlow's oneDNN kernels, which it enables by itself only on some x86 CPUs, are run both
on and off here, so no test's outcome depends on the instruction set of the machine it runs on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from _train_fixtures import tiny_split

from edgecnn.runtime.errors import InputError
from edgecnn.training import resolve_precision


def test_auto_precision_is_float32_on_every_machine():
    assert resolve_precision("auto") == "float32"
    assert resolve_precision("float32") == "float32"
    assert resolve_precision("bfloat16") == "mixed_bfloat16"
    with pytest.raises(InputError, match="unknown precision 'float16'"):
        resolve_precision("float16")


# Trains the seed convnet for two epochs in a fresh interpreter (TensorFlow reads
# TF_ENABLE_ONEDNN_OPTS once, at import) and prints whether oneDNN ran, and the trained model's
# probabilities on the validation photos.
_TRAIN = """
import json, sys
import numpy as np
from edgecnn import train
from edgecnn.data import prepare
run = train(sys.argv[1], val_dir=sys.argv[2], out=sys.argv[3], arch="seed", img_size=32,
            epochs=2, batch=16, progress=False, seed=0)
from tensorflow.python.util import _pywrap_util_port
import keras
val = prepare(sys.argv[1], val_dir=sys.argv[2], img_size=32, progress=False).val
probs = keras.models.load_model(run.model_path).predict(val.pixels, verbose=0)
print(json.dumps({"onednn": bool(_pywrap_util_port.IsMklEnabled()), "probs": probs.tolist()}))
"""


@pytest.mark.slow
def test_training_runs_with_onednn_on_and_off_and_agrees(tmp_path):
    train_dir, val_dir = tiny_split(tmp_path / "data", train=24, val=6)
    results = {}
    for setting in ("0", "1"):
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting, "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.run(
            [sys.executable, "-c", _TRAIN, train_dir, val_dir, tmp_path / f"run{setting}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        results[setting] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results["0"]["onednn"] is False and results["1"]["onednn"] is True
    off, on = (np.array(results[s]["probs"]) for s in ("0", "1"))
    # Same seed, same data, other kernels: only the order of float32 sums differs, which two
    # epochs of SGD amplify a little, so the answers agree and the probabilities stay close.
    assert (off.argmax(1) == on.argmax(1)).mean() >= 0.9
    assert np.abs(off - on).max() < 0.1
