"""`--weights imagenet`: Keras' own ImageNet file, from Keras' cache, and never the network here.

The "ImageNet" file is made here: a backbone built by `keras.applications` with `weights=None`
(another seed), saved in Keras' legacy `.h5` layout under the exact name Keras' loader looks
for, in a temporary `KERAS_HOME/models/`.  Its md5 is not Keras' published one, so the tests
that use it put its own md5 in edgecnn's table of hashes.  Every test runs with Python's
sockets refusing to connect (and the subprocess with an unreachable proxy).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from _train_fixtures import tiny_split, train_refuses

from edgecnn import imagenet, transfer
from edgecnn.models import BACKBONES, build_model
from edgecnn.runtime.errors import InputError

SIZE = 32
ARCH = "mobilenetv3small"


def _refuse_network(mp: pytest.MonkeyPatch) -> None:
    """Any attempt to reach the network fails at once, as it does on an offline machine."""

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable (disabled in tests)")

    mp.setattr(socket, "create_connection", refuse)
    mp.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    _refuse_network(monkeypatch)


@pytest.fixture
def keras_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "keras-home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


def _backbone(arch: str, seed: int = 7):
    import keras

    spec = BACKBONES[arch]
    keras.utils.set_random_seed(seed)
    options = {"include_preprocessing": True} if spec.own_scaling else {}
    return getattr(keras.applications, spec.application)(
        input_shape=(SIZE, SIZE, 3),
        alpha=spec.alpha,
        include_top=False,
        weights=None,
        pooling="avg",
        **options,
    )


def _place_imagenet_file(home: Path, arch: str, monkeypatch) -> tuple[Path, list[np.ndarray]]:
    """Write a backbone's weights where Keras keeps `arch`'s ImageNet file, in the legacy h5
    layout of Keras' published files, and make its md5 the expected one."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    spec = BACKBONES[arch].imagenet_file(SIZE)
    model = _backbone(arch)
    path = home / "models" / spec.name
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    if spec.file_hash is not None:
        kind = BACKBONES[arch].application.removeprefix("MobileNetV3").lower()
        monkeypatch.setitem(imagenet._V3_HASHES, (kind, BACKBONES[arch].alpha), md5)
    return path, model.get_weights()


@pytest.mark.parametrize(
    ("arch", "size"),
    [*((arch, 128) for arch in BACKBONES), ("mobilenetv2", 96), ("mobilenetv2-0.35", 32)],
)
def test_file_name_url_and_hash_are_keras_own(arch, size, monkeypatch):
    """What `keras.applications.X(weights="imagenet", include_top=False)` asks get_file for."""
    import keras
    from keras.src.utils import file_utils

    asked = {}

    class Asked(Exception):
        pass

    def get_file(fname, origin, **kwargs):
        asked.update(fname=fname, origin=origin, file_hash=kwargs.get("file_hash"))
        raise Asked

    monkeypatch.setattr(file_utils, "get_file", get_file)
    spec = BACKBONES[arch]
    options = {"include_preprocessing": True} if spec.own_scaling else {}
    with pytest.raises(Asked), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns that sizes without a file get 224's
        getattr(keras.applications, spec.application)(
            input_shape=(size, size, 3),
            alpha=spec.alpha,
            include_top=False,
            weights="imagenet",
            pooling="avg",
            **options,
        )
    ours = spec.imagenet_file(size)
    assert (ours.name, ours.url, ours.file_hash) == (
        asked["fname"],
        asked["origin"],
        asked["file_hash"],
    )


@pytest.mark.parametrize("arch", ["mobilenetv3small", "mobilenetv2-0.35"])
def test_cached_file_loads_without_network(arch, keras_home, monkeypatch):
    _, expected = _place_imagenet_file(keras_home, arch, monkeypatch)
    model = build_model(arch, 3, SIZE, weights="imagenet")
    got = transfer.backbone(model).get_weights()
    assert len(got) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    # and the model still takes raw 0..255 pixels: the scaling is inside
    assert model.input_shape == (None, SIZE, SIZE, 3)


@pytest.fixture(scope="module")
def imagenet_run(tmp_path_factory):
    """`edgecnn train DATA --arch mobilenetv3small --weights imagenet --epochs 2`, offline, with
    the file in a fresh Keras cache; returns (exit code, stderr, run folder, file, its weights)."""
    from edgecnn.cli import main

    tmp = tmp_path_factory.mktemp("imagenet")
    train_dir, val_dir = tiny_split(tmp / "data", classes=2, train=12, val=4)
    out = tmp / "run"
    argv = ["train", str(train_dir), "--val-dir", str(val_dir), "--arch", ARCH, "--weights"]
    argv += ["imagenet", "--img-size", str(SIZE), "--epochs", "2", "--batch", "8"]
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(err):
        _refuse_network(mp)
        home = tmp / "keras-home"
        mp.setenv("KERAS_HOME", str(home))
        path, expected = _place_imagenet_file(home, ARCH, mp)
        code = main([*argv, "--out", str(out), "--quiet"])
    return code, err.getvalue(), out, path, expected


