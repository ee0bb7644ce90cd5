"""The shared decode and resize: photos come out upright, and the two-step area resize
(`to_pixels`) stays a faithful area resize."""

from __future__ import annotations

import importlib
import os
import warnings

import cv2
import numpy as np
import pytest

from edgecnn.runtime.contract import Contract
from edgecnn.runtime.errors import ImageError
from edgecnn.runtime.preprocess import as_bgr_uint8, decode_image, read_image, to_pixels


def _photo_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth texture with edges: blurred noise, a gradient and a sharp-edged rectangle."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (0, 0), 2)
    ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    img = (0.5 * noise + 0.5 * ramp).astype(np.uint8)
    cv2.rectangle(img, (w // 5, h // 4), (w // 2, h // 2), (250, 30, 90), -1)
    return img


@pytest.mark.parametrize(
    ("h", "w"), [(480, 640), (1080, 1920), (374, 500), (333, 500), (97, 131), (64, 48)]
)
@pytest.mark.parametrize("resize", ["stretch", "crop"])
def test_two_step_area_resize_matches_one_step_area(h, w, resize):
    img = _photo_like(h, w)
    contract = Contract(labels=("a", "b"), height=96, width=96, resize=resize)
    got = to_pixels(img, contract)
    assert got.shape == (96, 96, 3) and got.dtype == np.uint8
    src = img
    if resize == "crop":
        side = min(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        src = img[y0 : y0 + side, x0 : x0 + side]
    one_step = cv2.resize(src, (96, 96), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    diff = np.abs(got.astype(int) - one_step.astype(int))
    # a box filter either way: softer footprint edges (a slight blur), nothing more
    assert diff.mean() < 2.5 and np.percentile(diff, 99) <= 16, (diff.mean(), diff.max())


@pytest.mark.parametrize(("h", "w"), [(97, 131), (333, 501), (150, 100)])
def test_frames_that_cannot_be_halved_get_the_one_step_area_resize(h, w):
    img = _photo_like(h, w, seed=1)
    contract = Contract(labels=("a", "b"), height=96, width=96)
    expected = cv2.resize(img, (96, 96), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    np.testing.assert_array_equal(to_pixels(img, contract), expected)


@pytest.mark.parametrize(("h", "w"), [(480, 640), (1080, 1920), (720, 1280)])
def test_area_resize_does_not_alias_fine_detail(h, w):
    """A one-pixel checkerboard must come out flat grey (a point-sampling resize would keep
    black/white pixels: aliasing)."""
    board = ((np.indices((h, w)).sum(axis=0) % 2) * 255).astype(np.uint8)
    got = to_pixels(board, Contract(labels=("a", "b"), height=96, width=96)).astype(int)
    assert np.abs(got - 127.5).max() <= 3


def test_other_interpolations_resize_in_one_step():
    img = _photo_like(480, 640)
    contract = Contract(labels=("a", "b"), height=96, width=96, interpolation="linear")
    expected = cv2.resize(img, (96, 96), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
    np.testing.assert_array_equal(to_pixels(img, contract), expected)


def test_gif_decodes_with_opencv_alone_where_its_codecs_lack_gif(monkeypatch):
    """OpenCV builds before 4.12 have no GIF image codec; the GIF's first frame then comes
    from OpenCV's FFmpeg video reader, with the same pixels, and without Pillow (which the
    device runtime does not install)."""
    import io
    import sys

    from PIL import Image

    rgb = _photo_like(37, 53)
    encoded = io.BytesIO()
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(encoded, format="GIF")
    data = encoded.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        expected = np.asarray(im.convert("RGB"))[:, :, ::-1]  # BGR, as OpenCV decodes

    real = cv2.imdecode
    monkeypatch.setattr(
        cv2,
        "imdecode",
        lambda buf, flags: None if buf[:3].tobytes() == b"GIF" else real(buf, flags),
    )
    monkeypatch.setitem(sys.modules, "PIL", None)  # importing Pillow now fails
    got = decode_image(data, source="x.gif")
    assert got.shape == (37, 53, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_phone_photos_come_out_upright_from_a_path_and_from_bytes(tmp_path, orientation):
    """Phones store a portrait photo as landscape pixels plus an EXIF orientation tag; every
    decode (training, predict, eval, the live loop's folders) must apply it, or a model sees
    users' photos on their side.  Expected: what Pillow's `exif_transpose` shows."""
    pil = pytest.importorskip("PIL.Image")
    ops = pytest.importorskip("PIL.ImageOps")
    rgb = np.zeros((40, 60, 3), np.uint8)  # four quadrants of distinct colours
    rgb[:20, :30], rgb[:20, 30:] = (230, 20, 20), (20, 230, 20)
    rgb[20:, :30], rgb[20:, 30:] = (20, 20, 230), (230, 230, 20)
    exif = pil.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"phone-{orientation}.jpg"
    pil.fromarray(rgb).save(path, "JPEG", quality=95, exif=exif.tobytes())
    expected = np.asarray(ops.exif_transpose(pil.open(path)).convert("RGB"))
    assert expected.shape[:2] == ((40, 60) if orientation in (1, 3) else (60, 40))

    for decoded in (read_image(path), decode_image(path.read_bytes())):
        got = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
        assert got.shape == expected.shape
        assert np.abs(got.astype(int) - expected.astype(int)).mean() < 4  # JPEG rounding only


def test_float_frames_map_0_to_1_onto_0_to_255_and_clip_nan_and_inf_silently():
    frame = np.array([[[0.0, 0.5, 1.0], [-3.0, 7.0, np.nan], [np.inf, -np.inf, 0.25]]])
    for dtype in (np.float16, np.float32, np.float64):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no overflow warning on inf
            out = as_bgr_uint8(frame.astype(dtype))
        assert out.dtype == np.uint8
        assert out.tolist() == [[[0, 128, 255], [0, 255, 0], [255, 0, 64]]]


def test_reading_is_bounded_whatever_the_path_holds(tmp_path, monkeypatch):
    """A device or FIFO could be read forever, a huge file would fill memory: both are refused
    before a byte is read."""
    preprocess = importlib.import_module("edgecnn.runtime.preprocess")  # the function shadows it
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.jpg")  # nothing ever writes to it: reading would block
        with pytest.raises(ImageError, match="pipe.jpg: not a regular file"):
            read_image(tmp_path / "pipe.jpg")
    big = tmp_path / "big.jpg"
    cv2.imwrite(str(big), np.full((64, 64, 3), 127, np.uint8))
    monkeypatch.setattr(preprocess, "MAX_IMAGE_BYTES", big.stat().st_size - 1)
    with pytest.raises(ImageError, match="big.jpg: 0 MB, more than the 0 MB an image file may be"):
        read_image(big)
    with pytest.raises(ImageError, match="is a directory, not an image"):
        read_image(tmp_path)
