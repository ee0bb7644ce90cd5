"""Hostile model files, class names and images: refused in one line, in bounded memory and time.

Model files are downloaded and passed around, so every size they claim is checked before it is
believed.  The base artifacts carry metadata written by `edgecnn.export`'s own code
(`add_tflite_metadata`, `add_onnx_metadata`) on the shared runtime fixtures' models; each test
corrupts a copy.  Bombs run `edgecnn predict` in a child process whose own peak memory
must stay far below what the bomb would take, within a timeout.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from _runtime_fixtures import LABELS, artifacts_once, contract_json

from edgecnn.cli import main
from edgecnn.runtime import ImageError, InputError, load
from edgecnn.runtime.contract import MAX_CLASSES, MAX_LABEL_CHARS, Contract
from edgecnn.runtime.dataset import list_dataset, load_pixels
from edgecnn.runtime.metadata import MAX_ZIP_MEMBERS, read_contract, read_onnx_metadata
from edgecnn.runtime.preprocess import decode_image

onnx = pytest.importorskip("onnx")

GIB = 1 << 30
MAX_CHILD_RSS_MIB = 300  # `edgecnn predict` on a small .tflite peaks near 90 MiB
BOMB_SIDE = 16000  # 256 megapixels: 768 MB decoded, 1.5 GB at OpenCV's peak


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    return artifacts_once(tmp_path_factory)


@pytest.fixture(scope="module")
def product(arts, tmp_path_factory) -> dict[str, Path]:
    """A .tflite and an .onnx whose metadata `edgecnn.export` wrote, and an image to classify."""
    from edgecnn.export._metadata import add_onnx_metadata, add_tflite_metadata

    root = tmp_path_factory.mktemp("product")
    contract = Contract.from_json(contract_json())
    tflite = root / "model.tflite"
    data = add_tflite_metadata(arts["tflite_bare"].read_bytes(), contract, description="tests")
    tflite.write_bytes(data)
    proto = add_onnx_metadata(onnx.load(str(arts["onnx_bare"])), contract)
    onnx.save(proto, str(root / "model.onnx"))
    image = next((arts["data"] / "red").iterdir())
    return {"tflite": tflite, "onnx": root / "model.onnx", "image": image, "contract": contract}


def _one_line_refusal(path: Path, *texts: str, backend: str = "auto") -> str:
    """Load `path`, expect InputError: one line naming the file and containing `texts`."""
    with pytest.raises(InputError) as err:
        load(path, backend=backend)
    message = str(err.value)
    assert "\n" not in message and "\r" not in message and "\x1b" not in message, message
    assert str(path) in message, message
    for text in texts:
        assert text in message, message
    return message


def _cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# Runs the command line and records the peak resident memory of this process alone: VmHWM of
# its own address space (a child's ru_maxrss would include the test process it was forked from).
_PEAK_PROBE = """
import sys
from edgecnn.cli import main
try:
    code = main(sys.argv[2:])