def test_train_cli_offline_with_the_file_in_the_cache(imagenet_run):
    import keras

    from edgecnn.runtime.metadata import read_contract

    code, stderr, out, path, expected = imagenet_run
    assert code == 0, stderr
    model = keras.models.load_model(out / "model.keras", compile=False)
    net = transfer.backbone(model)
    names = [w.path for w in net.weights]
    got = dict(zip(names, net.get_weights()))
    file_weights = dict(zip(names, expected))
    # BatchNorm statistics never train (frozen, then kept frozen while fine-tuning): they are
    # still exactly the file's, so the file is what the backbone started from
    stats = [n for n in names if "moving_" in n]
    assert stats and all(np.array_equal(got[n], file_weights[n]) for n in stats)
    contract = read_contract(out / "model.keras")
    # the kept epoch: the frozen one has every weight of the file, a fine-tuned one has moved
    same = [np.array_equal(got[n], file_weights[n]) for n in names]
    assert all(same) if contract.info["best_epoch"] == 1 else not all(same)
    assert contract.info["weights"] == "imagenet" and contract.info["weights_file"] == path.name
    assert path.is_file()  # the cache is left as it was


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mobilenetv3small", "mobilenetv2-0.35"])
def test_every_backbone_converts_to_full_integer_int8(arch):
    """Every op of the offered backbones (raw-pixel input, its scaling, hard-swish and
    squeeze-and-excite in V3, ReLU6 in V2) has an int8 TFLite kernel: the converter, held to
    int8 builtins only, converts the model edgecnn builds.  (The other two are the same ops at
    other widths.)  What accuracy real ImageNet features
    keep through int8 is `edgecnn export`'s gate to check, on the user's photos."""
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.export import _tflite
    from edgecnn.runtime.contract import Contract

    model = build_model(arch, 3, SIZE)
    calib = np.random.default_rng(0).integers(0, 256, (8, SIZE, SIZE, 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        flatbuffer = _tflite.convert(
            model, Contract.default(3, SIZE, SIZE), "tflite-int8", calib_inputs=calib
        )  # what `edgecnn export` runs: int8 builtins only, uint8 raw-pixel input
    interpreter = Interpreter(model_content=flatbuffer)
    tensors = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    float_inputs = [
        op["op_name"] for op in ops if any(tensors[i] == np.float32 for i in op["inputs"] if i >= 0)
    ]
    assert float_inputs == []
    names = {op["op_name"] for op in ops}
    if BACKBONES[arch].application.startswith("MobileNetV3"):
        assert {"HARD_SWISH", "MUL", "MEAN"} <= names  # hard-swish, squeeze-and-excite


def test_offline_without_the_file_is_one_line_naming_it(tmp_path):
    """A fresh process with an unreachable proxy: exit 2, one line, nothing decoded or written."""
    train_dir, _ = tiny_split(tmp_path / "data", classes=2, train=4, val=2)
    home = tmp_path / "keras-home"
    unreachable = "http://127.0.0.1:9"
    env = {**os.environ, "KERAS_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2", "NO_PROXY": ""}
    env.update(HTTPS_PROXY=unreachable, https_proxy=unreachable, no_proxy="")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "edgecnn", "train", str(train_dir), "--arch", ARCH]
    cmd += ["--weights", "imagenet", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    spec = BACKBONES[ARCH].imagenet_file(128)
    folder = home / "models"
    assert len(lines) == 1, lines
    assert spec.name in lines[0] and f"put it in {folder} " in lines[0] and spec.url in lines[0]
    assert not out.exists() and not (folder / spec.name).exists()


def test_a_cached_file_that_does_not_match_keras_hash(keras_home):
    spec = BACKBONES[ARCH].imagenet_file(SIZE)
    (keras_home / "models").mkdir(parents=True)
    (keras_home / "models" / spec.name).write_bytes(b"half a download")
    with pytest.raises(InputError) as caught:
        build_model(ARCH, 2, SIZE, weights="imagenet")
    message = str(caught.value)
    assert "did not match Keras' md5" in message and spec.url in message
    assert "network is unreachable" in message and "\n" not in message


def test_imagenet_needs_a_keras_applications_backbone(tmp_path, capsys):
    train_dir, _ = tiny_split(tmp_path / "data", classes=2, train=4, val=2)
    argv = ["--arch", "edge", "--weights", "imagenet"]
    train_refuses(capsys, train_dir, tmp_path / "run", argv, "edge has no ImageNet weights")


def test_cache_folder_follows_keras_home_when_called(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert imagenet.cache_folder() == tmp_path / "models"
    monkeypatch.delenv("KERAS_HOME")
    home = Path("~").expanduser()
    if os.access(home, os.W_OK):
        assert imagenet.cache_folder(imagenet.cache_home()) in (
            home / ".keras" / "models",
            Path("/tmp/.keras/models"),  # ~/.keras not created yet: Keras' own fallback
        )
