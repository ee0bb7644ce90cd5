"""edgecnn.export on a tiny trained run: six formats, verified, described in export.json."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from _export_fixtures import CLASSES, copy_run, exported_run, trained_run

from edgecnn.cli import main
from edgecnn.export import FILENAMES, FORMATS, MANIFEST, export
from edgecnn.runtime.errors import InputError, VerificationError


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return exported_run(tmp_path_factory)


@pytest.fixture
def run_copy(tmp_path_factory, tmp_path):
    return copy_run(trained_run(tmp_path_factory), tmp_path / "run")


def test_every_format_is_written_and_described(exported):
    run, manifest = exported
    out = run / "export"
    assert json.loads((out / MANIFEST).read_text()) == manifest
    assert list(manifest["artifacts"]) == list(FORMATS)
    for fmt, entry in manifest["artifacts"].items():
        data = (out / FILENAMES[fmt]).read_bytes()
        assert entry["file"] == FILENAMES[fmt]
        assert entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["passed"] is True
        assert entry["scheme"]
    assert not [p.name for p in out.iterdir() if ".partial" in p.name]


@pytest.mark.parametrize("fmt", FORMATS)
def test_parity_with_keras_meets_its_threshold(exported, fmt):
    from edgecnn.export._verify import QUANTIZED, THRESHOLDS

    parity = exported[1]["artifacts"][fmt]["parity"]
    assert parity["images"] == 60
    assert parity["passed"] and all(c["passed"] for c in parity["criteria"])
    if fmt in QUANTIZED:  # a confident model: its int8 answers stay too
        assert parity["gate"] == "quantized" and parity["agreement"] >= 0.98
    else:
        min_agreement, max_diff = THRESHOLDS[fmt]
        assert parity["gate"] == "float" and parity["agreement"] >= min_agreement
        if max_diff is not None:
            assert parity["max_abs_diff"] <= max_diff
    assert parity["accuracy"] >= 0.9
    assert parity["backend"] == ("onnx" if fmt.startswith("onnx") else "tflite")


def test_int8_tflite_is_full_integer_with_uint8_io(exported):
    entry = exported[1]["artifacts"]["tflite-int8"]
    assert entry["float_ops"] == []
    assert entry["int8_io"] == "uint8"
    assert entry["input"]["dtype"] == "uint8" and entry["output"]["dtype"] == "uint8"
    # the default uint8 input is exactly the raw 0..255 pixels
    assert entry["input"]["scale"] == pytest.approx(1.0) and entry["input"]["zero_point"] == 0
    assert exported[1]["artifacts"]["tflite-drq"]["input"]["dtype"] == "float32"


def test_onnx_int8_weights_use_7_bits(exported):
    """No u8 x s8 pair of products can saturate 16 bits on x86 CPUs without VNNI."""
    import onnx
    from onnx import numpy_helper

    path = exported[0] / "export" / exported[1]["artifacts"]["onnx-int8"]["file"]
    graph = onnx.load(str(path)).graph
    weights = [
        numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8
    ]
    assert weights and max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64
    assert max(int(np.abs(w.astype(np.int16)).max()) for w in weights) > 32  # really used


def test_onnx_names_and_opset(exported):
    for fmt in ("onnx", "onnx-int8"):
        entry = exported[1]["artifacts"][fmt]
        assert entry["input"]["name"] == "image" and entry["output"]["name"] == "probs"
        assert entry["input"]["dtype"] == "float32"
        assert entry["input"]["shape"][1:] == [32, 32, 3]
        assert entry["opset"] >= 17


def test_exported_files_classify_like_keras(exported):
    import keras

    from edgecnn.runtime import load
    from edgecnn.runtime.dataset import list_dataset, load_pixels

    run, manifest = exported
    clf_keras = keras.models.load_model(run / "model.keras")
    val = load_pixels(
        list_dataset(manifest["check"]["dir"], classes=CLASSES),
        load(run / "export" / "model.onnx").contract,
        progress=False,
    )
    ref = np.asarray(clf_keras(val.pixels.astype(np.float32))).argmax(1)
    for fmt in FORMATS:
        clf = load(run / "export" / FILENAMES[fmt])
        assert clf.labels == CLASSES
        top = clf.probs_pixels(val.pixels).argmax(1)
        assert np.mean(top == ref) >= 0.98, fmt


def test_calibration_is_a_recorded_seeded_stratified_sample(exported):
    calib = exported[1]["calibration"]
    assert calib["requested"] == 60 and calib["count"] == 60
    assert calib["classes"] == {"red": 20, "green": 20, "blue": 20}
    assert calib["seed"] == 0 and calib["from"] == "training images"
    assert len(calib["pixels_sha256"]) == 16 and len(calib["files_fingerprint"]) == 16
    assert exported[1]["check"]["count"] == 60


def test_calibration_sample_depends_on_the_seed_only(exported):
    from edgecnn.export._data import calibration_set
    from edgecnn.runtime.metadata import read_contract

    run, _ = exported
    contract = read_contract(run / "model.keras")

    def sample(seed):
        return calibration_set(
            contract, calib=None, run_dir=run, count=30, seed=seed, progress=False
        ).source["pixels_sha256"]

    assert sample(0) == sample(0)
    assert sample(0) != sample(1)


def test_int8_io_and_subset_of_formats(run_copy):
    manifest = export(
        run_copy, formats="tflite-int8", int8_io="int8", calib_count=30, progress=False
    )
    entry = manifest["artifacts"]["tflite-int8"]
    assert list(manifest["artifacts"]) == ["tflite-int8"]
    assert entry["input"]["dtype"] == "int8" and entry["output"]["dtype"] == "int8"
    # raw 0..255 pixels in int8: one step per pixel value, 0 maps to -128
    assert entry["input"]["scale"] == pytest.approx(1.0) and entry["input"]["zero_point"] == -128
    assert entry["passed"]
    assert sorted(p.name for p in (run_copy / "export").iterdir()) == [
        MANIFEST,
        "model_int8.tflite",
    ]


def test_per_tensor_int8_weights_are_smaller(exported, run_copy):
    from tensorflow.lite.python import schema_py_generated as schema

    channel = export(
        run_copy,
        formats="tflite-int8,onnx-int8",
        int8_weights="per-channel",
        calib_count=60,
        progress=False,
    )
    manifest = export(
        run_copy,
        formats="tflite-int8,onnx-int8",
        int8_weights="per-tensor",
        calib_count=60,
        progress=False,
    )
    assert manifest["int8_weights"] == "per-tensor"
    for fmt in ("tflite-int8", "onnx-int8"):
        entry = manifest["artifacts"][fmt]
        assert entry["passed"] and entry["weights"] == "per-tensor"
        per_channel = channel["artifacts"][fmt]
        assert per_channel["weights"] == "per-channel"
        assert entry["bytes"] < per_channel["bytes"]
    model = schema.Model.GetRootAs((run_copy / "export" / "model_int8.tflite").read_bytes(), 0)
    graph = model.Subgraphs(0)
    scales = [graph.Tensors(i).Quantization().ScaleLength() for i in range(graph.TensorsLength())]
    assert max(scales) == 1


def test_run_with_val_split_checks_on_its_held_out_part(run_copy):
    contract = json.loads((run_copy / "edgecnn.json").read_text())
    contract["info"].pop("val_dir")
    contract["info"]["val_split"] = 0.25
    (run_copy / "edgecnn.json").write_text(json.dumps(contract))
    manifest = export(run_copy, formats="tflite-int8", calib_count=300, progress=False)
    assert manifest["check"]["count"] == 30  # 25% of 3 x 40 training images
    assert "val split" in manifest["check"]["from"]
    assert manifest["calibration"]["count"] == 90  # the other 75%, never the held-out part
    assert "train part" in manifest["calibration"]["from"]


def test_exporting_more_formats_later_keeps_the_manifest_complete(run_copy):
    export(run_copy, formats="onnx", progress=False)
    manifest = export(run_copy, formats="tflite-fp32", progress=False)
    assert list(manifest["artifacts"]) == ["tflite-fp32", "onnx"]
    (run_copy / "export" / "model.onnx").write_bytes(b"replaced by hand")
    manifest = export(run_copy, formats="tflite-fp32", progress=False)
    assert list(manifest["artifacts"]) == ["tflite-fp32"]  # an unverified file is not listed


def test_an_interrupted_export_leaves_a_manifest_true_to_the_files(run_copy, monkeypatch):
    """Ctrl-C part-way through a re-export: export.json lists the new files verified so far and
    the earlier ones still unchanged, each with the sha256 of the file there (it was the old
    manifest, vouching for files that had since been replaced)."""
    import edgecnn.export as export_module

    export(run_copy, formats="tflite-int8,onnx", int8_io="uint8", progress=False)

    def interrupted(self, fmt, final):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module._Job, "_export_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export(run_copy, formats="tflite-int8,onnx", int8_io="int8", progress=False)
    folder = run_copy / "export"
    manifest = json.loads((folder / MANIFEST).read_text())
    assert list(manifest["artifacts"]) == ["tflite-int8", "onnx"]
    assert manifest["artifacts"]["tflite-int8"]["int8_io"] == "int8"
    for fmt, entry in manifest["artifacts"].items():
        data = (folder / FILENAMES[fmt]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], fmt


def test_failed_verification_keeps_nothing_and_exits_1(run_copy, monkeypatch, capsys):
    from edgecnn.export import _verify

    monkeypatch.setitem(_verify.THRESHOLDS, "tflite-fp32", (1.0, 0.0))  # unattainable
    stale = run_copy / "export" / "model_fp32.tflite"
    stale.parent.mkdir()
    stale.write_bytes(b"an old export that must not survive a failed one")
    with pytest.raises(
        VerificationError, match=r"^model_fp32.tflite refused: max \|Δp\| .* > 0 allowed; "
    ):
        export(run_copy, formats=["tflite-fp32"], progress=False)
    assert not stale.exists()
    assert not [p for p in stale.parent.iterdir() if ".partial" in p.name]
    manifest = json.loads((stale.parent / MANIFEST).read_text())
    assert manifest["artifacts"]["tflite-fp32"]["passed"] is False
    assert manifest["artifacts"]["tflite-fp32"]["file"] is None

    capsys.readouterr()
    assert main(["export", str(run_copy), "--formats", "tflite-fp32"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("edgecnn export: model_fp32.tflite refused: ")
    assert "Traceback" not in err


def test_int8_drop_reports_the_worst_layers(run_copy, monkeypatch, capsys):
    from edgecnn.export import _verify

    monkeypatch.setattr(_verify, "DEBUG_BELOW", 1.01)  # force the report on a good model
    manifest = export(run_copy, formats="tflite-int8,onnx-int8", calib_count=30)
    layers = manifest["artifacts"]["tflite-int8"]["largest_quantization_error"]
    assert 1 <= len(layers) <= 5
    errors = [r["rmse_per_scale"] for r in layers]
    assert errors == sorted(errors, reverse=True)
    assert all(r["op"] and r["scale"] > 0 for r in layers)
    onnx_layers = manifest["artifacts"]["onnx-int8"]["largest_quantization_error"]
    assert 1 <= len(onnx_layers) <= 5
    sqnr = [r["sqnr_db"] for r in onnx_layers]
    assert sqnr == sorted(sqnr) and all(np.isfinite(sqnr))
    err = capsys.readouterr().err
    assert (
        "largest int8 error" in err and layers[0]["op"] in err and onnx_layers[0]["tensor"] in err
    )


def test_a_format_that_cannot_hold_the_model_fails_alone(run_copy, monkeypatch, capsys):
    from edgecnn.export import _tflite

    real = _tflite.convert

    def no_fp16(model, contract, fmt, **kw):
        if fmt == "tflite-fp16":
            raise InputError("tflite-fp16: the TFLite converter cannot convert this model: X")
        return real(model, contract, fmt, **kw)

    monkeypatch.setattr(_tflite, "convert", no_fp16)
    assert main(["export", str(run_copy), "--formats", "tflite-fp32,tflite-fp16,onnx"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "edgecnn export: error: tflite-fp16: the TFLite converter cannot convert this model: X"
    )
    manifest = json.loads((run_copy / "export" / MANIFEST).read_text())
    assert list(manifest["artifacts"]) == ["tflite-fp32", "onnx"]
    assert not (run_copy / "export" / "model_fp16.tflite").exists()


def test_augmentation_layers_are_refused(run_copy):
    import keras

    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.RandomFlip("horizontal"),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.save(run_copy / "model.keras")
    with pytest.raises(InputError, match="augmentation layer.*RandomFlip"):
        export(run_copy, formats="onnx", progress=False)
    assert not (run_copy / "export").exists()


def test_cli_prints_a_table(run_copy, capsys):
    assert main(["export", str(run_copy / "model.keras"), "--formats", "onnx,tflite-fp32"]) == 0
    out = capsys.readouterr().out
    assert "model.onnx" in out and "model_fp32.tflite" in out and "agreement" in out
    assert "100.00%" in out


def test_auto_int8_weights_keep_per_tensor_unless_it_loses_agreement(
    exported, run_copy, monkeypatch
):
    import edgecnn.export as ex

    assert exported[1]["int8_weights"] == "auto"
    assert {exported[1]["artifacts"][f]["weights"] for f in ("tflite-int8", "onnx-int8")} <= {
        "per-tensor",
        "per-channel",
    }
    monkeypatch.setattr(ex, "AUTO_MAX_AGREEMENT_LOSS", 1.0)  # any passing per-tensor file wins
    manifest = export(run_copy, formats="tflite-int8", calib_count=60, progress=False)
    tensor = manifest["artifacts"]["tflite-int8"]
    assert tensor["passed"] and tensor["weights"] == "per-tensor"
    monkeypatch.setattr(ex, "AUTO_MAX_AGREEMENT_LOSS", -1.0)  # per-tensor can never win
    manifest = export(run_copy, formats="tflite-int8", calib_count=60, progress=False)
    channel = manifest["artifacts"]["tflite-int8"]
    assert channel["passed"] and channel["weights"] == "per-channel"
    assert channel["bytes"] > tensor["bytes"]
    kept = (run_copy / "export" / "model_int8.tflite").read_bytes()
    assert hashlib.sha256(kept).hexdigest() == channel["sha256"]  # the file is the one verified


def test_int8_tflite_takes_raw_pixels_with_the_same_numbers(exported):
    """The default uint8 I/O has scale 1 / zero point 0, so pixels go to the model as they are;
    that shortcut must give exactly what the float path (quantise again) gives."""
    from edgecnn.runtime import load, to_input
    from edgecnn.runtime.dataset import list_dataset, load_pixels

    run, manifest = exported
    int8 = load(run / "export" / "model_int8.tflite")
    assert int8.takes_raw_pixels
    assert int8.describe()["input"] == {"dtype": "uint8", "scale": 1.0, "zero_point": 0}
    assert not load(run / "export" / "model_fp32.tflite").takes_raw_pixels
    val = load_pixels(
        list_dataset(manifest["check"]["dir"], classes=CLASSES), int8.contract, progress=False
    )
    raw = int8.probs_pixels(val.pixels, batch=7)
    np.testing.assert_array_equal(raw, int8.probs(to_input(val.pixels, int8.contract)))


def test_every_registered_format_has_a_converter_of_the_one_signature():
    import importlib
    import inspect

    from edgecnn.export import _formats, _onnx
    from edgecnn.runtime.artifacts import by_name

    assert tuple(_formats.CONVERTERS) == FORMATS
    for module in set(_formats.CONVERTERS.values()):
        build = importlib.import_module(f"edgecnn.export.{module}").build
        assert list(inspect.signature(build).parameters) == ["fmt", "source", "options"], module
    assert f"opset {_onnx.OPSET}" in by_name("onnx").scheme
