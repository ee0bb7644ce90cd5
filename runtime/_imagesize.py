"""An encoded image's format and pixel size, read from its header without decoding it.

A file of a few hundred KB can declare 16000x16000 pixels (a decompression bomb): a decoder
allocates and fills the whole canvas before anything can check it, gigabytes on a device with
one.  `decode_image` asks here first and refuses what is too large before OpenCV allocates
anything.  Only the formats edgecnn reads are recognised: JPEG, PNG, BMP, WebP, GIF and TIFF.
Anything else (OpenCV also decodes JPEG 2000, AVIF, HDR, Sun raster, PNM...) is refused as an
unknown format, so no decoder runs on a file whose size was not read first.

`image_size(data)` -> (format, width, height); ValueError when the header is not one of these
formats or cannot be read.  Work is bounded by the file's size (every step moves forward).
"""

from __future__ import annotations

import struct

import numpy as np

MAX_TIFF_ENTRIES = 4096  # tags in one TIFF directory; real files have a few dozen
_JPEG_SOF = frozenset(
    {*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), 0xCD, 0xCE, 0xCF}
)
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RSTn, SOI, EOI
_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_TILE_WIDTH, _TIFF_TILE_HEIGHT = 256, 257, 322, 323


def image_size(data: bytes | memoryview | np.ndarray) -> tuple[str, int, int]:
    """(format, width, height) declared by the header of an encoded image.

    For GIF and TIFF the size is the largest area a decoder allocates for the first frame or
    page: the GIF screen or its first frame, the TIFF image or one of its tiles.
    """
    buf = memoryview(data).cast("B")
    head = bytes(buf[:8])
    for magic, reader in _READERS:
        if head.startswith(magic):
            try:
                return reader(buf)
            except (struct.error, IndexError):
                raise ValueError(f"truncated {reader.__name__[1:].upper()} header") from None
    raise ValueError("not a JPEG, PNG, BMP, WebP, GIF or TIFF file")


def _u16be(buf: bytes, at: int) -> int:
    return struct.unpack_from(">H", buf, at)[0]


def _png(buf: bytes) -> tuple[str, int, int]:
    if buf[12:16] != b"IHDR":
        raise ValueError("PNG without a header chunk")
    width, height = struct.unpack_from(">II", buf, 16)
    return "PNG", width, height


def _jpeg(buf: bytes) -> tuple[str, int, int]:
    """The first frame header (SOFn); markers before it are skipped by their lengths."""
    pos = 2
    while pos + 4 <= len(buf):
        if buf[pos] != 0xFF:
            raise ValueError("JPEG marker expected")
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker in _JPEG_SOF:
            height, width = struct.unpack_from(">HH", buf, pos + 5)
            return "JPEG", width, height
        if marker == 0xDA:
            raise ValueError("JPEG scan before its frame header")
        length = _u16be(buf, pos + 2)
        if length < 2:
            raise ValueError("JPEG segment length below 2")
        pos += 2 + length
    raise ValueError("JPEG without a frame header")


def _gif(buf: bytes) -> tuple[str, int, int]:
    width, height, flags = struct.unpack_from("<HHB", buf, 6)
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while pos < len(buf):
        block = buf[pos]
        if block == 0x2C:  # image descriptor: the first frame
            left, top, w, h = struct.unpack_from("<4H", buf, pos + 1)
            return "GIF", max(width, left + w), max(height, top + h)
        if block != 0x21:  # only extensions may come before it
            break
        pos = _skip_sub_blocks(buf, pos + 2)
    return "GIF", width, height


def _skip_sub_blocks(buf: bytes, pos: int) -> int:
    while pos < len(buf) and buf[pos]:
        pos += buf[pos] + 1
    return pos + 1


def _webp(buf: bytes) -> tuple[str, int, int]:
    if buf[8:12] != b"WEBP":
        raise ValueError("RIFF file that is not WebP")
    chunk = buf[12:16]
    if chunk == b"VP8X":  # extended: the canvas size
        w, h = int.from_bytes(buf[24:27], "little"), int.from_bytes(buf[27:30], "little")
        return "WebP", w + 1, h + 1
    if chunk == b"VP8L":  # lossless: 14-bit sizes after the signature byte
        (bits,) = struct.unpack_from("<I", buf, 21)
        return "WebP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":  # lossy: 14-bit sizes after the frame tag and start code
        w, h = struct.unpack_from("<HH", buf, 26)
        return "WebP", w & 0x3FFF, h & 0x3FFF
    raise ValueError(f"WebP with an unknown first chunk {chunk!r}")


def _bmp(buf: bytes) -> tuple[str, int, int]:
    (header,) = struct.unpack_from("<I", buf, 14)
    if header == 12:  # OS/2 core header: 16-bit sizes
        w, h = struct.unpack_from("<HH", buf, 18)
        return "BMP", w, h
    w, h = struct.unpack_from("<ii", buf, 18)
    return "BMP", abs(w), abs(h)  # negative height: rows stored top-down


def _tiff(buf: bytes) -> tuple[str, int, int]:
    """The first directory's image size, or its tile size when a tile is larger."""
    order = "<" if buf[:2] == b"II" else ">"
    big = struct.unpack_from(order + "H", buf, 2)[0] == 43
    if big:
        (offset,) = struct.unpack_from(order + "Q", buf, 8)
        count_fmt, entry_fmt, entry_size, value_at = "Q", "HHQQ", 20, 12
    else:
        (offset,) = struct.unpack_from(order + "I", buf, 4)
        count_fmt, entry_fmt, entry_size, value_at = "H", "HHII", 12, 8
    (count,) = struct.unpack_from(order + count_fmt, buf, offset)
    if count > MAX_TIFF_ENTRIES:
        raise ValueError(f"TIFF directory of {count} entries")
    first = offset + struct.calcsize(count_fmt)
    tags: dict[int, int] = {}
    for at in range(first, first + count * entry_size, entry_size):
        tag, kind, _, value = struct.unpack_from(order + entry_fmt, buf, at)
        if kind == 3:  # SHORT: the value sits in the first two bytes of the value field
            (value,) = struct.unpack_from(order + "H", buf, at + value_at)
        tags[tag] = value
    if _TIFF_WIDTH not in tags or _TIFF_HEIGHT not in tags:
        raise ValueError("TIFF without an image width and length")
    w, h = tags[_TIFF_WIDTH], tags[_TIFF_HEIGHT]
    tw, th = tags.get(_TIFF_TILE_WIDTH, 0), tags.get(_TIFF_TILE_HEIGHT, 0)
    return ("TIFF", tw, th) if tw * th > w * h else ("TIFF", w, h)


_READERS = (
    (b"\x89PNG\r\n\x1a\n", _png),
    (b"\xff\xd8\xff", _jpeg),
    (b"GIF87a", _gif),
    (b"GIF89a", _gif),
    (b"RIFF", _webp),
    (b"BM", _bmp),
    (b"II*\x00", _tiff),
    (b"MM\x00*", _tiff),
    (b"II+\x00", _tiff),
    (b"MM\x00+", _tiff),
)
