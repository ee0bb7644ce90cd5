"""Write labels and the preprocessing contract into every exported file.

ONNX: `metadata_props` (`edgecnn` = contract JSON, `labels` = newline-joined labels), which ONNX
Runtime exposes as `custom_metadata_map`.

TFLite: the standard TFLite Metadata, so on-device task libraries (MediaPipe Tasks, the TFLite
Task Library) load the file with its class names:

* a `TFLITE_METADATA` entry in the model's metadata list, pointing at a buffer that holds a
  `ModelMetadata` flatbuffer (identifier `M001`): image input with RGB `ImageProperties`,
  `NormalizationOptions` (mean/std from the contract; 0 and 1 for edgecnn's 0..255-input
  models, which MediaPipe requires for float inputs) and value stats; probability output with
  `labels.txt` as a `TENSOR_AXIS_LABELS` associated file;
* the associated files `labels.txt` and `edgecnn.json` in an uncompressed zip appended to the
  flatbuffer (with absolute offsets, as the TFLite Support populator writes it): interpreters
  ignore it, `zipfile` and the task libraries read it.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np

from edgecnn.runtime.contract import Contract
from edgecnn.runtime.metadata import (
    CONTRACT_FILE,
    LABELS_FILE,
    ONNX_CONTRACT_KEY,
    ONNX_LABELS_KEY,
)

METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"  # only fields from the 1.0.0 schema are used
_BUFFER_ALIGNMENT = 16  # what the TFLite converter uses for tensor data


def labels_text(contract: Contract) -> str:
    return "\n".join(contract.labels) + "\n"


# --- ONNX ------------------------------------------------------------------------------------


def add_onnx_metadata(proto: Any, contract: Contract) -> Any:
    """Set `metadata_props` `edgecnn` and `labels` on an ONNX ModelProto (replacing old ones)."""
    values = {
        ONNX_CONTRACT_KEY: contract.to_json(),
        ONNX_LABELS_KEY: "\n".join(contract.labels),
    }
    kept = [p for p in proto.metadata_props if p.key not in values]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "edgecnn"
    return proto


# --- TFLite ----------------------------------------------------------------------------------


def add_tflite_metadata(flatbuffer: bytes, contract: Contract, *, description: str) -> bytes:
    """The model with a TFLITE_METADATA entry and its associated files appended as a zip."""
    metadata = metadata_buffer(contract, description=description)
    model = _with_metadata_entry(flatbuffer, metadata)
    return _append_zip(
        model,
        {LABELS_FILE: labels_text(contract), CONTRACT_FILE: contract.to_json()},
    )


def metadata_buffer(contract: Contract, *, description: str) -> bytes:
    """A `ModelMetadata` flatbuffer describing an image classifier with the contract."""
    import flatbuffers

    from ._schema import metadata_schema_py_generated as md

    model = md.ModelMetadataT()
    model.name = "edgecnn image classifier"
    model.description = (
        f"{contract.num_classes}-class image classifier ({description}). Input: RGB "
        f"{contract.width}x{contract.height}, pixel values 0..255 normalised as "
        "(pixel - mean) / std."
    )
    model.author = "edgecnn"
    model.subgraphMetadata = [_subgraph(md, contract)]
    model.associatedFiles = [
        md.AssociatedFileT(
            name=CONTRACT_FILE,
            description="edgecnn preprocessing contract (labels, input size, resize, scaling)",
            type=md.AssociatedFileType.DESCRIPTIONS,
        )
    ]
    model.minParserVersion = MIN_PARSER_VERSION
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=METADATA_IDENTIFIER)
    return bytes(builder.Output())


def _subgraph(md: Any, contract: Contract) -> Any:
    mean = [float(m) for m in contract.mean]
    std = [float(s) for s in contract.std]

    image = md.TensorMetadataT()
    image.name = "image"
    image.description = (
        f"RGB image {contract.width}x{contract.height}, values (pixel - mean) / std "
        f"with pixel in 0..255 ({contract.resize} resize, {contract.interpolation})"
    )
    image.content = md.ContentT()
    image.content.contentPropertiesType = md.ContentProperties.ImageProperties
    image.content.contentProperties = md.ImagePropertiesT()
    image.content.contentProperties.colorSpace = md.ColorSpaceType.RGB
    normalization = md.ProcessUnitT()
    normalization.optionsType = md.ProcessUnitOptions.NormalizationOptions
    normalization.options = md.NormalizationOptionsT()
    normalization.options.mean = mean
    normalization.options.std = std
    image.processUnits = [normalization]
    image.stats = md.StatsT()
    image.stats.min = [(0.0 - m) / s for m, s in zip(mean, std)]
    image.stats.max = [(255.0 - m) / s for m, s in zip(mean, std)]

    probs = md.TensorMetadataT()
    probs.name = "probability"
    probs.description = f"Probabilities of the {contract.num_classes} labels."
    probs.content = md.ContentT()
    probs.content.contentPropertiesType = md.ContentProperties.FeatureProperties
    probs.content.contentProperties = md.FeaturePropertiesT()
    probs.stats = md.StatsT()
    probs.stats.min = [0.0]
    probs.stats.max = [1.0]
    probs.associatedFiles = [
        md.AssociatedFileT(
            name=LABELS_FILE,
            description="Labels for the classes, one a line, in output order.",
            type=md.AssociatedFileType.TENSOR_AXIS_LABELS,
        )
    ]

    subgraph = md.SubGraphMetadataT()
    subgraph.name = "image_classifier"
    subgraph.inputTensorMetadata = [image]
    subgraph.outputTensorMetadata = [probs]
    return subgraph


def _with_metadata_entry(flatbuffer: bytes, metadata: bytes) -> bytes:
    """Re-pack the model with `metadata` in a new buffer named by a TFLITE_METADATA entry.

    The model schema is TensorFlow's own generated module, which always matches the converter
    that wrote the file, so no field is dropped on the way through the object API.
    """
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    model.metadata = [m for m in (model.metadata or []) if _name(m.name) != METADATA_NAME]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata, dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    for b in model.buffers:
        b.__class__ = _aligned_buffer_class(schema)
    builder = flatbuffers.Builder(len(flatbuffer) + len(metadata) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _name(value: str | bytes | None) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else (value or "")


_ALIGNED: dict[int, type] = {}


def _aligned_buffer_class(schema: Any) -> type:
    """BufferT whose data vector is 16-byte aligned like the converter's (the generated Pack
    aligns uint8 data to 1 byte, leaving float weights misaligned)."""
    cls = _ALIGNED.get(id(schema))
    if cls is not None:
        return cls

    class AlignedBufferT(schema.BufferT):
        def Pack(self, builder):  # noqa: N802 (flatc's naming)
            if self.data is None or len(self.data) == 0:
                return super().Pack(builder)
            data = np.ascontiguousarray(self.data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(data), _BUFFER_ALIGNMENT)
            builder.head = builder.head - len(data)
            builder.Bytes[builder.head : builder.head + len(data)] = data
            vector = builder.EndVector()
            schema.BufferStart(builder)
            schema.BufferAddData(builder, vector)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    _ALIGNED[id(schema)] = AlignedBufferT
    return AlignedBufferT


def _append_zip(model: bytes, files: dict[str, str]) -> bytes:
    """Append an uncompressed zip of `files`; offsets are absolute, so both `zipfile` and the
    task libraries' zip readers find the members."""
    out = io.BytesIO(model)
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, mode="a", compression=zipfile.ZIP_STORED) as zf:
        for name, text in files.items():
            zf.writestr(name, text.encode("utf-8"))
    return out.getvalue()


# --- reading back (tests, `edgecnn profile`) -------------------------------------------------


def read_tflite_metadata(data: bytes) -> Any:
    """The `ModelMetadataT` of a .tflite file's TFLITE_METADATA entry, or None."""
    from tensorflow.lite.python import schema_py_generated as schema

    from ._schema import metadata_schema_py_generated as md

    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if _name(entry.Name()) == METADATA_NAME:
            raw = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
            if not md.ModelMetadata.ModelMetadataBufferHasIdentifier(raw, 0):
                return None
            return md.ModelMetadataT.InitFromPackedBuf(bytearray(raw), 0)
    return None
