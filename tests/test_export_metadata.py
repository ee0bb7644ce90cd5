"""Labels and the contract read back from every exported file, the way each client reads them."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from _export_fixtures import CLASSES, exported_run

from edgecnn.export import FILENAMES
from edgecnn.runtime.metadata import read_contract, read_onnx_metadata

TFLITE = [f for f in FILENAMES if f.startswith("tflite-")]
ONNX = ["onnx", "onnx-int8"]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    run, _ = exported_run(tmp_path_factory)
    return run / "export"


@pytest.mark.parametrize("fmt", ONNX)
def test_onnx_metadata_props(export_dir, fmt):
    import onnxruntime as ort

    path = export_dir / FILENAMES[fmt]
    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
    props = meta.custom_metadata_map
    assert props["labels"].split("\n") == list(CLASSES)
    contract = json.loads(props["edgecnn"])
    assert contract["labels"] == list(CLASSES)
    assert (contract["height"], contract["width"], contract["color"]) == (32, 32, "RGB")
    assert read_onnx_metadata(path)["edgecnn"] == props["edgecnn"]  # no onnx package needed
    assert read_contract(path).labels == CLASSES


@pytest.mark.parametrize("fmt", TFLITE)
def test_tflite_associated_files_in_appended_zip(export_dir, fmt):
    path = export_dir / FILENAMES[fmt]
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["edgecnn.json", "labels.txt"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
        assert zf.read("labels.txt").decode().split() == list(CLASSES)
        assert json.loads(zf.read("edgecnn.json"))["labels"] == list(CLASSES)
    contract = read_contract(path)
    assert contract.labels == CLASSES and contract.is_identity_scaling


@pytest.mark.parametrize("fmt", TFLITE)
def test_tflite_metadata_flatbuffer(export_dir, fmt):
    from edgecnn.export._metadata import read_tflite_metadata
    from edgecnn.export._schema import metadata_schema_py_generated as md

    data = (export_dir / FILENAMES[fmt]).read_bytes()
    assert data[4:8] == b"TFL3"
    meta = read_tflite_metadata(data)
    assert meta is not None, "no TFLITE_METADATA entry"
    assert meta.minParserVersion == b"1.0.0"
    (subgraph,) = meta.subgraphMetadata
    (image,) = subgraph.inputTensorMetadata
    (probs,) = subgraph.outputTensorMetadata

    assert image.content.contentPropertiesType == md.ContentProperties.ImageProperties
    assert image.content.contentProperties.colorSpace == md.ColorSpaceType.RGB
    (unit,) = image.processUnits
    assert unit.optionsType == md.ProcessUnitOptions.NormalizationOptions
    np.testing.assert_array_equal(unit.options.mean, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(unit.options.std, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(image.stats.max, [255.0, 255.0, 255.0])

    (labels,) = probs.associatedFiles
    assert labels.name == b"labels.txt"
    assert labels.type == md.AssociatedFileType.TENSOR_AXIS_LABELS
    assert [f.name for f in meta.associatedFiles] == [b"edgecnn.json"]


@pytest.mark.parametrize("fmt", TFLITE)
def test_tflite_buffers_stay_aligned_after_adding_metadata(export_dir, fmt):
    from tensorflow.lite.python import schema_py_generated as schema

    data = (export_dir / FILENAMES[fmt]).read_bytes()
    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        if buf.DataLength():
            assert buf._tab.Vector(4) % 16 == 0, f"buffer {i} misaligned"


def test_metadata_survives_a_stock_interpreter(export_dir):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(export_dir / "model_int8.tflite"), num_threads=1)
    it.allocate_tensors()
    names = [m for m in it.get_signature_list()]
    assert names == ["serving_default"]