finally:
    with open("/proc/self/status") as status, open(sys.argv[1], "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
sys.exit(code)
"""


def _run_bounded(args: list[str], timeout: float = 120.0) -> tuple[int, str, str, int]:
    """(exit code, stdout, stderr, peak RSS in MiB) of `edgecnn ARGS` in a child process that
    must finish within `timeout` seconds."""
    if not Path("/proc/self/status").exists():
        pytest.skip("reads the peak RSS from /proc (Linux)")
    with tempfile.TemporaryDirectory() as tmp:
        peak = Path(tmp) / "peak"
        proc = subprocess.run(
            [sys.executable, "-c", _PEAK_PROBE, str(peak), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return proc.returncode, proc.stdout, proc.stderr, int(peak.read_text()) // 1024


def _assert_bounded_refusal(args: list[str], *texts: str) -> str:
    code, out, err, rss = _run_bounded(args)
    assert code == 2, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"edgecnn {args[0]}: error: "), err
    for text in texts:
        assert text in lines[0], lines[0]
    assert rss < MAX_CHILD_RSS_MIB, f"peak RSS {rss} MiB"
    return lines[0]


# --- zips appended to .tflite files -------------------------------------------------------------


def _flatbuffer(path: Path) -> bytes:
    """The model without its appended zip (whose offsets are absolute)."""
    data = path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return data[: min(info.header_offset for info in zf.infolist())]


def _raw_zip(
    members: list[tuple[str, bytes, int, int]], *, base: int, comment: bytes = b""
) -> bytes:
    """A zip of (name, data as stored, compression method, declared size) members whose
    offsets count from `base`, where it will sit in the file.  Hand-written so that declared
    sizes can lie, which `zipfile` never writes."""
    local = central = b""
    for name, data, method, declared in members:
        raw = name.encode()
        crc = zlib.crc32(data) if method == zipfile.ZIP_STORED else 0
        offset = base + len(local)
        local += struct.pack(
            "<4s5H3I2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(data), declared, len(raw), 0
        )
        local += raw + data
        central += struct.pack(
            "<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, len(data), declared,
            len(raw), 0, 0, 0, 0, 0, offset,
        )  # fmt: skip
        central += raw
    count = len(members)
    end = struct.pack(
        "<4s4H2IH", b"PK\x05\x06", 0, 0, count, count, len(central), base + len(local), len(comment)
    )
    return local + central + end + comment


def _stored(name: str, data: bytes) -> tuple[str, bytes, int, int]:
    """A stored member for `_raw_zip`, declaring its true size."""
    return name, data, zipfile.ZIP_STORED, len(data)


def _deflate_zeros(size: int) -> bytes:
    """A raw deflate stream of `size` zero bytes in about size/1000 bytes: one compressed
    MiB block (independent after a full flush) repeated."""
    mib = 1 << 20
    assert size % mib == 0
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(bytes(mib)) + comp.flush(zlib.Z_FULL_FLUSH)
    return block * (size // mib) + comp.flush()


def _tflite_with_zip(product, tmp: Path, name: str, build) -> Path:
    """The product .tflite with its zip replaced by `build(base_offset)`."""
    model = _flatbuffer(product["tflite"])
    path = tmp / name
    path.write_bytes(model + build(len(model)))
    return path


def _zipfile_bytes(write, base: int) -> bytes:
    """What `write(zf)` puts in a zip, with offsets counted from `base` like edgecnn's own."""
    buf = io.BytesIO(b"\0" * base)
    with zipfile.ZipFile(buf, "a") as zf:
        write(zf)
    return buf.getvalue()[base:]


def _members(zf: zipfile.ZipFile, members: dict[str, str], **kwargs) -> None:
    for name, text in members.items():
        zf.writestr(name, text, **kwargs)


def _good_members() -> dict[str, str]:
    return {"edgecnn.json": contract_json(), "labels.txt": "\n".join(LABELS) + "\n"}


ZIP_BOMBS = {
    # a member that really inflates to 2 GiB, and says so
    "honest-bomb": (
        lambda base: _raw_zip([("edgecnn.json", _deflate_zeros(2 * GIB), 8, 2 * GIB)], base=base),
        "declares 2147483648 bytes",
    ),
    # the same 2 GiB behind a declared size of 1 KiB
    "lying-bomb": (
        lambda base: _raw_zip([("edgecnn.json", _deflate_zeros(2 * GIB), 8, 1024)], base=base),
        "edgecnn.json' is corrupt",
    ),
}


@pytest.mark.parametrize("case", sorted(ZIP_BOMBS))
def test_zip_bomb_in_a_tflite_is_refused_in_bounded_memory(product, tmp_path, case):
    build, text = ZIP_BOMBS[case]
    path = _tflite_with_zip(product, tmp_path, f"{case}.tflite", build)
    assert path.stat().st_size < 4 << 20  # a few MB on disk
    _one_line_refusal(path, text)
    _assert_bounded_refusal(["predict", str(path), str(product["image"])], str(path), text)


def _zip64_claim(base: int) -> bytes:
    """A plain zip whose ZIP64 end record (which `zipfile` prefers) claims 10**9 members."""
    plain = _raw_zip([_stored("edgecnn.json", contract_json().encode())], base=base)
    end = plain.rindex(b"PK\x05\x06")
    directory = plain.rindex(b"PK\x01\x02")
    record = struct.pack(
        "<4sQ2H2I4Q",
        b"PK\x06\x06",
        44,
        45,
        45,
        0,
        0,
        10**9,
        10**9,
        end - directory,
        base + directory,
    )
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, base + end, 1)
    return plain[:end] + record + locator + plain[end:]


ABSURD_ZIPS = {
    "thousands-of-members": (
        lambda base: _zipfile_bytes(
            lambda zf: _members(zf, {f"m{i:05d}.txt": "x" for i in range(5000)}), base
        ),
        "5000 members",
    ),
    "zip64-record-claims": (_zip64_claim, "1000000000 members"),
    "parent-member-name": (
        lambda base: _zipfile_bytes(
            lambda zf: _members(zf, {**_good_members(), "../x": "x"}), base
        ),
        "'../x', a path outside the archive",
    ),
    "absolute-member-name": (
        lambda base: _zipfile_bytes(
            lambda zf: _members(zf, {"/etc/cron.d/x": "x", **_good_members()}), base
        ),
        "'/etc/cron.d/x', a path outside",
    ),
    "windows-member-name": (
        lambda base: _zipfile_bytes(lambda zf: _members(zf, {"C:\\x": "x"}), base),
        "a path outside",
    ),
    "member-listed-twice": (
        lambda base: _raw_zip(
            [_stored("edgecnn.json", b"{}"), _stored("edgecnn.json", contract_json().encode())],
            base=base,
        ),
        "lists 'edgecnn.json' twice",
    ),
    "bzip2-member": (
        lambda base: _zipfile_bytes(
            lambda zf: _members(zf, _good_members(), compress_type=zipfile.ZIP_BZIP2), base
        ),
        "compression method 12",
    ),
    "nested-zip-as-contract": (
        lambda base: _raw_zip(
            [_stored("edgecnn.json", _raw_zip([_stored("a", b"x")], base=0))], base=base
        ),
        "'edgecnn.json' is not UTF-8 text",  # read as the text it should be, never unzipped
    ),
    "contract-not-utf8": (
        lambda base: _zipfile_bytes(lambda zf: zf.writestr("edgecnn.json", b"\xff\xfe{}"), base),
        "is not UTF-8 text",
    ),
}


@pytest.mark.parametrize("case", sorted(ABSURD_ZIPS))
def test_absurd_appended_zip_is_refused_in_one_line(product, tmp_path, case):
    build, text = ABSURD_ZIPS[case]
    path = _tflite_with_zip(product, tmp_path, f"{case}.tflite", build)
    _one_line_refusal(path, text)


