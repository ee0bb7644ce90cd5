"""The one preprocessing function shared by training, calibration, evaluation and the runtime.

Two steps, both here so there is no train/serve skew:

1. `to_pixels(image, contract)`: any image (a path, encoded bytes, or a BGR/gray/BGRA array of
   any dtype) -> uint8 RGB array at the model's resolution.  Training caches exactly this.
2. `to_input(pixels, contract)`: uint8 pixels -> the float32 tensor the model takes.

`preprocess(image, contract)` does both.  Frames from OpenCV are BGR; float frames are taken to
be in 0..1 (OpenCV's convention), uint16 frames in 0..65535.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from ._imagesize import image_size
from .contract import Contract
from .errors import ImageError

# Listed from folders.  HEIC/HEIF (what iPhones shoot by default) and AVIF are listed too, though
# edgecnn does not decode them (`_unknown_format`), so that a folder of them is reported
# file by file with what to do, instead of looking empty.
IMAGE_EXTENSIONS = (
    *(".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"),
    *(".heic", ".heif", ".avif"),
)
# Folders that file managers, NAS boxes and archivers write beside photos: thumbnails and
# metadata, never photos of a class (Synology's @eaDir holds JPEG thumbnails of every photo).
_METADATA_DIRS = frozenset({"@eaDir", "__MACOSX"})
MAX_PIXELS = 100_000_000  # refuse decompression bombs beyond ~100 megapixels
# Refuse bigger files before reading them: memory stays bounded whatever a path holds (a
# 100-megapixel photo is ~50 MB as JPEG; its decoded pixels take 300 MB).
MAX_IMAGE_BYTES = 256 * 1024 * 1024
_UNDECODABLE = "not a decodable image (corrupt, truncated or another format)"
# ISO base media file brands (the `ftyp` box) of the photo formats edgecnn does not decode.
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
)

_INTERPOLATION = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "nearest": cv2.INTER_NEAREST,
    "cubic": cv2.INTER_CUBIC,
}


def is_image_file(path: str | os.PathLike) -> bool:
    name = os.fspath(path)
    return name.lower().endswith(IMAGE_EXTENSIONS) and not os.path.basename(name).startswith(".")


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files under `folder` and its sub-folders, sorted.

    Hidden files and folders (a leading dot: `.thumbnails/`, macOS's `._photo.jpg`) and the
    thumbnail and metadata folders of NAS boxes and archivers (`@eaDir/`, `__MACOSX/`) are left
    out: their JPEGs are copies or are not photos at all.  Symlinked files are followed,
    symlinked sub-folders are not (no loops); anything that is not a regular file (a FIFO named
    `x.jpg`) is left out.
    """
    found: list[Path] = []
    for parent, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in _METADATA_DIRS]
        found.extend(
            path
            for path in (Path(parent, name) for name in names if is_image_file(name))
            if path.is_file()
        )
    return sorted(found)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to a BGR uint8 array, normalising what photos come as.

    Grayscale, RGBA/palette, 16-bit and EXIF-rotated images all come out as upright 8-bit BGR;
    a GIF gives its first frame.  Raises `ImageError` naming the file and the reason.
    """
    path = Path(path)
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(f"{path}: is a directory, not an image")
        if not stat.S_ISREG(st.st_mode):  # a device or FIFO: reading it may never end
            raise ImageError(f"{path}: not a regular file")
        if st.st_size > MAX_IMAGE_BYTES:
            raise ImageError(
                f"{path}: {st.st_size / 2**20:,.0f} MB, more than the "
                f"{MAX_IMAGE_BYTES >> 20} MB an image file may be"
            )
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror or e})") from None
    return decode_image(data, source=str(path))


def read_stdin_image(stream: BinaryIO) -> np.ndarray:
    """Decode the image piped to `stream` (stdin: `cat photo.jpg | edgecnn predict MODEL -`),
    reading at most MAX_IMAGE_BYTES."""
    if stream.isatty():
        raise ImageError("-: stdin is a terminal; pipe an image in (cat photo.jpg | ... -)")
    data = stream.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"-: more than the {MAX_IMAGE_BYTES >> 20} MB an image file may be")
    return decode_image(data, source="-")


def decode_image(data: bytes | np.ndarray, *, source: str = "image") -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, BMP, WebP, GIF, TIFF) to upright BGR uint8.
    HEIC and AVIF photos are refused with what to do instead.

    The size the header declares is checked before any decoder runs: a small file claiming
    more than MAX_PIXELS (a decompression bomb) is refused without allocating its canvas, and
    other formats OpenCV could decode are refused because their size was not read first.
    """
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else data
    if buf.size == 0:
        raise ImageError(f"{source}: empty file")
    if buf.size < 8:
        raise ImageError(f"{source}: only {buf.size} bytes, not an image")
    _check_declared_size(buf, source)
    img = None
    try:
        # IMREAD_COLOR applies the EXIF orientation and converts gray/16-bit/alpha to 8-bit BGR.
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error:
        img = None
    if img is None:
        img = _decode_gif_with_videocapture(buf)
    if img is None:
        raise ImageError(f"{source}: {_UNDECODABLE}")
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise ImageError(f"{source}: {img.shape[1]}x{img.shape[0]} is larger than 100 megapixels")
    return img


