"""`edgecnn bench`: rows per artifact x backend x threads, measured in child processes."""

from __future__ import annotations

import copy
import csv
import json
import shutil

import pytest
from _bench_fixtures import cached_run

from edgecnn import bench_report as report
from edgecnn.bench import BenchConfig, bench, keras_reference, list_artifacts, planned_rows
from edgecnn.cli import main
from edgecnn.runtime.errors import InputError

FAST = {"runs": 8, "warmup": 2, "warmup_seconds": 0.0, "min_seconds": 0.0}


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    return cached_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def result(run_dir):
    """One bench of the whole run: tflite/onnx/opencv x threads 1,2, with --data."""
    config = BenchConfig(backends=("tflite", "onnx", "opencv"), threads=(1, 2), **FAST)
    return bench([run_dir], config=config, data=run_dir.parent / "data", progress=False)


def test_rows_cover_every_artifact_backend_and_thread_count(result):
    keys = {(r["artifact"], r["backend"], r["threads"]) for r in result["rows"]}
    expected = {
        (a, b, t)
        for a, backends in (
            ("model_int8.tflite", ["tflite"]),
            ("model_fp32.tflite", ["tflite"]),
            ("model.onnx", ["onnx", "opencv"]),
        )
        for b in backends
        for t in (1, 2)
    }
    assert keys == expected
    assert len(result["rows"]) == len(expected)


def test_each_row_has_ordered_percentiles_and_measurements(result):
    for r in result["rows"]:
        assert r["error"] is None, r
        assert 0 < r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["runs"] >= FAST["runs"] and r["warmup_runs"] >= FAST["warmup"]
        assert r["load_s"] > 0 and r["first_ms"] > 0 and r["fps"] > 0
        assert r["peak_rss_bytes"] > 10 * 2**20
        assert r["file_bytes"] > 0
        # the runtime path never pulls TensorFlow into the child
        assert r["imported_tensorflow"] is False


def test_accuracy_and_agreement_on_the_same_images(result):
    assert result["data"]["n_images"] == 12
    assert result["data"]["reference"].endswith("model.keras")
    for r in result["rows"]:
        assert r["n_images"] == 12
        assert 0.0 <= r["accuracy"] <= 1.0
        # float backends agree with the Keras model on every image
        if "int8" not in r["artifact"]:
            assert r["agreement"] == 1.0


def test_environment_header(result):
    env = result["env"]
    assert env["cores"] >= 1 and env["python"] and env["cpu"]
    assert {"onnxruntime", "numpy"} <= set(env["versions"])
    assert env["tflite_delegates"]  # the runtime says which delegate it applied
    text = report.render_text(result)
    assert "TFLite delegate:" in text and "model_int8.tflite" in text