def test_cli_refuses_an_absurd_zip_with_exit_2(product, tmp_path, capsys):
    build, text = ABSURD_ZIPS["thousands-of-members"]
    path = _tflite_with_zip(product, tmp_path, "many.tflite", build)
    code, out, err = _cli(capsys, ["predict", str(path), str(product["image"])])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and str(path) in err and text in err
    assert f"at most {MAX_ZIP_MEMBERS} members" in err


def test_a_long_zip_comment_is_ignored(product, tmp_path):
    """The format bounds a comment to 64 KiB and nothing reads it: the file loads as usual."""

    def commented(zf: zipfile.ZipFile) -> None:
        _members(zf, _good_members())
        zf.comment = b"<script>\x1b[2J" * (0xFFFF // 12)

    def build(base: int) -> bytes:
        return _zipfile_bytes(commented, base)

    assert load(_tflite_with_zip(product, tmp_path, "comment.tflite", build)).labels == LABELS


def test_an_oversized_contract_beside_a_keras_file_is_refused(tmp_path):
    """A run directory's edgecnn.json (the .keras fallback) is read no further than the cap."""
    with zipfile.ZipFile(tmp_path / "model.keras", "w") as zf:
        zf.writestr("config.json", "{}")
    (tmp_path / "edgecnn.json").write_bytes(b" " * (5 << 20))
    with pytest.raises(InputError, match="edgecnn.json: larger than a contract can be"):
        read_contract(tmp_path / "model.keras")


# --- the TFLITE_METADATA flatbuffer -------------------------------------------------------------


def _metadata_buffer_at(data: bytes, contract: Contract) -> int:
    from edgecnn.export._metadata import metadata_buffer

    at = data.find(metadata_buffer(contract, description="tests"))
    assert at > 0
    return at


def test_runtime_never_parses_the_tflite_metadata_flatbuffer(product, tmp_path):
    """Labels and contract come from the appended zip; a TFLITE_METADATA buffer whose vectors
    and strings claim gigabytes is opaque bytes to the runtime and to LiteRT."""
    data = bytearray(product["tflite"].read_bytes())
    at = _metadata_buffer_at(bytes(data), product["contract"])
    end = at + len(_metadata_bytes(product["contract"]))
    data[at + 8 : end] = b"\xff" * (end - at - 8)  # every offset and length 0xFFFFFFFF
    path = tmp_path / "inner.tflite"
    path.write_bytes(bytes(data))
    clf = load(path)
    assert clf.labels == LABELS
    assert clf.predict(product["image"], top_k=1)[0][0] == "red"


def _metadata_bytes(contract: Contract) -> bytes:
    from edgecnn.export._metadata import metadata_buffer

    return metadata_buffer(contract, description="tests")


def test_tflite_buffer_claiming_2_gib_is_refused_by_the_flatbuffer_verifier(product, tmp_path):
    data = bytearray(product["tflite"].read_bytes())
    at = _metadata_buffer_at(bytes(data), product["contract"])
    struct.pack_into("<I", data, at - 4, 2 * GIB - 1)  # the buffer's byte-vector length
    path = tmp_path / "outer.tflite"
    path.write_bytes(bytes(data))
    _one_line_refusal(path, "cannot load TFLite model")
    _assert_bounded_refusal(["predict", str(path), str(product["image"])], "not a valid Flatbuffer")


# --- ONNX metadata_props and the wire format -----------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _ld(field: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _prop(key: str, value: bytes) -> bytes:
    """A ModelProto.metadata_props entry (field 14)."""
    return _ld(14, _ld(1, key.encode()) + _ld(2, value))


BAD_WIRE = {
    "metadata-value-over-4-mib": (_prop("notes", b"x" * (5 << 20)), "'notes' is 5242880 bytes"),
    "thousands-of-entries": (b"".join(_prop(f"k{i}", b"v") for i in range(3000)), "256 entries"),
    "metadata-over-8-mib-in-all": (
        b"".join(_prop(f"k{i}", b"x" * (3 << 20)) for i in range(3)),
        "8388608 bytes",
    ),
    "truncated-varint": (b"\x72\xff\xff", "truncated varint"),
    "overlong-varint": (b"\x72" + b"\x80" * 11 + b"\x01", "longer than 10 bytes"),
    "varint-over-64-bits": (b"\x08" + b"\xff" * 9 + b"\x7f", "larger than 64 bits"),
    "length-past-the-end": (b"\x72" + _varint(1 << 40) + b"abc", "runs past the end"),
    "truncated-fixed64": (b"\x09\x01\x02", "truncated fixed-size field"),
    "group-wire-type": (b"\x73", "unsupported wire type 3"),
    "field-zero": (b"\x02\x00", "field number 0"),
}


@pytest.mark.parametrize("case", sorted(BAD_WIRE))
def test_onnx_with_absurd_or_malformed_metadata_is_refused(product, tmp_path, case):
    tail, text = BAD_WIRE[case]
    path = tmp_path / f"{case}.onnx"
    path.write_bytes(product["onnx"].read_bytes() + tail)
    with pytest.raises(InputError, match=re.escape(text)):
        read_onnx_metadata(path)
    for backend in ("auto", "opencv"):
        _one_line_refusal(path, text, backend=backend)


def test_cli_refuses_an_oversized_onnx_metadata_value_with_exit_2(product, tmp_path, capsys):
    path = tmp_path / "big.onnx"
    path.write_bytes(product["onnx"].read_bytes() + _prop("edgecnn", b" " * (6 << 20)))
    code, out, err = _cli(capsys, ["predict", str(path), str(product["image"])])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "metadata value 'edgecnn' is 6291456 bytes" in err


def test_subgraphs_nested_too_deep_are_refused(tmp_path):
    """If/Loop bodies are walked for external data with a bounded depth."""
    graph = b""
    for _ in range(40):  # graph { node { attribute { g: graph } } }
        graph = _ld(1, _ld(5, _ld(6, graph)))
    path = tmp_path / "deep.onnx"
    path.write_bytes(_ld(7, graph))
    _one_line_refusal(path, "nested more than 16 deep")


# --- ONNX external data --------------------------------------------------------------------------


def _external(product, folder: Path, location: str | None = None) -> Path:
    """The product .onnx saved with its weights in `folder/weights.bin`, then every location
    rewritten to `location`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    proto = onnx.load(str(product["onnx"]))
    onnx.save(proto, str(path), save_as_external_data=True, location="weights.bin")
    if location is not None:
        proto = onnx.load(str(path), load_external_data=False)
        for tensor in proto.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save(proto, str(path))
    return path


@pytest.mark.parametrize("backend", ["onnx", "opencv"])
def test_external_data_inside_the_model_folder_is_allowed(product, tmp_path, backend):
    path = _external(product, tmp_path / "m")
    assert (tmp_path / "m" / "weights.bin").stat().st_size > 1000
    clf = load(path, backend=backend)
    assert clf.labels == LABELS
    assert clf.predict(product["image"], top_k=1)[0][0] == "red"


@pytest.mark.parametrize("backend", ["auto", "opencv"])
def test_external_data_outside_the_model_folder_is_refused(product, tmp_path, backend):
    path = _external(product, tmp_path / "m", "../outside.bin")
    (tmp_path / "m" / "weights.bin").rename(tmp_path / "outside.bin")
    _one_line_refusal(path, "'../outside.bin' points outside the model's folder", backend=backend)


@pytest.mark.parametrize(
    ("location", "text"),
    [
        ("/etc/passwd", "'/etc/passwd' is an absolute path"),
        ("../../../../../../etc/passwd", "points outside the model's folder"),
        ("C:\\Windows\\win.ini", "is an absolute path"),
        ("*/_ORT_MEM_ADDR_/*", "is not a file name"),
        ("not-there.bin", "is missing from the model's folder"),
    ],
)
def test_external_data_locations_that_are_refused(product, tmp_path, location, text):
    path = _external(product, tmp_path / "m", location)
    _one_line_refusal(path, text)


def test_external_data_through_a_symlink_out_of_the_folder_is_refused(product, tmp_path):
    path = _external(product, tmp_path / "m")
    (tmp_path / "m" / "weights.bin").rename(tmp_path / "real.bin")
    (tmp_path / "m" / "weights.bin").symlink_to(tmp_path / "real.bin")
    _one_line_refusal(path, "'weights.bin' points outside the model's folder")


def test_external_data_in_a_node_attribute_is_checked_too(product, tmp_path):
    """Not only initializers: a Constant node's tensor can point at a file as well."""
    folder = tmp_path / "m"
    path = _external(product, folder)
    proto = onnx.load(str(path), load_external_data=False)
    tensor = onnx.helper.make_tensor("c", onnx.TensorProto.FLOAT, [1], [0.0])
    tensor.ClearField("float_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "/etc/shadow"), ("offset", "0"), ("length", "4")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    proto.graph.node.append(onnx.helper.make_node("Constant", [], ["unused"], value=tensor))
    onnx.save(proto, str(path))
    _one_line_refusal(path, "'/etc/shadow' is an absolute path", backend="opencv")


# --- ONNX graphs that do not hold together -----------------------------------------------------

_PLACEHOLDER = "edgecnn-placeholder-name"
_NOT_UTF8_OP = b"Dequant\xf3\x23\xf4\xcbLinear"


def _onnx_with_raw_text(product, path: Path, field: str, raw: bytes) -> Path:
    """The product .onnx with its last node's first input or its op type (`field`) set to the
    bytes `raw`, as in a corrupted download: the graph then reads a tensor nothing makes, or
    runs an operator nobody knows. `raw` may be what a protobuf writer refuses (not UTF-8,
    control characters): it replaces a placeholder in the written bytes, padded with '_' to
    the placeholder's length so the file's lengths stay right."""
    raw = raw.ljust(len(_PLACEHOLDER), b"_")
    assert len(raw) == len(_PLACEHOLDER)
    proto = onnx.load(str(product["onnx"]))
    node = proto.graph.node[-1]
    if field == "input":
        node.input[0] = _PLACEHOLDER
    else:
        node.op_type = _PLACEHOLDER
    data = proto.SerializeToString()
    assert data.count(_PLACEHOLDER.encode()) == 1
    path.write_bytes(data.replace(_PLACEHOLDER.encode(), raw))
    return path


def _onnx_with_window(product, path: Path, attribute: str, value, *, drop=()) -> Path:
    """The product .onnx with its first conv's `attribute` set to `value` (and the attributes
    named in `drop` removed)."""
    proto = onnx.load(str(product["onnx"]))
    conv = next(node for node in proto.graph.node if node.op_type == "Conv")
    for old in [a for a in conv.attribute if a.name in (attribute, *drop)]:
        conv.attribute.remove(old)
    conv.attribute.append(onnx.helper.make_attribute(attribute, value))
    onnx.save(proto, str(path))
    return path


def _onnx_with_unknown_auto_pad(product, path: Path) -> Path:
    """A conv whose `auto_pad` is no padding mode: ONNX Runtime finds out only when it builds
    the kernel, and logs an error line of its own before raising."""
    return _onnx_with_window(product, path, "auto_pad", "SIDEWAYS", drop=("pads",))


BROKEN_GRAPHS = {
    "unknown-input": lambda p, path: _onnx_with_raw_text(p, path, "input", b"no-such-tensor"),
    "input-not-utf8": lambda p, path: _onnx_with_raw_text(p, path, "input", b"bad-\xf2\x28\xa1"),
    "input-with-terminal-codes": lambda p, path: _onnx_with_raw_text(
        p, path, "input", b"\x1b[2J\x1b]0;pwned\x07"
    ),
    "unknown-auto-pad": _onnx_with_unknown_auto_pad,
}


@pytest.mark.parametrize("case", BROKEN_GRAPHS)
@pytest.mark.parametrize("backend", ["auto", "onnx", "opencv"])
def test_onnx_whose_graph_does_not_hold_together(product, tmp_path, capfd, case, backend):
    """One line from edgecnn and nothing from the libraries: on such files ONNX Runtime
    print()s a fallback banner to stdout and logs errors to stderr, and OpenCV's importer logs
    the file's node names to stderr, byte for byte."""
    path = BROKEN_GRAPHS[case](product, tmp_path / "model.onnx")
    capfd.readouterr()
    message = _one_line_refusal(path, backend=backend)
    assert capfd.readouterr() == ("", "")
    if backend == "onnx":
        assert "cannot load ONNX model" in message, message


def test_node_text_is_checked_in_subgraphs_and_functions(tmp_path):
    """An If's branch and a model-local function hold nodes too; OpenCV reads both."""
    from edgecnn.runtime.backends._onnxproto import check_nodes

    h = onnx.helper
    x = h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    cond = h.make_tensor_value_info("c", onnx.TensorProto.BOOL, [])
    branch = h.make_graph([h.make_node(_PLACEHOLDER, ["x"], ["y"])], "branch", [], [y])
    local = h.make_function("local", "Fn", ["a"], ["b"], [h.make_node("Relu", ["a"], ["b"])], [])
    cases = {
        "subgraph": h.make_model(
            h.make_graph(
                [h.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)],
                "g",
                [cond, x],
                [y],
            )
        ),
        "function": h.make_model(
            h.make_graph([h.make_node("Fn", ["x"], ["y"], domain="local")], "g", [x], [y]),
            functions=[local],
        ),
    }
    cases["function"].functions[0].node[0].op_type = _PLACEHOLDER
    for name, model in cases.items():
        data = model.SerializeToString()
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(data)
        check_nodes(path)  # the placeholder is text
        path.write_bytes(
            data.replace(_PLACEHOLDER.encode(), _NOT_UTF8_OP.ljust(len(_PLACEHOLDER), b"_"))
        )
        with pytest.raises(InputError, match="a node's op type is not UTF-8 text"):
            check_nodes(path)


def _op(p, path):
    return _onnx_with_raw_text(p, path, "op_type", _NOT_UTF8_OP)


# Files that crashed the process (OpenCV: its Python binding on an error message that is not
# UTF-8, a division by a zero stride) or wrote to the console: run in a child process, so a
# crash fails one test only.  `auto` stops at ONNX Runtime's verdict on a malformed file.
CRASHERS = [
    (_op, "opencv", "not a valid ONNX file (a node's op type is not UTF-8 text)", "op-opencv"),
    (_op, "auto", "cannot load ONNX model ('utf-8' codec can't decode", "op-auto"),
    (
        lambda p, path: _onnx_with_raw_text(p, path, "input", b"bad-\xf2\x28\xa1"),
        "opencv",
        "not a valid ONNX file (a node's input is not UTF-8 text)",
        "input-opencv",
    ),
    (
        lambda p, path: _onnx_with_raw_text(p, path, "input", b"\x1b[2J\x1b]0;pwned\x07"),
        "auto",
        "Node input '\\x1b[2J\\x1b]0;pwned\\x07_",
        "escapes-auto",
    ),
    (
        lambda p, path: _onnx_with_window(p, path, "strides", [1, 0]),
        "opencv",
        "not a valid ONNX file (a Conv node has strides [1, 0])",
        "stride-opencv",
    ),
    (
        lambda p, path: _onnx_with_window(p, path, "strides", [1, 0]),
        "auto",
        "strides must only contain positive values",
        "stride-auto",
    ),
    (
        lambda p, path: _onnx_with_window(p, path, "pads", [0, 0, -1, 0]),
        "opencv",
        "a Conv node has pads [0, 0, -1, 0]",
        "pads-opencv",
    ),
    (
        lambda p, path: _onnx_with_window(p, path, "group", 0),
        "opencv",
        "a Conv node has group [0]",
        "group-opencv",
    ),
]


@pytest.mark.parametrize(
    ("build", "backend", "text"), [pytest.param(*case[:3], id=case[3]) for case in CRASHERS]
)
def test_cli_on_an_onnx_that_crashed_a_library(product, tmp_path, build, backend, text):
    path = build(product, tmp_path / "model.onnx")
    proc = subprocess.run(
        [sys.executable, "-m", "edgecnn", "predict", "--backend", backend, str(path)]
        + [str(product["image"])],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == b""
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"edgecnn predict: error: {path}: "), lines
    assert "\x1b" not in lines[0] and text in lines[0], lines


def test_onnx_that_loads_but_cannot_run_is_one_line(product, tmp_path, capfd):
    """A conv fed a weight of the wrong rank passes ONNX Runtime's checks at load and fails
    only when it runs: one line then too."""
    from onnx import numpy_helper

    proto = onnx.load(str(product["onnx"]))
    weights = {t.name: t for t in proto.graph.initializer}
    conv = next(n for n in proto.graph.node if n.op_type == "Conv" and n.input[1] in weights)
    flat = np.ones(weights[conv.input[1]].dims[0], np.float32)
    proto.graph.initializer.append(numpy_helper.from_array(flat, "flat_weight"))
    conv.input[1] = "flat_weight"
    path = tmp_path / "model.onnx"
    onnx.save(proto, str(path))

    clf = load(path, backend="onnx")
    capfd.readouterr()
    with pytest.raises(InputError) as err:
        clf.predict(product["image"])
    message = str(err.value)
    assert (
        message.startswith(f"{path}: ONNX Runtime cannot run this model (") and "\n" not in message
    )
    assert capfd.readouterr() == ("", "")
    code = main(["predict", str(path), str(product["image"])])
    out, err_text = capfd.readouterr()
    assert code == 2 and out == "" and err_text.count("\n") == 1, err_text


def test_packed_int64s_are_read_with_their_sign():
    from edgecnn.runtime.metadata import protobuf_int64s

    values = [0, 1, 300, -1, -(1 << 63), (1 << 63) - 1]
    packed = b"".join(_varint(v & ((1 << 64) - 1)) for v in values)  # int64 as protobuf has it
    assert list(protobuf_int64s(packed)) == values
    with pytest.raises(ValueError):
        list(protobuf_int64s(b"\x80"))  # a varint cut short


# --- class names ---------------------------------------------------------------------------------


def _onnx_with_labels(product, path: Path, labels) -> Path:
    proto = onnx.load(str(product["onnx"]))
    for entry in proto.metadata_props:
        if entry.key == "edgecnn":
            entry.value = contract_json(labels=labels)
    onnx.save(proto, str(path))
    return path


HTML_LABELS = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "red & <b>")


