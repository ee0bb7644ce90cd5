"""`edgecnn profile`: per-layer parameters/MACs, memory, float ops and int8 error."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from _bench_fixtures import cached_run, make_float_io_int8

from edgecnn.cli import main
from edgecnn.profile import profile, render

# conv 3x3x3->4 stride 2 on 32x32 (15x15 out), depthwise 3x3 on 15x15x4, dense 4->2
CONV_MACS = 15 * 15 * 4 * 3 * 3 * 3
DW_MACS = 15 * 15 * 4 * 3 * 3
DENSE_MACS = 4 * 2
TOTAL_MACS = CONV_MACS + DW_MACS + DENSE_MACS


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    return cached_run(tmp_path_factory.getbasetemp())


@pytest.mark.parametrize(
    "name",
    ["export/model_int8.tflite", "export/model_fp32.tflite", "export/model.onnx", "model.keras"],
)
def test_macs_and_params_per_layer_for_every_format(run_dir, name):
    rep = profile(run_dir / name)
    assert rep["total"]["macs"] == TOTAL_MACS
    by_macs = sorted(r["macs"] for r in rep["layers"] if r["macs"])
    assert by_macs == sorted([CONV_MACS, DW_MACS, DENSE_MACS])
    # conv kernel 3*3*3*4 (+ bias 4 where the converter keeps the zero bias)
    assert any(r["params"] in (108, 112) for r in rep["layers"])
    assert rep["total"]["params"] >= 108 + 36 + 8
    assert rep["total"]["weight_bytes"] > 0
    # the largest live set includes at least the 15x15x4 conv output
    assert rep["total"]["peak_activation_bytes"] >= 15 * 15 * 4


def test_int8_weights_are_a_quarter_of_fp32(run_dir):
    f = profile(run_dir / "export/model_fp32.tflite")["total"]
    q = profile(run_dir / "export/model_int8.tflite")["total"]
    assert q["weight_bytes"] < 0.5 * f["weight_bytes"]
    assert q["peak_activation_bytes"] < 0.5 * f["peak_activation_bytes"]


def test_int8_quant_error_measured_against_fp32(run_dir):
    rep = profile(run_dir / "export/model_int8.tflite", data=run_dir.parent / "data")
    assert rep["quantized"] is True
    assert rep["float_ops"] == []  # full-integer file: nothing left in float
    assert rep["quant_error_source"].startswith("measured vs model_fp32.tflite on 8 images")
    ops = [e["op"] for e in rep["quant_error"]]
    assert "CONV_2D" in ops and "FULLY_CONNECTED" in ops
    assert all(
        math.isfinite(e["relative_rmse"]) and e["relative_rmse"] >= 0 for e in rep["quant_error"]
    )
    text = render(rep)
    assert "per-layer quantisation error" in text and "ops left in float: 0" in text


def test_quant_error_is_read_from_export_json(run_dir, tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    shutil.copy(run_dir / "export/model_int8.tflite", export)
    # the shape edgecnn.export writes when int8 agreement is low
    layers = [{"op": "CONV_2D", "tensor": "conv/Relu;conv", "rmse_per_scale": 0.7, "rmse": 0.01}]
    entry = {"file": "model_int8.tflite", "largest_quantization_error": layers}
    (export / "export.json").write_text(json.dumps({"artifacts": {"tflite-int8": entry}}))
    rep = profile(export / "model_int8.tflite")
    recorded = rep["export_quant_error"]
    assert recorded["layers"] == layers and recorded["metric"] == "rmse_per_scale"
    assert recorded["source"].endswith("export.json (worst layers)")
    assert rep["quant_error"] is None  # export's measure, not the relative RMSE measured here
    assert "export_quant_error" in rep["quant_error_source"]
    text = render(rep)
    assert "export.json (worst layers)" in text and "rmse_per_scale 0.7000" in text
    # a profile written before the split, export's rows under quant_error, still prints
    old = {k: v for k, v in rep.items() if k != "export_quant_error"}
    old.update(quant_error=layers, quant_error_source=recorded["source"])
    assert render(old) == text


def test_ops_left_in_float_are_listed(run_dir, tmp_path):
    path = make_float_io_int8(run_dir, tmp_path / "float_io.tflite")
    rep = profile(path)
    assert rep["quantized"] is True
    whys = {f["op"]: f["why"] for f in rep["float_ops"]}
    assert whys.get("QUANTIZE") == "input/output conversion"
    assert "no model_fp32.tflite" in rep["quant_error_source"]


def test_cli_table_and_json(run_dir, tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["profile", str(run_dir), "--json", str(out)]) == 0  # run dir -> int8 tflite
    text = capsys.readouterr().out
    assert "CONV_2D" in text and f"{TOTAL_MACS:,} MACs" in text
    data = json.loads(out.read_text())
    assert data["model"].endswith("model_int8.tflite") and data["total"]["macs"] == TOTAL_MACS


@pytest.mark.parametrize(
    "content, suffix, needle",
    [
        (b"\x00" * 64, ".tflite", "not a readable .tflite"),
        (b"hello", ".txt", "unknown model type"),
    ],
)
def test_bad_model_exits_2_with_one_line(tmp_path, capsys, content, suffix, needle):
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(content)
    assert main(["profile", str(bad)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err


def test_qdq_onnx_weights_counted_through_dequantize(run_dir, tmp_path):
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.items = iter(
                [
                    {"image": rng.uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)}
                    for _ in range(4)
                ]
            )

        def get_next(self):
            return next(self.items, None)

    out = tmp_path / "model_int8.onnx"
    quantize_static(
        str(run_dir / "export/model.onnx"), str(out), Reader(), quant_format=QuantFormat.QDQ
    )
    rep = profile(out)
    assert rep["quantized"] is True and rep["total"]["macs"] == TOTAL_MACS
    assert rep["total"]["params"] == profile(run_dir / "export/model.onnx")["total"]["params"]
    assert all(
        r["params"] == 0 for r in rep["layers"] if r["op"] in ("QuantizeLinear", "DequantizeLinear")
    )


def test_sequential_keras_model_is_profiled_layer_by_layer(tmp_path):
    """A Sequential saved to .keras loads built but never called: every conv/dense layer must
    still get its MACs (3x3x3x4 per output pixel for the conv, 16x4x... for the dense)."""
    keras = pytest.importorskip("keras")
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, padding="same", name="conv"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(2, name="dense"),
        ]
    )
    path = tmp_path / "seq.keras"
    model.save(path)
    report = profile(path)
    macs = {row["name"]: row["macs"] for row in report["layers"]}
    assert macs["conv"] == 8 * 8 * 4 * (3 * 3 * 3)
    assert macs["dense"] == 8 * 8 * 4 * 2
    assert sum(row["params"] for row in report["layers"]) == model.count_params()
