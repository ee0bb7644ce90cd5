"""Read the labels and preprocessing contract that edgecnn writes into every model file.

No TensorFlow, no `onnx` package: a `.tflite` carries `edgecnn.json` and `labels.txt` in the zip
appended to its flatbuffer (the TFLite Metadata convention for associated files, which
`zipfile` reads), an `.onnx` carries them in `ModelProto.metadata_props` (decoded here with a
few lines of protobuf wire-format parsing), and a `.keras` archive carries them as a zip entry,
with the run directory's `edgecnn.json` beside it as a fallback.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .contract import Contract
from .errors import InputError, first_line

CONTRACT_FILE = "edgecnn.json"
LABELS_FILE = "labels.txt"
ONNX_CONTRACT_KEY = "edgecnn"
ONNX_LABELS_KEY = "labels"
MODEL_SUFFIXES = (".tflite", ".onnx", ".keras")

# Hard bounds on what a model file's metadata may make the runtime read.  edgecnn's own files
# hold two members of a few KB; 1,000 labels of 200 characters fit many times over.
MAX_METADATA_BYTES = 4 * 1024 * 1024  # one zip member or one ONNX metadata value
MAX_ZIP_MEMBERS = 256
MAX_ZIP_DIRECTORY_BYTES = 1024 * 1024
MAX_ONNX_METADATA_ENTRIES = 256
_LIMIT = f"(at most {MAX_METADATA_BYTES // (1024 * 1024)} MiB of metadata is read)"
_CHUNK = 64 * 1024
_EOCD_SIGNATURE = b"PK\x05\x06"
_EOCD_SIZE = 22
_ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_ZIP64_LOCATOR_SIZE = 20
_ZIP64_RECORD_SIGNATURE = b"PK\x06\x06"
_ZIP64_RECORD_SIZE = 56


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
            text = _read_sidecar(sidecar)
    if text is None:
        return None
    return Contract.from_json(text, source=str(path))


def _read_sidecar(path: Path) -> str:
    """A run directory's edgecnn.json, read no further than MAX_METADATA_BYTES."""
    with path.open("rb") as f:
        data = f.read(MAX_METADATA_BYTES + 1)
    if len(data) > MAX_METADATA_BYTES:
        raise InputError(f"{path}: larger than a contract can be {_LIMIT}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None


def read_zip_member(path: str | os.PathLike, name: str) -> str | None:
    """A text member of a zip inside/appended to `path`, or None if there is no such zip/member.

    Model files are downloaded and passed around, so the zip is read with hard bounds before
    anything is inflated: its central directory at most MAX_ZIP_DIRECTORY_BYTES, at most
    MAX_ZIP_MEMBERS members, stored or deflated members only (bzip2/LZMA inflate without a
    bound per read), and the member read in chunks that stop past MAX_METADATA_BYTES whatever
    size it declares.  Members are never extracted; a name that is absolute or climbs out with
    `..`, or one listed twice (readers would disagree on which copy counts), marks a crafted
    archive and the file is refused.  Raises InputError naming the file and what is wrong.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            if not _zip_directory_is_bounded(f, path):
                return None
            try:
                zf = zipfile.ZipFile(f)
            except (zipfile.BadZipFile, ValueError, EOFError):
                return None  # no zip after all: the model carries no metadata
            with zf:
                info = _find_member(zf, name, path)
                return None if info is None else _read_member(zf, info, path)
    except OSError:
        return None


def _zip_directory_is_bounded(f: BinaryIO, path: Path) -> bool:
    """False when the file has no zip end record; InputError when its central directory (what
    `zipfile` reads whole into memory, an entry object per member) is larger than any
    metadata zip needs.  Reads the end record where `zipfile` finds it, and the ZIP64 record
    that `zipfile` would take instead: the one just in front of it and the one its locator
    points at, keeping the largest claims."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    tail_len = min(size, _ZIP64_LOCATOR_SIZE + _ZIP64_RECORD_SIZE + _EOCD_SIZE + 0xFFFF)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    at = tail.rfind(_EOCD_SIGNATURE)
    if at < 0 or at + _EOCD_SIZE > len(tail):
        return False
    entries, directory = struct.unpack_from("<10xHI", tail, at)
    locator = at - _ZIP64_LOCATOR_SIZE
    if locator >= 0 and tail[locator : locator + 4] == _ZIP64_LOCATOR_SIGNATURE:
        (pointed,) = struct.unpack_from("<8xQ", tail, locator)
        before = size - tail_len + locator - _ZIP64_RECORD_SIZE
        for offset in {before, pointed}:
            big_entries, big_directory = _zip64_claims(f, offset, size)
            entries, directory = max(entries, big_entries), max(directory, big_directory)
    if directory > size - tail_len + at:
        return False  # more directory than the file holds before its end: not a zip at all
    if entries > MAX_ZIP_MEMBERS or directory > MAX_ZIP_DIRECTORY_BYTES:
        raise InputError(
            f"{path}: the zip appended to the model lists {entries} members in a "
            f"{directory}-byte directory (at most {MAX_ZIP_MEMBERS} members and "
            f"{MAX_ZIP_DIRECTORY_BYTES // 1024} KiB expected)"
        )
    return True


def _zip64_claims(f: BinaryIO, offset: int, size: int) -> tuple[int, int]:
    """(members, directory bytes) of a ZIP64 end record at `offset`; zeros if there is none."""
    if not 0 <= offset <= size - _ZIP64_RECORD_SIZE:
        return 0, 0
    f.seek(offset)
    record = f.read(_ZIP64_RECORD_SIZE)
    if record[:4] != _ZIP64_RECORD_SIGNATURE:
        return 0, 0
    entries, directory = struct.unpack_from("<32xQQ", record)
    return entries, directory


def _find_member(zf: zipfile.ZipFile, name: str, path: Path) -> zipfile.ZipInfo | None:
    """The member called `name`, after refusing archives no edgecnn writer produces."""
    infos = zf.infolist()
    if len(infos) > MAX_ZIP_MEMBERS:
        raise InputError(
            f"{path}: the zip appended to the model has {len(infos)} members "
            f"(at most {MAX_ZIP_MEMBERS} expected)"
        )
    seen: set[str] = set()
    for info in infos:
        member = info.filename
        if _is_path_like(member):
            raise InputError(
                f"{path}: the zip appended to the model has a member named {member[:100]!r}, "
                "a path outside the archive; model files hold plain file names"
            )
        if member in seen:
            raise InputError(f"{path}: the zip appended to the model lists {member!r} twice")
        seen.add(member)
    return zf.getinfo(name) if name in seen else None


def _is_path_like(member: str) -> bool:
    """An absolute name (`/x`, `\\x`, `C:x`) or one with a `..` component."""
    parts = member.replace("\\", "/").split("/")
    return member.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> str:
    """The member as UTF-8 text, inflated at most MAX_METADATA_BYTES + one chunk."""
    what = f"{path}: metadata member {info.filename!r}"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise InputError(
            f"{what} uses zip compression method {info.compress_type}; "
            "only stored or deflated members are read"
        )
    if info.file_size > MAX_METADATA_BYTES:
        raise InputError(f"{what} declares {info.file_size} bytes {_LIMIT}")
    data = bytearray()  # zipfile stops at the declared size too; this bound does not rely on it
    try:
        with zf.open(info) as member:
            while chunk := member.read(_CHUNK):
                data += chunk
                if len(data) > MAX_METADATA_BYTES:
                    raise InputError(f"{what} inflates to more than {MAX_METADATA_BYTES} bytes")
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, OSError) as e:
        raise InputError(f"{what} is corrupt ({first_line(e, limit=200)})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what} is not UTF-8 text") from None