def test_html_in_class_names_is_kept_as_text_and_json_escaped(product, tmp_path, capsys):
    path = _onnx_with_labels(product, tmp_path / "html.onnx", HTML_LABELS)
    assert load(path).labels == HTML_LABELS
    code, out, _ = _cli(capsys, ["predict", str(path), str(product["image"]), "--json"])
    assert code == 0
    assert tuple(json.loads(out)["labels"]) == HTML_LABELS


CONTROL_LABELS = {
    "escape-sequence": "clear\x1b[2J",
    "carriage-return": "fake\rreal",
    "nul": "a\x00b",
    "newline": "two\nlines",
    "c1-csi": "c1\x9b2J",
    "bidi-override": "abc\u202etxt.exe",
    "line-separator": "a\u2028b",
}


@pytest.mark.parametrize("case", sorted(CONTROL_LABELS))
def test_control_characters_in_class_names_are_refused(product, tmp_path, capsys, case):
    label = CONTROL_LABELS[case]
    path = _onnx_with_labels(product, tmp_path / f"{case}.onnx", ("blue", label, "red"))
    message = _one_line_refusal(path, "label 1", "printable text")
    assert label not in message  # shown escaped: the terminal is not rewritten
    code, out, err = _cli(capsys, ["predict", str(path), str(product["image"])])
    assert code == 2 and out == "" and err.count("\n") == 1
    assert all(c.isprintable() for c in err.rstrip("\n"))


