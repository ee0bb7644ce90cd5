"""Flip test-time augmentation baked into the saved `edge` model, through export and the runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _train_fixtures import FAST, tiny_split

from edgecnn import train
from edgecnn.runtime.errors import InputError


def _train_tta(root, precision: str, strategy: str = "default"):
    train_dir, val_dir = tiny_split(root / "data", train=24, val=6)
    # with 12 photos a class and 2 epochs the net's probabilities sat near a tie, and int8
    # rounding flipped one of the 18 check photos: 6 epochs on 24 give it real margins
    options = {**FAST, "arch": "edge", "epochs": 6, "precision": precision, "strategy": strategy}
    return train(train_dir, val_dir=val_dir, out=root / "run", **options)


@pytest.fixture(scope="module")
def tta_run(tmp_path_factory):
    return _train_tta(tmp_path_factory.mktemp("tta"), "float32")


@pytest.fixture(scope="module")
def tta_run_bf16(tmp_path_factory):
    """The same run in mixed bfloat16, forced: CPUs without bf16 units emulate it (slower, same
    numerics), so the path a bf16 CPU would take is exercised on every machine."""
    try:
        return _train_tta(tmp_path_factory.mktemp("tta_bf16"), "bfloat16")
    except InputError as e:
        if "no bfloat16 kernels" not in str(e):
            raise
        # Only when the suite itself runs with oneDNN held below AVX-512: TensorFlow is already
        # running oneDNN in this process, which cannot compute bfloat16 there.
        pytest.skip(f"{e} (tests/test_precision.py trains it so in a new process)")


@pytest.fixture(scope="module")
def tta_run_mirrored(tmp_path_factory):
    """The float32 run under `--strategy mirrored` (one replica on the CPU): Keras fits the
    distributed model, and the kept epoch must still be chosen on the saved two-view model."""
    return _train_tta(tmp_path_factory.mktemp("tta_mirrored"), "float32", "mirrored")


RUNS = pytest.mark.parametrize("run_name", ["tta_run", "tta_run_bf16"], ids=["float32", "bfloat16"])


def test_edge_saves_the_average_over_the_photo_centre_and_its_mirror(tta_run):
    import keras
    import tensorflow as tf

    from edgecnn.models import TTA_CROP

    model = keras.models.load_model(tta_run.model_path)
    inner = model.get_layer("edge")  # the trained net, called on both views
    x = np.random.default_rng(0).uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)
    trim = round(32 * (1 - TTA_CROP) / 2)
    assert trim == 2  # 32 px: the centre 28x28, scaled back to 32x32
    centre = tf.image.resize(x[:, trim:-trim, trim:-trim], (32, 32), method="bilinear").numpy()
    expected = (inner(centre).numpy() + inner(centre[:, :, ::-1]).numpy()) / 2
    np.testing.assert_allclose(model(x).numpy(), expected, atol=1e-6)
    # a mirrored photo gets the same answer: the average is symmetric by construction
    np.testing.assert_allclose(model(x[:, :, ::-1]).numpy(), model(x).numpy(), atol=1e-5)
    assert json.loads((tta_run.path / "edgecnn.json").read_text())["info"]["flip_tta"] is True


@pytest.mark.parametrize(
    "run_name",
    ["tta_run", "tta_run_bf16", "tta_run_mirrored"],
    ids=["float32", "bfloat16", "mirrored"],
)
def test_the_kept_epoch_is_chosen_on_the_saved_two_view_model(request, run_name):
    """Validation scores what `model.keras` ships, the two views, not the bare net, under every
    strategy and precision: the best epoch's logged val_loss / val_accuracy are the saved
    float32 model's on the validation photos (up to summation order)."""
    import keras

    tta_run = request.getfixturevalue(run_name)
    from edgecnn.data import prepare

    info = json.loads((tta_run.path / "edgecnn.json").read_text())["info"]
    val = prepare(info["data_dir"], val_dir=info["val_dir"], img_size=32, progress=False).val
    model = keras.models.load_model(tta_run.model_path)

    def loss(net):
        probs = net.predict(val.pixels, verbose=0)
        picked = probs[np.arange(len(val.targets)), val.targets]
        return -np.mean(np.log(np.clip(picked, 1e-7, 1))), np.argmax(probs, axis=1)

    saved_loss, predicted = loss(model)
    best = tta_run.history[info["best_epoch"] - 1]
    assert best["val_accuracy"] == pytest.approx(np.mean(predicted == val.targets), abs=1e-6)
    assert best["val_accuracy"] == pytest.approx(tta_run.metrics["val_accuracy"], abs=1e-6)
    assert best["val_loss"] == pytest.approx(saved_loss, rel=1e-4)
    assert tta_run.metrics["strategy"] == {"tta_run_mirrored": "mirrored"}.get(run_name, "default")
    # the bare net's loss differs, so the test can tell which of the two was logged
    assert abs(loss(model.get_layer("edge"))[0] - saved_loss) > 1e-3


def _export(run):
    from edgecnn.export import export

    return export(run.path, formats=["tflite-int8", "onnx"], progress=False)


@pytest.fixture(scope="module")
def tta_manifest(tta_run):
    return _export(tta_run)


