"""`edgecnn export` with bad input: exit 2, one line on stderr, no partial files."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from _export_fixtures import copy_run, trained_run

from edgecnn.cli import main


@pytest.fixture
def run_copy(tmp_path_factory, tmp_path):
    return copy_run(trained_run(tmp_path_factory), tmp_path / "run")


def _fails_with_one_line(capsys, argv, *needles):
    capsys.readouterr()
    try:
        code = main(["export", *argv])
    except SystemExit as e:  # argparse rejects bad option values itself
        code = e.code
    assert code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("edgecnn export: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert captured.out == ""
    return lines[0]


def _no_export_files(run):
    out = run / "export"
    assert not out.exists() or not list(out.iterdir())


def test_missing_path(tmp_path, capsys):
    _fails_with_one_line(capsys, [str(tmp_path / "nope")], "no such run directory")


def test_folder_that_is_no_run(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    _fails_with_one_line(capsys, [str(tmp_path / "photos")], "not a run directory", "model.keras")
    _no_export_files(tmp_path / "photos")


def test_file_that_is_no_model(tmp_path, capsys):
    path = tmp_path / "model.h5"
    path.write_bytes(b"\x89HDF\r\n")
    _fails_with_one_line(capsys, [str(path)], "model.h5", ".keras")


def test_corrupt_keras_file(run_copy, capsys):
    (run_copy / "model.keras").write_bytes(b"PK\x03\x04 truncated garbage" * 10)
    _fails_with_one_line(capsys, [str(run_copy)], "model.keras", "corrupt")
    _no_export_files(run_copy)


def test_keras_archive_that_keras_cannot_load(run_copy, capsys):
    with zipfile.ZipFile(run_copy / "model.keras", "w") as zf:
        zf.writestr("config.json", "{not json")
    _fails_with_one_line(capsys, [str(run_copy)], "cannot load the Keras model")
    _no_export_files(run_copy)


def test_keras_model_without_contract(run_copy, capsys):
    (run_copy / "edgecnn.json").unlink()
    _fails_with_one_line(capsys, [str(run_copy)], "edgecnn.json")


def test_empty_calib_folder(run_copy, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails_with_one_line(capsys, [str(run_copy), "--calib", str(empty)], str(empty))
    _no_export_files(run_copy)


def test_calib_folder_that_does_not_exist(run_copy, tmp_path, capsys):
    _fails_with_one_line(capsys, [str(run_copy), "--calib", str(tmp_path / "gone")], "--calib")
    _no_export_files(run_copy)


def test_undecodable_calib_folder(run_copy, tmp_path, capsys):
    bad = tmp_path / "bad"
    for cls in ("red", "green"):
        (bad / cls).mkdir(parents=True)
        for i in range(3):
            (bad / cls / f"{i}.png").write_bytes(b"this is not a png at all")
    _fails_with_one_line(capsys, [str(run_copy), "--calib", str(bad)], "could be decoded")
    _no_export_files(run_copy)


def test_check_folder_with_unknown_classes(run_copy, tmp_path, capsys):
    other = tmp_path / "other"
    for cls in ("cat", "dog"):
        (other / cls).mkdir(parents=True)
    _fails_with_one_line(
        capsys, [str(run_copy), "--check", str(other)], "not among the model's labels"
    )
    _no_export_files(run_copy)


def test_unknown_format_lists_the_valid_ones(run_copy, capsys):
    line = _fails_with_one_line(
        capsys, [str(run_copy), "--formats", "onnx,tflite-int4"], "tflite-int4"
    )
    for valid in ("tflite-fp32", "tflite-fp16", "tflite-drq", "tflite-int8", "onnx", "onnx-int8"):
        assert valid in line
    _no_export_files(run_copy)


def test_bad_int8_io_calib_count_and_seed(run_copy, capsys):
    _fails_with_one_line(capsys, [str(run_copy), "--int8-io", "int4"], "--int8-io")
    _fails_with_one_line(capsys, [str(run_copy), "--int8-weights", "per-layer"], "--int8-weights")
    _fails_with_one_line(capsys, [str(run_copy), "--calib-count", "0"], "--calib-count")
    seed = "--seed must be between 0 and 4294967295, got -1"
    _fails_with_one_line(capsys, [str(run_copy), "--calib-count", "2", "--seed", "-1"], seed)
    _no_export_files(run_copy)


def test_a_run_whose_photos_are_gone_names_every_folder_to_pass(run_copy, capsys):
    """A run copied to another machine: one line that names --check and --calib together,
    then --calib alone once --check is given."""
    contract_file = run_copy / "edgecnn.json"
    contract = json.loads(contract_file.read_text())
    photos = Path(contract["info"]["data_dir"])
    if contract["info"].get("val_dir"):
        photos = Path(contract["info"]["val_dir"])
    contract["info"].update(data_dir=str(run_copy / "gone"), val_dir=None, val_split=0.2)
    contract_file.write_text(json.dumps(contract))

    gone = f"the run's training images {run_copy / 'gone'} are gone"
    _fails_with_one_line(capsys, [str(run_copy)], gone, "--check DIR, and --calib DIR")
    line = _fails_with_one_line(capsys, [str(run_copy), "--check", str(photos)], gone)
    assert line.endswith("; pass --calib DIR")
    _no_export_files(run_copy)