@pytest.mark.parametrize(
    ("labels", "text"),
    [
        (("blue", "g" * (MAX_LABEL_CHARS + 1), "red"), f"is {MAX_LABEL_CHARS + 1} characters long"),
        (tuple(f"c{i}" for i in range(MAX_CLASSES + 1)), f"more than the {MAX_CLASSES} supported"),
        (("only-one",), "at least 2 labels"),
    ],
    ids=["long-label", "too-many-labels", "one-label"],
)
def test_absurd_label_lists_are_refused(product, tmp_path, labels, text):
    _one_line_refusal(_onnx_with_labels(product, tmp_path / "l.onnx", labels), text)


def test_labels_must_match_the_tflite_outputs(product, tmp_path):
    path = _tflite_with_zip(
        product,
        tmp_path,
        "four.tflite",
        lambda base: _zipfile_bytes(
            lambda zf: zf.writestr("edgecnn.json", contract_json(labels=(*LABELS, "x"))), base
        ),
    )
    _one_line_refusal(path, "lists 4 labels but the model has 3 outputs")


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({"height": 100000, "width": 100000}, "too large (at most 4096 pixels a side)"),
        ({"mean": [0.0] * 1000}, "mean and std need 3 values each"),
        ({"std": [0.0, 1.0, 1.0]}, "std non-zero"),
        ({"labels": "abc"}, "labels must be a list"),
        ({"height": 1e400}, "not a valid edgecnn contract"),
    ],
)
def test_contracts_with_absurd_values_are_refused(product, tmp_path, change, text):
    contract = {**json.loads(contract_json()), **change}
    proto = onnx.load(str(product["onnx"]))
    for entry in proto.metadata_props:
        if entry.key == "edgecnn":
            entry.value = json.dumps(contract)
    path = tmp_path / "c.onnx"
    onnx.save(proto, str(path))
    _one_line_refusal(path, text)


