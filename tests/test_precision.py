"""Every compute path a host would pick by itself, forced on every host.

`--precision auto` is float32 everywhere (bfloat16 is forced in tests/test_flip_tta.py), and
TensorFlow's oneDNN kernels, which it enables by itself only on some x86 CPUs, are run on, off
and held to the AVX2 kernels an AVX2-only CPU gets (`ONEDNN_MAX_CPU_ISA=AVX2`), so no test's
outcome depends on the instruction set of the machine it runs on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from _train_fixtures import tiny_split

from edgecnn import training
from edgecnn.runtime.errors import InputError
from edgecnn.training import prefer_onednn, resolve_precision


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
            epochs=2, batch=16, progress=False, seed=0, precision=sys.argv[4])
from tensorflow.python.util import _pywrap_util_port
import keras
val = prepare(sys.argv[1], val_dir=sys.argv[2], img_size=32, progress=False).val
probs = keras.models.load_model(run.model_path).predict(val.pixels, verbose=0)
print(json.dumps({"onednn": bool(_pywrap_util_port.IsMklEnabled()), "probs": probs.tolist()}))
"""


def _train_in_new_process(tmp_path, name, precision="float32", **env):
    """The `_TRAIN` script's result, and what oneDNN printed about itself on stdout."""
    train_dir, val_dir = tiny_split(tmp_path / "data", train=24, val=6)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    proc = subprocess.run(
        [sys.executable, "-c", _TRAIN, train_dir, val_dir, tmp_path / name, precision],
        capture_output=True,
        text=True,
        env={k: v for k, v in env.items() if v is not None},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-1]), lines[:-1]


@pytest.mark.slow
def test_training_runs_with_onednn_on_off_and_held_to_avx2_and_agrees(tmp_path):
    off, _ = _train_in_new_process(tmp_path, "off", TF_ENABLE_ONEDNN_OPTS="0")
    on, _ = _train_in_new_process(tmp_path, "on", TF_ENABLE_ONEDNN_OPTS="1")
    # oneDNN's AVX2 kernels, which a CPU without AVX-512 runs, whatever this host has; its
    # start-up line names the instruction set it took
    avx2, log = _train_in_new_process(
        tmp_path,
        "avx2",
        TF_ENABLE_ONEDNN_OPTS="1",
        ONEDNN_MAX_CPU_ISA="AVX2",
        ONEDNN_VERBOSE="profile_create",
    )
    assert off["onednn"] is False and on["onednn"] is True and avx2["onednn"] is True
    isa = [line for line in log if ",info,cpu,isa:" in line]
    assert isa and isa[0].endswith("isa:Intel AVX2"), isa
    reference = np.array(off["probs"])
    for result in (on, avx2):
        # Same seed, same data, other kernels: only the order of float32 sums differs, which
        # two epochs of SGD amplify a little, so the answers agree and the probabilities stay
        # close.
        probs = np.array(result["probs"])
        assert (probs.argmax(1) == reference.argmax(1)).mean() >= 0.9
        assert np.abs(probs - reference).max() < 0.1


@pytest.mark.slow
def test_bfloat16_trains_where_onednn_is_held_below_avx512(tmp_path):
    """oneDNN has no bfloat16 kernels below AVX-512, yet TensorFlow hands it bfloat16 ops on
    any CPU that has AVX-512, capped or not: `train` then runs them on Eigen's kernels, as
    TensorFlow itself does on an AVX2-only CPU (it used to abort in the first step)."""
    result, _ = _train_in_new_process(
        tmp_path, "bf16", "bfloat16", ONEDNN_MAX_CPU_ISA="AVX2", TF_ENABLE_ONEDNN_OPTS=None
    )
    assert result["onednn"] is False
    probs = np.array(result["probs"])
    assert np.isfinite(probs).all() and np.allclose(probs.sum(1), 1, atol=1e-3)
    info = json.loads((tmp_path / "bf16" / "edgecnn.json").read_text())["info"]
    assert info["training_precision"] == "mixed_bfloat16"