def test_failing_backend_gets_an_error_row_and_the_rest_still_run(run_dir, tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07" + b"not really an onnx model" * 4)
    good = run_dir / "export" / "model_int8.tflite"
    res = bench(
        [good, bad], config=BenchConfig(backends=("tflite", "onnx"), **FAST), progress=False
    )
    rows = {(r["artifact"], r["backend"]): r for r in res["rows"]}
    assert rows[("model_int8.tflite", "tflite")]["error"] is None
    assert rows[("model_int8.tflite", "tflite")]["p50_ms"] > 0
    err = rows[("broken.onnx", "onnx")]["error"]
    assert err and "broken.onnx" in err
    assert "ERROR" in report.render_text(res)
    assert "ERROR" in report.render_markdown(res)


def test_cli_writes_all_outputs_and_compares(run_dir, tmp_path, capsys):
    model = run_dir / "export" / "model_int8.tflite"
    args = [
        str(model),
        "--runs",
        "8",
        "--warmup",
        "2",
        "--warmup-seconds",
        "0",
        "--min-seconds",
        "0",
    ]
    outs = {k: tmp_path / f"b.{k}" for k in ("json", "csv", "md", "png")}
    assert (
        main(
            [
                "bench",
                *args,
                "--json",
                str(outs["json"]),
                "--csv",
                str(outs["csv"]),
                "--md",
                str(outs["md"]),
                "--plot",
                str(outs["png"]),
            ]
        )
        == 0
    )
    data = json.loads(outs["json"].read_text())
    assert data["schema"] == "edgecnn-bench/1" and len(data["rows"]) == 1
    with outs["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["artifact"] == "model_int8.tflite" and float(rows[0]["p50_ms"]) > 0
    assert "| model_int8.tflite |" in outs["md"].read_text()
    assert outs["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # defaults go into RUN/bench/, and --compare prints ratios against the first result
    assert main(["bench", *args, "--compare", str(outs["json"])]) == 0
    out = capsys.readouterr().out
    assert "Compared with the earlier run" in out and "x" in out
    saved = json.loads((run_dir / "bench" / "bench.json").read_text())
    ratio = saved["comparison"]["rows"][0]["p50_ms_ratio"]
    assert ratio == pytest.approx(saved["rows"][0]["p50_ms"] / data["rows"][0]["p50_ms"])
    for name in ("bench.csv", "bench.md", "bench.png"):
        assert (run_dir / "bench" / name).is_file()


def test_compare_flags_regressions(result):
    old = copy.deepcopy(result)
    for r in old["rows"]:
        r["p50_ms"] /= 2  # the old run was twice as fast
        r["accuracy"] = (r["accuracy"] or 0) + 0.5
    items = report.compare(result, old)
    assert len(items) == len(result["rows"])
    for item in items:
        assert item["p50_ms_ratio"] == pytest.approx(2.0)
        assert any("slower" in f for f in item["flags"]) and any(
            "accuracy" in f for f in item["flags"]
        )
    assert "REGRESSION" in report.format_compare(items)
    same = report.compare(result, result)
    assert all(not i["flags"] and i["p50_ms_ratio"] == 1.0 for i in same)


def test_run_directory_lists_every_artifact(run_dir):
    names = [p.name for p in list_artifacts(run_dir)]
    assert names == ["model_int8.tflite", "model_fp32.tflite", "model.onnx", "model.keras"]


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--backends", "tflite,tpu"], "unknown backend"),
        (["--threads", "0"], "thread"),
        (["--threads", "1,x"], "thread"),
        (["--threads", "1,100000"], "thread counts must be from 1 to 256"),
        (["--backends", "keras"], "no backend"),
    ],
)
def test_bad_options_exit_2_with_one_line(run_dir, capsys, extra, needle):
    code = main(["bench", str(run_dir / "export" / "model_int8.tflite"), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and needle in err


def test_model_no_backend_can_run_exits_2(tmp_path, capsys):
    bad = tmp_path / "weights.bin"
    bad.write_bytes(b"123")
    assert main(["bench", str(bad)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "unknown model type" in err
    assert main(["bench", str(tmp_path / "missing")]) == 2
    assert "no such" in capsys.readouterr().err
    corrupt = tmp_path / "model.tflite"
    corrupt.write_bytes(b"\x00" * 64)
    assert main(["bench", str(corrupt), "--runs", "2", "--warmup", "0", "--no-save"]) == 2
    err = capsys.readouterr().err
    assert (
        len(err.strip().splitlines()) == 1
        and "no backend could run" in err
        and "model.tflite" in err
    )


def test_compare_file_of_another_shape_exits_2(run_dir, tmp_path, capsys):
    other = tmp_path / "export.json"
    other.write_text(json.dumps({"artifacts": {}}))
    model = str(run_dir / "export" / "model_int8.tflite")
    assert main(["bench", model, "--compare", str(other)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not an edgecnn bench result" in err
    # a bench result of other rows: nothing in common
    foreign = {
        "schema": "edgecnn-bench/1",
        "rows": [{"artifact": "x.onnx", "backend": "onnx", "threads": 4}],
    }
    other.write_text(json.dumps(foreign))
    assert main(["bench", model, "--compare", str(other)]) == 2
    assert "nothing to compare" in capsys.readouterr().err
    with pytest.raises(InputError):
        report.load_result(tmp_path / "nope.json")


@pytest.mark.parametrize("option", ["warmup_seconds", "min_seconds"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_timing_options_must_be_finite_and_not_negative(option, value):
    with pytest.raises(InputError, match="must be >= 0 and finite"):
        BenchConfig(**{option: value})


def test_results_are_written_atomically_without_leftovers(result, tmp_path):
    report.write_json(result, tmp_path / "o" / "bench.json")
    report.write_plot(result, tmp_path / "o" / "bench.png")
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["bench.json", "bench.png"]
    shutil.rmtree(tmp_path / "o")


def test_worker_writes_its_row_without_leftovers(tmp_path):
    from edgecnn import _bench_worker

    spec = tmp_path / "w.spec.json"
    missing = tmp_path / "missing.tflite"
    spec.write_text(json.dumps({"model": str(missing), "backend": "tflite", "threads": 1}))
    assert _bench_worker.main([str(spec), str(tmp_path / "w.out.json")]) == 1
    assert "missing.tflite" in json.loads((tmp_path / "w.out.json").read_text())["error"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.out.json", "w.spec.json"]


def test_pipeline_breakdown_next_to_decode_ceiling(run_dir, tmp_path):
    import cv2
    import numpy as np

    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30, (96, 64))
    for i in range(24):
        writer.write(np.full((64, 96, 3), 10 * i, np.uint8))
    writer.release()
    config = BenchConfig(backends=("tflite",), pipeline_frames=20, **FAST)
    res = bench(
        [run_dir / "export" / "model_int8.tflite"],
        config=config,
        pipeline=str(clip),
        progress=False,
    )
    ceiling, row = res["pipeline"]
    assert ceiling["artifact"] == "(decode only)" and ceiling["frames"] == 20 and ceiling["fps"] > 0
    assert "error" not in row, row
    assert row["frames"] == 20 and row["fps"] > 0
    for stage in ("capture", "preprocess", "inference", "postprocess", "total"):
        assert row["stages"][stage]["p50_ms"] <= row["stages"][stage]["p99_ms"]
    assert row["of_ceiling"] > 0
    assert "decode only" in report.render_text(res)


def test_missing_pipeline_source_exits_2(run_dir, tmp_path, capsys):
    model = str(run_dir / "export" / "model_int8.tflite")
    assert main(["bench", model, "--pipeline", str(tmp_path / "nope.mp4")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"edgecnn bench: error: --pipeline {tmp_path / 'nope.mp4'}: no such file")


def test_a_pipeline_source_without_a_frame_exits_2_before_measuring(run_dir, tmp_path, capsys):
    """It used to measure every backend and print the failure in a table cell, exit 0."""
    model = str(run_dir / "export" / "model_int8.tflite")
    (tmp_path / "clip.mp4").write_text("not a video")
    out = tmp_path / "out.json"
    argv = ["bench", model, "--pipeline", str(tmp_path / "clip.mp4"), "--json", str(out)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "clip.mp4" in captured.err
    assert not out.exists()


def test_two_runs_get_their_own_labels_and_reference(run_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(run_dir, other, ignore=shutil.ignore_patterns("bench"))
    config = BenchConfig(backends=("tflite",), **FAST)
    targets = [run_dir / "export" / "model_int8.tflite", other / "export" / "model_int8.tflite"]
    res = bench(targets, config=config, progress=False)
    assert [r["artifact"] for r in res["rows"]] == [
        "run/model_int8.tflite",
        "other/model_int8.tflite",
    ]
    # agreement of each file is measured against its own run's Keras model
    assert [keras_reference([t]) for t in targets] == [
        run_dir / "model.keras",
        other / "model.keras",
    ]


def test_a_file_named_twice_is_measured_once(run_dir):
    model = run_dir / "export" / "model_int8.tflite"
    config = BenchConfig(backends=("tflite",), threads=(1, 1), **FAST)
    once = planned_rows([model], config)
    assert planned_rows([model, model, str(model)], config) == once
    assert len(once) == 1


def test_an_empty_backend_list_says_so():
    with pytest.raises(InputError, match="^--backends names no backend; choose from"):
        BenchConfig(backends=())