def test_deeply_nested_contract_json_is_refused(product, tmp_path):
    path = tmp_path / "deep.onnx"
    path.write_bytes(product["onnx"].read_bytes() + _prop("edgecnn", b"[" * 200_000))
    _one_line_refusal(path, "nested too deeply")


def test_overlay_draws_hostile_names_printable_and_cut_to_the_frame():
    from edgecnn.runtime.live.loop import Result
    from edgecnn.runtime.live.overlay import draw, fit

    long_name = "<script>\u732b" + "W" * 5000
    frame = np.zeros((240, 320, 3), np.uint8)
    result = Result(
        frame=frame, index=0, seq=0, label=long_name, score=0.9,
        topk=((long_name, 0.9), ("\x1b[2J\r\x00", 0.1)), probs=np.zeros(2, np.float32),
        uncertain=False, frame_age_ms=0.0, timings={"total": 1.0, "inference": 0.5},
        time=0.0, fps=30.0,
    )  # fmt: skip
    img = draw(result)
    assert img.shape == frame.shape and not np.array_equal(img, frame)
    text = fit(long_name, 300, 0.5)
    assert text.startswith("<script>?W") and text.endswith("...")
    assert cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)[0][0] <= 300
    assert fit("\x1b[2J\r\x00", 300, 0.5) == "?[2J??"