def _check_declared_size(buf: np.ndarray, source: str) -> None:
    """ImageError unless the header is a known format declaring at most MAX_PIXELS."""
    try:
        fmt, width, height = image_size(buf)
    except ValueError:
        raise ImageError(f"{source}: {_unknown_format(buf)}") from None
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{source}: {fmt} of {width}x{height} pixels is larger than the "
            f"{MAX_PIXELS // 1_000_000} megapixels edgecnn decodes (a decompression bomb?)"
        )


def _unknown_format(buf: np.ndarray) -> str:
    """Why a file whose header is none of the formats edgecnn reads is refused: what to do with
    a HEIC or AVIF photo (recognised by the brands of its `ftyp` box), else `_UNDECODABLE`."""
    head = bytes(buf[:64])
    if head[4:8] == b"ftyp":
        size = min(max(int.from_bytes(head[:4], "big"), 16), len(head))
        brands = {head[8:12], *(head[i : i + 4] for i in range(16, size - 3, 4))}
        if brands & _AVIF_BRANDS:
            return "an AVIF image, which edgecnn does not decode: convert it to JPEG or PNG"
        if brands & _HEIF_BRANDS:
            return (
                "a HEIC/HEIF photo (the iPhone camera's default format), which edgecnn does not "
                "decode: convert it to JPEG (iPhone: Settings > Camera > Formats > Most Compatible)"
            )
    return _UNDECODABLE


def _decode_gif_with_videocapture(buf: np.ndarray) -> np.ndarray | None:
    """A GIF's first frame where OpenCV's image codecs have no GIF decoder (off by default
    before OpenCV 4.12): OpenCV's FFmpeg video reader decodes it instead, from a temporary
    file, since it reads files only.  OpenCV alone, so a device with the runtime's
    dependencies only decodes a GIF to the same pixels as the machine that trained on it."""
    if bytes(buf[:4]) != b"GIF8":
        return None
    fd, name = tempfile.mkstemp(suffix=".gif")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.tobytes())
        capture = cv2.VideoCapture(name, cv2.CAP_FFMPEG)
        try:
            ok, frame = capture.read()
        finally:
            capture.release()
    except cv2.error:
        return None
    finally:
        os.unlink(name)
    return frame if ok and frame is not None and frame.ndim == 3 else None


