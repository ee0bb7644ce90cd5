"""The SIMD kernels that decode and preprocess every photo, forced to an AVX2-only CPU's.

Before any model runs, libjpeg-turbo (inside OpenCV) decodes JPEGs, OpenCV resizes and converts
each photo, and numpy and OpenCV make it model input and apply the camera shifts.  Each picks
vector kernels by cpuid when the process starts: AVX-512 ones on hosts that have them, AVX2 ones
on the rest.  Training caches these pixels and every export is verified on them, so they must
not depend on the CPU.  All three take a switch to ignore instruction sets (OpenCV's and numpy's:
tools/avx2_only.py; libjpeg-turbo's `JSIMD_FORCENONE`), so a new process here runs an AVX2-only
CPU's kernels, or libjpeg-turbo's plain C code, and must give this host's arrays bit for bit.
It could differ: numpy's float64 `power`, which builds the exposure shifts' tables, rounds 6%
of random inputs otherwise with its AVX-512 kernels than with its AVX2 ones (the tables come out
the same).  On a host without AVX-512 the capped process runs the host's own kernels.

TensorFlow's oneDNN is held to AVX2 in tests/test_precision.py.  LiteRT's and ONNX Runtime's
int8 kernels take no such switch; tests/test_int8_kernels.py runs them on emulated older CPUs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy._core._multiarray_umath import __cpu_features__

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))  # avx2_only: the switches, also used by make test-avx2
import avx2_only  # noqa: E402

PROBE = Path(__file__).with_name("_dispatch_probe.py")
SHARED = REPO.parent / "shared" / "datasets"
SIZES = ((480, 640), (251, 333), (768, 1024), (61, 97), (1080, 1920))  # (h, w)
PHOTOS_PER_SOURCE = 4


def _photo_like(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth shading, hard edges and fine noise: what resizing and JPEG both work on."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([128 + 90 * np.sin(x / (w / rng.uniform(2, 6)) + c) for c in (0, 1, 2)], -1)
    img += 40 * np.cos(y / (h / rng.uniform(1, 4)))[..., None]
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.circle(img, (x0, y0), int(rng.integers(3, max(4, h // 3))), colour, -1)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Generated JPEGs and PNGs of odd and even sizes, and real photos of two sources if
    ../shared is there (their own encoders, sizes and EXIF)."""
    folder = tmp_path_factory.mktemp("dispatch_photos")
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(SIZES):
        img = _photo_like(h, w, rng)
        cv2.imwrite(str(folder / f"gen{i}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 88])
        cv2.imwrite(str(folder / f"gen{i}.png"), img)
    for source in ("cats-vs-dogs/test/cat", "pets-oxford/dog"):
        for path in sorted((SHARED / source).glob("*.jpg"))[:PHOTOS_PER_SOURCE]:
            (folder / f"{source.split('/')[0]}-{path.name}").write_bytes(path.read_bytes())
    return folder


def _probe(photos: Path, out: Path, **env: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(PROBE), str(photos), str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def host(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("dispatch") / "host.npz"
    _probe(photos, out)
    return dict(np.load(out))


def _assert_same_arrays(host: dict, other: dict) -> None:
    assert host.keys() == other.keys()
    differ = [key for key in host if not np.array_equal(host[key], other[key])]
    assert not differ, f"{len(differ)} of {len(host)} arrays differ, e.g. {differ[:5]}"


def test_opencv_and_numpy_give_the_same_pixels_with_an_avx2_only_cpus_kernels(
    photos, host, tmp_path
):
    opencv_off = avx2_only.opencv_features_beyond_avx2()
    numpy_off = avx2_only.numpy_features_beyond_avx2()
    seen = _probe(photos, tmp_path / "avx2.npz", **avx2_only.environment())
    # the capped process really ran without them (OpenCV marks a disabled set with `?`)
    assert not [t for t in seen["opencv"] if t.lstrip("*") in opencv_off]
    assert not set(numpy_off) & set(seen["numpy"])
    assert ("AVX2" in seen["numpy"]) == bool(__cpu_features__.get("AVX2"))  # only above AVX2
    _assert_same_arrays(host, dict(np.load(tmp_path / "avx2.npz")))


def test_jpeg_decoding_gives_the_same_pixels_without_simd(photos, host, tmp_path):
    """libjpeg-turbo's SIMD paths (SSE2, AVX2; none wider) against its plain C code."""
    _probe(photos, tmp_path / "c.npz", JSIMD_FORCENONE="1")
    _assert_same_arrays(host, dict(np.load(tmp_path / "c.npz")))