def test_a_thousand_classes_give_a_bounded_confusion_picture_and_printout():
    """Names and counts in every cell would make a 28000-pixel square (2.4 GB) for 1000
    classes: above 100 classes the picture is a plain heat map and the printout skips it."""
    from edgecnn.runtime.metrics import classification_report, format_report, render_confusion

    labels = [f"class {i}" for i in range(MAX_CLASSES)]
    truth = np.arange(3 * MAX_CLASSES) % MAX_CLASSES
    report = classification_report(truth, np.roll(truth, 1), labels)
    img = render_confusion(report["confusion_matrix"], labels, title="many")
    assert max(img.shape[:2]) <= 1100
    text = format_report(report)
    assert len(text.splitlines()) < MAX_CLASSES + 10 and "too many to print" in text


def test_html_report_escapes_class_names(tmp_path):
    from edgecnn.report import _Page

    run = tmp_path / "run"
    run.mkdir()
    metrics = {"per_class": {name: {"precision": 1.0, "recall": 1.0, "support": 3}
                             for name in HTML_LABELS}}  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    page = _Page(tmp_path, {"train": {"run": str(run), "epochs_run": 1}})
    html = page._training()
    assert not any(label in html for label in HTML_LABELS)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in html


# --- decompression-bomb images --------------------------------------------------------------------


def _png_bomb(side: int) -> bytes:
    """A valid RGB PNG of side x side black pixels in about side*side*3/1000 bytes."""
    row = bytes(1 + 3 * side)  # filter byte + pixels
    rows = 64
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(row * rows) + comp.flush(zlib.Z_FULL_FLUSH)
    n = side * len(row)
    adler = (n % 65521) << 16 | 1  # adler-32 of n zero bytes
    body = b"\x78\xda" + block * (side // rows) + comp.flush() + struct.pack(">I", adler)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _jpeg_bomb(side: int) -> bytes:
    """A 16x16 JPEG whose frame header says side x side: libjpeg fills the rest in grey."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes())
    struct.pack_into(">HH", data, data.index(b"\xff\xc0") + 5, side, side)
    return bytes(data)


def _bmp_bomb(side: int) -> bytes:
    """An RLE8 BMP whose pixels are one 'end of bitmap' code."""
    pixels, palette = b"\x00\x01", bytes(4 * 256)
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    head = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
    return head + info + palette + pixels


def _gif_bomb(screen: int, frame: int) -> bytes:
    """A GIF with a screen x screen canvas and one frame x frame image."""
    head = b"GIF89a" + struct.pack("<HHBBB", screen, screen, 0x80, 0, 0) + bytes(3) + b"\xff" * 3
    extension = b"\x21\xf9\x04\x00\x00\x00\x00\x00"  # graphic control, before the frame
    image = b"\x2c" + struct.pack("<4HB", 0, 0, frame, frame, 0) + b"\x02\x02\x44\x01\x00"
    return head + extension + image + b"\x3b"


def _webp_bomb(side: int) -> bytes:
    """A lossless 16x16 WebP whose header says side x side."""
    ok, buf = cv2.imencode(
        ".webp", np.zeros((16, 16, 3), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101]
    )
    data = bytearray(buf.tobytes())
    assert data[12:16] == b"VP8L"
    bits = struct.unpack_from("<I", data, 21)[0] & ~((1 << 28) - 1)
    struct.pack_into("<I", data, 21, bits | (side - 1) | (side - 1) << 14)
    return bytes(data)


def _tiff_bomb(side: int, order: str = "<", *, tile: int = 0) -> bytes:
    """A deflated 8-bit grey TIFF of side x side (or of 64x64 in tiles of tile x tile)."""
    strip = zlib.compress(bytes(64 * side), 9)
    width = 64 if tile else side
    tags = [(256, 4, width), (257, 4, width), (258, 3, 8), (259, 3, 8), (262, 3, 1), (273, 4, 0),
            (277, 3, 1), (278, 4, 64), (279, 4, len(strip))]  # fmt: skip
    if tile:
        tags += [(322, 4, tile), (323, 4, tile)]
    data_at = 8 + 2 + 12 * len(tags) + 4
    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    out = magic + struct.pack(order + "IH", 8, len(tags))
    for tag, kind, value in tags:
        value = data_at if tag == 273 else value
        fmt = "HHIHH" if kind == 3 else "HHII"
        out += struct.pack(order + fmt, tag, kind, 1, value, *([0] if kind == 3 else []))
    return out + bytes(4) + strip


IMAGE_BOMBS = {
    "png": lambda: _png_bomb(BOMB_SIDE),
    "jpg": lambda: _jpeg_bomb(BOMB_SIDE),
    "bmp": lambda: _bmp_bomb(BOMB_SIDE),
    "gif-screen": lambda: _gif_bomb(BOMB_SIDE, 1),
    "gif-frame": lambda: _gif_bomb(16, BOMB_SIDE),
    "webp": lambda: _webp_bomb(BOMB_SIDE),
    "tiff": lambda: _tiff_bomb(BOMB_SIDE),
    "tiff-big-endian": lambda: _tiff_bomb(BOMB_SIDE, ">"),
    "tiff-tiles": lambda: _tiff_bomb(BOMB_SIDE, tile=BOMB_SIDE),
}
_EXT = {"gif-screen": ".gif", "gif-frame": ".gif", "tiff-big-endian": ".tif", "tiff-tiles": ".tif"}


def _bomb_file(folder: Path, case: str) -> Path:
    path = folder / f"bomb_{case}{_EXT.get(case, '.' + case)}"
    path.write_bytes(IMAGE_BOMBS[case]())
    return path


@pytest.mark.parametrize("case", sorted(IMAGE_BOMBS))
def test_image_bombs_are_refused_before_decoding(tmp_path, case):
    path = _bomb_file(tmp_path, case)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(ImageError) as err:
        decode_image(path.read_bytes(), source=str(path))
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert f"of {BOMB_SIDE}x{BOMB_SIDE} pixels is larger than the 100 megapixels" in message


@pytest.mark.parametrize("case", ["png", "jpg", "bmp", "gif-screen", "webp"])
def test_predict_refuses_an_image_bomb_in_bounded_memory(product, tmp_path, case):
    """Each of these decodes to 16000x16000 (1.5 GB at OpenCV's peak) when not checked first."""
    path = _bomb_file(tmp_path, case)
    args = ["predict", str(product["tflite"]), str(product["image"]), str(path)]
    _assert_bounded_refusal(args, str(path), "larger than the 100 megapixels")


def test_dataset_skips_bombs_and_reports_them(arts, tmp_path):
    root = tmp_path / "data"
    for label in LABELS:
        (root / label).mkdir(parents=True)
        for good in sorted((arts["data"] / label).iterdir())[:2]:
            (root / label / good.name).write_bytes(good.read_bytes())
    bombs = [_bomb_file(root / LABELS[i % 3], case) for i, case in enumerate(sorted(IMAGE_BOMBS))]
    contract = Contract.from_json(contract_json())
    decoded = load_pixels(list_dataset(root, classes=LABELS), contract, progress=False)
    assert len(decoded.paths) == 6
    skipped = dict(decoded.skipped)
    assert set(skipped) == set(bombs)
    assert all("larger than the 100 megapixels" in reason for reason in skipped.values())


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".gif", ".tiff"])
def test_ordinary_images_of_every_format_still_decode(ext):
    img = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    assert decode_image(buf.tobytes()).shape == (37, 53, 3)