def as_bgr_uint8(frame: np.ndarray) -> np.ndarray:
    """Any HxW, HxWx1, HxWx3 or HxWx4 array of uint8/uint16/float -> HxWx3 uint8 BGR."""
    if not isinstance(frame, np.ndarray):
        raise ImageError(f"expected an image array, got {type(frame).__name__}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        raise ImageError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {frame.shape}")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ImageError(f"empty image of shape {frame.shape}")
    if frame.dtype != np.uint8:
        if frame.dtype == np.uint16:
            frame = (frame >> 8).astype(np.uint8)
        elif np.issubdtype(frame.dtype, np.floating):
            frame = np.clip(np.nan_to_num(frame, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
            frame = (frame * 255.0 + 0.5).astype(np.uint8)
        elif frame.dtype == np.bool_ or np.issubdtype(frame.dtype, np.integer):
            frame = np.clip(frame, 0, 255).astype(np.uint8)
        else:
            raise ImageError(f"unsupported image dtype {frame.dtype}")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


def load_bgr(image: str | os.PathLike | bytes | np.ndarray) -> np.ndarray:
    """A path, encoded bytes, or an array -> BGR uint8."""
    if isinstance(image, np.ndarray):
        return as_bgr_uint8(image)
    if isinstance(image, (bytes, bytearray)):
        return decode_image(image)
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    raise ImageError(f"expected a path, bytes or an image array, got {type(image).__name__}")


def _crop_box(h: int, w: int, target_h: int, target_w: int) -> tuple[int, int, int, int]:
    """The centred crop of an h x w image with the target's aspect ratio."""
    target_ratio = target_w / target_h
    if w / h > target_ratio:
        cw = max(1, round(h * target_ratio))
        x0 = (w - cw) // 2
        return 0, h, x0, x0 + cw
    ch = max(1, round(w / target_ratio))
    y0 = (h - ch) // 2
    return y0, y0 + ch, 0, w


def _halve(bgr: np.ndarray, target_w: int, target_h: int) -> np.ndarray:
    """First steps of the area resize: average 2x2 blocks while the frame stays >= the target.

    OpenCV's general INTER_AREA path is costly on big frames (640x480 -> 96x96: 0.82 ms on one
    EPYC core, more than decoding the frame), while its exact 2x2 path is ~10x cheaper per
    pixel.  Halving first and area-resizing the small remainder (less than 2x larger than the
    target) costs 0.21 ms there (1080p: 4x faster) and is still a box filter, only with soft
    footprint edges: on real photos scaled to 640x480 it differs from the one-step result by
    about 2 grey levels on average (a slight extra blur, no aliasing).  Training, calibration,
    evaluation and the live loop all call this one function, so the model always sees these
    pixels.
    """
    h, w = bgr.shape[:2]
    while h % 2 == 0 and w % 2 == 0 and h // 2 >= target_h and w // 2 >= target_w:
        h, w = h // 2, w // 2
        bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
    return bgr


def to_pixels(
    image: str | os.PathLike | bytes | np.ndarray,
    contract: Contract,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Decode/normalise `image` and resize it to the model's resolution: uint8 HxWx3 in the
    contract's colour order.  Pass `out` (uint8, HxWx3) to write into a preallocated buffer."""
    bgr = load_bgr(image)
    if contract.resize == "crop":
        y0, y1, x0, x1 = _crop_box(bgr.shape[0], bgr.shape[1], contract.height, contract.width)
        bgr = bgr[y0:y1, x0:x1]
    size = (contract.width, contract.height)
    interp = _INTERPOLATION.get(contract.interpolation, cv2.INTER_AREA)
    if interp == cv2.INTER_AREA:
        bgr = _halve(bgr, contract.width, contract.height)
    if bgr.shape[:2] == (contract.height, contract.width):
        resized = bgr
    else:
        resized = cv2.resize(bgr, size, interpolation=interp)
    if contract.color == "RGB":
        if out is not None:
            return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB, dst=out)
        return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    if out is not None:
        np.copyto(out, resized)
        return out
    return np.ascontiguousarray(resized)


def to_input(
    pixels: np.ndarray, contract: Contract, *, out: np.ndarray | None = None
) -> np.ndarray:
    """uint8 pixels (HxWx3 or NxHxWx3) -> float32 model input `(pixel - mean) / std`."""
    if out is None:
        out = np.empty(pixels.shape, dtype=np.float32)
    np.copyto(out, pixels, casting="unsafe")
    if not contract.is_identity_scaling:
        out -= np.asarray(contract.mean, dtype=np.float32)
        out /= np.asarray(contract.std, dtype=np.float32)
    return out


def preprocess(image: str | os.PathLike | bytes | np.ndarray, contract: Contract) -> np.ndarray:
    """The whole contract in one call: any image -> float32 HxWx3 model input."""
    return to_input(to_pixels(image, contract), contract)