@pytest.fixture
def x86(monkeypatch):
    """A clean slate for `prefer_onednn` on an x86 machine, TensorFlow not yet running."""
    for name in ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(training.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(training, "_onednn_in_process", lambda: None)
    return monkeypatch


@pytest.mark.parametrize(
    ("cap", "precision", "expected"),
    [
        (None, "float32", "1"),
        (None, "mixed_bfloat16", "1"),
        ("AVX2", "float32", "1"),
        ("AVX2", "mixed_bfloat16", "0"),
        ("avx2_vnni", "mixed_bfloat16", "0"),
        ("AVX512_CORE", "mixed_bfloat16", "1"),
    ],
)
def test_onednn_is_preferred_unless_it_cannot_compute_the_precision(x86, cap, precision, expected):
    if cap:
        x86.setenv("ONEDNN_MAX_CPU_ISA", cap)
    prefer_onednn(precision)
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == expected


def test_the_old_name_of_the_cap_counts_and_the_environment_wins(x86):
    x86.setenv("DNNL_MAX_CPU_ISA", "AVX")
    prefer_onednn("mixed_bfloat16")
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"
    x86.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    with pytest.raises(InputError, match=r"held to AVX \(DNNL_MAX_CPU_ISA\).*unset DNNL_MAX"):
        prefer_onednn("mixed_bfloat16")
    x86.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    x86.delenv("DNNL_MAX_CPU_ISA")
    prefer_onednn("float32")
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"


def test_arm_keeps_tensorflows_own_default(x86):
    x86.setattr(training.platform, "machine", lambda: "aarch64")
    prefer_onednn("float32")
    assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ


def test_bfloat16_that_onednn_would_refuse_is_refused_in_one_line(x86):
    x86.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    x86.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    with pytest.raises(InputError, match=r"held to AVX2 \(ONEDNN_MAX_CPU_ISA\)") as e:
        prefer_onednn("mixed_bfloat16")
    assert "\n" not in str(e.value)
    # oneDNN already on in this process (TensorFlow imported first): too late to switch
    x86.delenv("TF_ENABLE_ONEDNN_OPTS")
    x86.setattr(training, "_onednn_in_process", lambda: True)
    with pytest.raises(InputError, match="TF_ENABLE_ONEDNN_OPTS=0"):
        prefer_onednn("mixed_bfloat16")


def test_tensorflow_imported_first_without_onednn_is_warned_about_once(x86):
    x86.setattr(training, "_onednn_in_process", lambda: False)
    x86.setenv("TF_ENABLE_ONEDNN_OPTS", "0")  # the user's own choice: nothing to say
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prefer_onednn("float32")
    x86.delenv("TF_ENABLE_ONEDNN_OPTS")
    with pytest.warns(training.OneDNNOffWarning, match="TF_ENABLE_ONEDNN_OPTS=1 before importing"):
        prefer_onednn("float32")
    with warnings.catch_warnings():  # the variable is set now: said once per process
        warnings.simplefilter("error")
        prefer_onednn("float32")


# TensorFlow started without oneDNN, then the variable gone, as in a script that imports Keras
# before calling `train`: what edgecnn sees and says, on any host.
_IMPORTED_FIRST = """
import os, platform
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
import tensorflow
del os.environ["TF_ENABLE_ONEDNN_OPTS"]
from edgecnn import training
platform.machine = lambda: "x86_64"
print(training._onednn_in_process() is False, training._onednn_in_process() is True)
training.prefer_onednn("float32")
"""


def test_a_script_that_imports_tensorflow_first_is_warned_that_onednn_is_off():
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORTED_FIRST],
        capture_output=True,
        text=True,
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True", "False"]
    notes = [line for line in proc.stderr.splitlines() if "OneDNNOffWarning" in line]
    assert len(notes) == 1 and "without its oneDNN kernels" in notes[0]