@pytest.mark.parametrize("ext", [".ppm", ".pam", ".pfm", ".hdr", ".sr", ".avif"])
def test_formats_whose_size_is_not_read_first_are_refused(ext):
    """OpenCV decodes these too (HDR and Sun raster are run-length coded: bombs as well)."""
    ok, buf = cv2.imencode(ext, np.zeros((16, 16, 3), np.uint8))
    if not ok or cv2.imdecode(buf, cv2.IMREAD_COLOR) is None:
        pytest.skip(f"this OpenCV build has no {ext} codec")
    refusal = (
        "an AVIF image, which edgecnn does not decode" if ext == ".avif" else "not a decodable"
    )
    with pytest.raises(ImageError, match=refusal):
        decode_image(buf.tobytes())


HOSTILE_NAMES = ("\x1b[2J\x1b[31mcleared.png", "two\nlines.png", "\u202egnp.exe.png")


def test_file_names_cannot_rewrite_the_console(arts, tmp_path, capsys):
    """A downloaded dataset's file names reach the console in predict's table, eval's and
    train's skipped lists and every one-line error: shown escaped, one line each."""
    good = next((arts["data"] / "red").iterdir())
    data = tmp_path / "data"
    for label in LABELS:
        (data / label).mkdir(parents=True)
        shutil.copy(good, data / label / "plain.png")
    for name in HOSTILE_NAMES:
        shutil.copy(good, data / "red" / name)

    code, out, err = _cli(capsys, ["predict", str(arts["onnx"]), str(data / "red")])
    assert code == 0, err
    assert len(out.splitlines()) == 1 + len(HOSTILE_NAMES) + 1  # the header, plain.png
    assert "\\x1b[2J\\x1b[31mcleared.png" in out and "two\\nlines.png" in out
    assert "\\u202egnp.exe.png" in out

    (data / "blue" / "\x1b]0;pwned\x07.png").write_bytes(b"not a png at all, just text")
    code, out, err = _cli(capsys, ["predict", str(arts["onnx"]), str(data / "blue")])
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "\\x1b]0;pwned\\x07.png" in err

    code, out, err = _cli(
        capsys, ["eval", str(arts["onnx"]), str(data), "--confusion", str(tmp_path / "c.png")]
    )
    assert code == 0, err
    skipped = [line for line in out.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 1 and "\\x1b]0;pwned\\x07.png" in skipped[0]

    for text in (out, err):
        assert not any(c in text for c in "\x1b\x07\u202e")