@RUNS
def test_flip_tta_model_exports_to_int8_with_no_float_op_and_passes_verification(request, run_name):
    from edgecnn.export._verify import QUANTIZED_GATE
    from edgecnn.runtime import load

    tta_run = request.getfixturevalue(run_name)
    manifest = (
        request.getfixturevalue("tta_manifest") if run_name == "tta_run" else _export(tta_run)
    )
    info = json.loads((tta_run.path / "edgecnn.json").read_text())["info"]
    assert (
        info["training_precision"]
        == {"tta_run": "float32", "tta_run_bf16": "mixed_bfloat16"}[run_name]
    )
    # export refuses a file with a float op or below the agreement thresholds (exit 1)
    for fmt, entry in manifest["artifacts"].items():
        assert (tta_run.path / "export" / entry["file"]).is_file(), fmt
        assert entry["parity"]["agreement"] >= 0.9, (fmt, entry["parity"])
    int8 = load(tta_run.path / "export" / "model_int8.tflite")
    x = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    p, p_mirror = int8.probs_pixels(x), int8.probs_pixels(x[:, :, ::-1].copy())
    # The float model answers a mirrored photo exactly as the photo (test above).  The int8
    # file does not have to: the converter calibrates the two views' branches separately, each
    # with its own scales, so mirroring sends each view through the other branch's rounding,
    # and how that rounding falls depends on the trained weights (so on the CPU that trained
    # them).  What must hold is what the export gate holds a file to: both answers within its
    # |Δp| bound of the float model's, and the same top-1 wherever the float margin exceeds
    # the two errors together.
    float_p = load(tta_run.model_path).probs(x.astype(np.float32))
    err = np.abs(np.stack([p, p_mirror]) - float_p).max(axis=(0, 2))
    assert err.max() <= QUANTIZED_GATE.max_diff, err
    ranked = np.sort(float_p, axis=1)
    clear = ranked[:, -1] - ranked[:, -2] > 2 * err
    assert (p.argmax(1) == p_mirror.argmax(1))[clear].all()


def test_no_flip_tta_saves_the_plain_model(tmp_path):
    import keras

    train_dir, val_dir = tiny_split(tmp_path / "data", classes=2, train=8, val=4)
    run = train(train_dir, val_dir=val_dir, out=tmp_path / "run", flip_tta=False,
                **{**FAST, "arch": "edge"})  # fmt: skip
    model = keras.models.load_model(run.model_path)
    assert model.name == "edge" and "flip_width" not in [layer.name for layer in model.layers]


def test_profile_counts_the_shared_net_once_and_its_work_twice(tta_run, tta_manifest, tmp_path):
    import keras

    from edgecnn.export._space_to_depth import block_kernel
    from edgecnn.profile import profile

    model = keras.models.load_model(tta_run.model_path)
    keras_total = profile(tta_run.model_path)["total"]
    assert keras_total["params"] == model.count_params()
    plain = keras.Model(model.get_layer("edge").input, model.get_layer("edge").output)
    tmp = tmp_path / "inner.keras"
    plain.save(tmp)
    inner = profile(tmp)["total"]
    line = 32 * 3 * 32 * 32  # a 32x32 line map applied to 32 lines x 3 channels
    assert keras_total["macs"] == 2 * inner["macs"] + 3 * line  # rows, columns, mirrored columns
    tflite_total = profile(tta_run.path / "export" / "model_int8.tflite")["total"]
    assert tflite_total["params"] < 1.2 * inner["params"]  # not counted once per call
    # the int8 graph does the same work, line maps included: all static ops, none sized at run
    # time; its stem runs as a block conv (export/_space_to_depth.py), zero taps included
    stem = model.get_layer("edge").get_layer("stem_conv")
    kh, kw, channels, filters = stem.kernel.shape
    th, tw, _, _ = block_kernel(stem.kernel).shape
    _, out_h, out_w, _ = stem.output.shape
    zero_taps = out_h * out_w * filters * channels * (4 * th * tw - kh * kw)
    assert tflite_total["macs"] == keras_total["macs"] + 2 * zero_taps


def test_crop_one_keeps_the_whole_photo_and_bad_crops_are_refused():
    from edgecnn.models import build_edge, with_flip_tta
    from edgecnn.runtime.errors import InputError

    net = build_edge(2, 32)
    whole = with_flip_tta(net, crop=1.0)
    assert {layer.name for layer in whole.layers}.isdisjoint({"centre_rows", "centre_cols"})
    x = np.random.default_rng(2).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    expected = (net(x).numpy() + net(x[:, :, ::-1]).numpy()) / 2
    np.testing.assert_allclose(whole(x).numpy(), expected, atol=1e-6)
    for bad in (0.0, 1.5):
        with pytest.raises(InputError, match="crop"):
            with_flip_tta(net, crop=bad)


def test_onnx_export_prints_no_traceback_for_tf2onnx_optimiser_failures(tta_run, tmp_path, capfd):
    import logging
    import shutil

    from edgecnn.export import export
    from edgecnn.export._onnx import _optimizer_failures

    with _optimizer_failures() as notes:
        try:
            max(())
        except ValueError as error:
            logging.getLogger("tf2onnx.optimizer").warning("Failed to apply %s", "x", exc_info=1)
            message = str(error)  # Python's own words, which change between releases
    assert notes == [f"tf2onnx skipped its x (ValueError: {message})"]
    assert "Traceback" not in capfd.readouterr().err
    # the real conversion of the edge net's test-time views, with its progress lines
    run = tmp_path / "run"
    shutil.copytree(tta_run.path, run, ignore=shutil.ignore_patterns("export"))
    export(run, formats=["onnx"], progress=True)
    err = capfd.readouterr().err
    assert "ok  model.onnx" in err and "Traceback" not in err
