"""Read the labels and preprocessing contract that edgecnn writes into every model file.

No TensorFlow, no `onnx` package: a `.tflite` carries `edgecnn.json` and `labels.txt` in the zip
appended to its flatbuffer (the TFLite Metadata convention for associated files, which
`zipfile` reads), an `.onnx` carries them in `ModelProto.metadata_props` (decoded here with a
few lines of protobuf wire-format parsing), and a `.keras` archive carries them as a zip entry,
with the run directory's `edgecnn.json` beside it as a fallback.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from .contract import Contract
from .errors import InputError

CONTRACT_FILE = "edgecnn.json"
LABELS_FILE = "labels.txt"
ONNX_CONTRACT_KEY = "edgecnn"
ONNX_LABELS_KEY = "labels"
MODEL_SUFFIXES = (".tflite", ".onnx", ".keras")


def model_kind(path: str | os.PathLike) -> str:
    """'tflite', 'onnx' or 'keras' from the file name; InputError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise InputError(
            f"{path}: unknown model type {suffix or '(no extension)'!r}; "
            f"expected one of {', '.join(MODEL_SUFFIXES)}"
        )
    return suffix[1:]


def read_contract(path: str | os.PathLike) -> Contract | None:
    """The contract embedded in a model file, or None when the file carries none."""
    path = Path(path)
    kind = model_kind(path)
    if kind == "tflite":
        text = read_zip_member(path, CONTRACT_FILE)
    elif kind == "onnx":
        text = read_onnx_metadata(path).get(ONNX_CONTRACT_KEY)
    else:
        text = read_zip_member(path, CONTRACT_FILE)
        sidecar = path.with_name(CONTRACT_FILE)
        if text is None and sidecar.is_file():
            text = sidecar.read_text(encoding="utf-8")
    if text is None:
        return None
    return Contract.from_json(text, source=str(path))


def read_zip_member(path: str | os.PathLike, name: str) -> str | None:
    """A text member of a zip inside/appended to `path`, or None if there is no such zip/member."""
    try:
        with zipfile.ZipFile(path) as zf:
            if name not in zf.namelist():
                return None
            return zf.read(name).decode("utf-8")
    except (zipfile.BadZipFile, OSError, KeyError, UnicodeDecodeError):
        return None


# --- minimal protobuf reader for ONNX ModelProto.metadata_props (field 14) -------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes):
    """Yield (field_number, wire_type, value) for a protobuf message; value is bytes for
    length-delimited fields and int otherwise."""
    pos = 0
    n = len(buf)
    while pos < n:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > n:
                raise ValueError("truncated field")
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > n:
            raise ValueError("truncated message")
        yield field, wire, value


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """`metadata_props` of an ONNX model as a dict, without the onnx package.

    Raises InputError when the file is not a parsable ONNX protobuf."""
    data = Path(path).read_bytes()
    props: dict[str, str] = {}
    saw_graph = False
    try:
        for field, wire, value in _fields(data):
            if field == 7 and wire == 2:
                saw_graph = True
            if field == 14 and wire == 2:
                entry = {f: v for f, w, v in _fields(value) if w == 2}
                key = entry.get(1, b"").decode("utf-8")
                props[key] = entry.get(2, b"").decode("utf-8")
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a valid ONNX file ({e})") from None
    if not saw_graph:
        raise InputError(f"{path}: not a valid ONNX file (no graph)")
    return props