# --- minimal protobuf reader for ONNX ModelProto.metadata_props (field 14) -------------------
#
# Every length is checked against the bytes that are really there before it is used, and
# values are zero-copy views of the file's bytes, so a hostile file costs no more memory than
# its own size however large the sizes it claims.


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it; ValueError if truncated or overlong."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            if result >> 64:
                raise ValueError("varint larger than 64 bits")
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than 10 bytes")


def protobuf_fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield (field_number, wire_type, value) for a protobuf message; value is a memoryview
    into `buf` for length-delimited fields and an int otherwise.  ValueError for anything
    truncated or malformed (field 0, groups, lengths past the end)."""
    view = memoryview(buf)
    pos = 0
    n = len(view)
    while pos < n:
        key, pos = _varint(view, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, pos = _varint(view, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > n:
                raise ValueError("truncated fixed-size field")
            value, pos = int.from_bytes(view[pos : pos + size], "little"), pos + size
        elif wire == 2:
            length, pos = _varint(view, pos)
            if length > n - pos:
                raise ValueError(f"a field of {length} bytes runs past the end")
            value, pos = view[pos : pos + length], pos + length
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield field, wire, value


class TooLarge(ValueError):
    """A well-formed field larger than the runtime reads (not a malformed file)."""


def protobuf_text(value: memoryview | bytes, what: str = "string") -> str:
    """A length-delimited field as UTF-8 text, refused past MAX_METADATA_BYTES."""
    if len(value) > MAX_METADATA_BYTES:
        raise TooLarge(f"{what} is {len(value)} bytes {_LIMIT}")
    return str(value, "utf-8")


def protobuf_int64(varint: int) -> int:
    """A varint field's value as the int64 it encodes (a negative one is a 10-byte varint)."""
    return varint - (1 << 64) if varint >= 1 << 63 else varint


def protobuf_int64s(value: memoryview | bytes) -> Iterator[int]:
    """A packed repeated int64 field's values."""
    view = memoryview(value)
    pos = 0
    while pos < len(view):
        varint, pos = _varint(view, pos)
        yield protobuf_int64(varint)


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """`metadata_props` of an ONNX model as a dict, without the onnx package.

    Raises InputError when the file is not a parsable ONNX protobuf, or when its metadata is
    larger than any edgecnn file's: more than MAX_ONNX_METADATA_ENTRIES entries, a key or
    value over MAX_METADATA_BYTES, or all of them together over twice that."""
    data = Path(path).read_bytes()
    props: dict[str, str] = {}
    saw_graph = False
    total = 0
    try:
        for field, wire, value in protobuf_fields(data):
            if field == 7 and wire == 2:
                saw_graph = True
            if field == 14 and wire == 2:
                total += len(value)
                if len(props) >= MAX_ONNX_METADATA_ENTRIES or total > 2 * MAX_METADATA_BYTES:
                    raise TooLarge(
                        f"metadata_props holds more than {MAX_ONNX_METADATA_ENTRIES} entries or "
                        f"{2 * MAX_METADATA_BYTES} bytes"
                    )
                key, text = _metadata_entry(value)
                props[key] = text
    except TooLarge as e:
        raise InputError(f"{path}: {e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a valid ONNX file ({e})") from None
    if not saw_graph:
        raise InputError(f"{path}: not a valid ONNX file (no graph)")
    return props


def _metadata_entry(entry: memoryview) -> tuple[str, str]:
    """(key, value) of a StringStringEntryProto."""
    fields = {f: v for f, w, v in protobuf_fields(entry) if w == 2}
    key = protobuf_text(fields.get(1, b""), "metadata key")
    return key, protobuf_text(fields.get(2, b""), f"metadata value {key[:40]!r}")
