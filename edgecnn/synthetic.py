"""Built-in labelled images, generated offline: shapes and patterns on noisy backgrounds.

The demo and the tests need a dataset without downloads, and it has to be one a CNN must
actually learn: every class draws its foreground and background colours, gradient direction,
noise, position, scale and rotation from the same distributions, so neither mean colour nor
brightness nor position tells the classes apart, only shape does.

    from edgecnn.synthetic import generate, generate_split
    root = generate("data/shapes", classes=3, per_class=50, size=64, seed=0)
    train_dir, val_dir = generate_split("data/shapes", classes=3, train_per_class=60,
                                        val_per_class=20, size=64, seed=0)

Output is byte-for-byte reproducible for a given seed (each image has its own RNG seeded from
`(seed, class, index)`), so a dataset can be regenerated instead of stored.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from edgecnn.runtime.errors import InputError
from edgecnn.runtime.files import write_atomic

Drawer = Callable[[np.ndarray, np.random.Generator, tuple[float, float], float, float, tuple], None]

FORMATS = ("png", "jpg", "bmp", "webp")
_SUPERSAMPLE = 4  # draw at 4x and downsample with INTER_AREA: anti-aliased, size-independent


def _polygon(img, pts, colour) -> None:
    cv2.fillPoly(img, [np.round(pts).astype(np.int32)], colour, lineType=cv2.LINE_AA)


def _regular(
    n: int, cx: float, cy: float, r: float, angle: float, inner: float = 0.0
) -> np.ndarray:
    """Vertices of a regular n-gon (or an n-pointed star when `inner` > 0)."""
    if inner > 0:
        k = np.arange(2 * n)
        radius = np.where(k % 2 == 0, r, r * inner)
        theta = angle + k * np.pi / n
    else:
        radius = np.full(n, r)
        theta = angle + np.arange(n) * 2 * np.pi / n
    return np.stack([cx + radius * np.cos(theta), cy + radius * np.sin(theta)], axis=1)


def _circle(img, rng, centre, r, angle, colour) -> None:
    cv2.circle(img, tuple(int(v) for v in centre), int(r), colour, -1, lineType=cv2.LINE_AA)


def _square(img, rng, centre, r, angle, colour) -> None:
    _polygon(img, _regular(4, *centre, r * 1.05, angle), colour)


def _triangle(img, rng, centre, r, angle, colour) -> None:
    _polygon(img, _regular(3, *centre, r * 1.2, angle), colour)


def _stripes(img, rng, centre, r, angle, colour) -> None:
    """Parallel bars inside a disc-sized square: a texture class, not an outline."""
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    n = int(rng.integers(3, 5))
    step = 2 * r / (2 * n - 1)
    c, s = np.cos(angle), np.sin(angle)
    for i in range(n):
        off = -r + (2 * i + 0.5) * step
        bar = np.array(
            [[off - step / 2, -r], [off + step / 2, -r], [off + step / 2, r], [off - step / 2, r]]
        )
        rot = bar @ np.array([[c, s], [-s, c]]) + np.asarray(centre)
        _polygon(mask, rot, 255)
    img[mask > 127] = colour


def _cross(img, rng, centre, r, angle, colour) -> None:
    t = r * 0.32
    arm = np.array([[-r, -t], [r, -t], [r, t], [-r, t]])
    for rot in (0.0, np.pi / 2):
        cr, sr = np.cos(angle + rot), np.sin(angle + rot)
        _polygon(img, arm @ np.array([[cr, sr], [-sr, cr]]) + np.asarray(centre), colour)


def _ring(img, rng, centre, r, angle, colour) -> None:
    thickness = max(2, int(r * 0.3))
    cv2.circle(
        img, tuple(int(v) for v in centre), int(r - thickness / 2), colour, thickness, cv2.LINE_AA
    )


def _star(img, rng, centre, r, angle, colour) -> None:
    _polygon(img, _regular(5, *centre, r * 1.15, angle, inner=0.45), colour)


def _checker(img, rng, centre, r, angle, colour) -> None:
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = np.cos(angle), np.sin(angle)
    u = (xx - centre[0]) * c + (yy - centre[1]) * s
    v = -(xx - centre[0]) * s + (yy - centre[1]) * c
    cell = r / 2
    inside = (np.abs(u) < r) & (np.abs(v) < r)
    parity = (np.floor(u / cell) + np.floor(v / cell)).astype(np.int64) % 2 == 0
    img[inside & parity] = colour


SHAPES: dict[str, Drawer] = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "stripes": _stripes,
    "cross": _cross,
    "ring": _ring,
    "star": _star,
    "checker": _checker,
}


def class_names(classes: int | Sequence[str]) -> tuple[str, ...]:
    """The class names for `classes` (a count or a list of names from `SHAPES`)."""
    if isinstance(classes, int):
        if not 2 <= classes <= len(SHAPES):
            raise InputError(f"classes must be between 2 and {len(SHAPES)}, got {classes}")
        return tuple(SHAPES)[:classes]
    names = tuple(classes)
    unknown = [c for c in names if c not in SHAPES]
    if unknown or len(names) < 2 or len(set(names)) != len(names):
        raise InputError(
            f"classes must be 2+ distinct names from {list(SHAPES)}, got {list(names)}"
        )
    return names


def _colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> np.ndarray:
    return rng.integers(lo, hi, size=3).astype(np.float32)


def _background(rng: np.random.Generator, n: int, *, dark: bool) -> np.ndarray:
    """A two-colour linear gradient in a random direction plus Gaussian noise, float32 BGR.

    Dark or light at random: the shape is drawn in the other band, so it always has a clear
    edge, while the image's mean colour says nothing about the class.
    """
    lo, hi = (0, 100) if dark else (155, 256)
    a, b = _colour(rng, lo, hi), _colour(rng, lo, hi)
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / max(n - 1, 1)
    t = ((xx - 0.5) * np.cos(theta) + (yy - 0.5) * np.sin(theta)) + 0.5
    t = np.clip(t, 0, 1)[..., None]
    bg = a * (1 - t) + b * t
    return bg + rng.normal(0, rng.uniform(2, 10), size=bg.shape).astype(np.float32)


def render(shape: str, *, size: int, rng: np.random.Generator) -> np.ndarray:
    """One `size` x `size` BGR uint8 image of `shape`, with everything else random."""
    big = size * _SUPERSAMPLE
    dark = bool(rng.random() < 0.5)
    canvas = np.clip(_background(rng, big, dark=dark), 0, 255).astype(np.uint8)
    r = rng.uniform(0.24, 0.38) * big
    margin = r * 1.1
    centre = (rng.uniform(margin, big - margin), rng.uniform(margin, big - margin))
    angle = rng.uniform(0, 2 * np.pi)
    colour = tuple(int(v) for v in (_colour(rng, 155, 256) if dark else _colour(rng, 0, 100)))
    SHAPES[shape](canvas, rng, centre, r, angle, colour)
    # At most one small distractor dot, so "any non-background pixel" is not the cue.
    if rng.random() < 0.5:
        p = (int(rng.uniform(0, big)), int(rng.uniform(0, big)))
        dot = tuple(int(v) for v in _colour(rng))
        cv2.circle(canvas, p, int(rng.uniform(0.02, 0.04) * big), dot, -1, cv2.LINE_AA)
    small = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    small += rng.normal(0, 3, size=small.shape).astype(np.float32)
    return np.clip(small + 0.5, 0, 255).astype(np.uint8)


def _write(path: Path, image: np.ndarray) -> None:
    ext = path.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise InputError(f"{path}: OpenCV cannot encode {ext} images")
    write_atomic(path, buf.tobytes())


def generate(
    out_dir: str | os.PathLike,
    *,
    classes: int | Sequence[str] = 3,
    per_class: int = 60,
    size: int = 64,
    seed: int = 0,
    formats: Sequence[str] = ("png", "jpg"),
) -> Path:
    """Write `per_class` images of each class into `out_dir/<class>/NNNN.<fmt>`; returns out_dir.

    Formats alternate per image so readers are exercised on more than one codec.  Existing files
    with the same names are overwritten; nothing else in `out_dir` is touched.
    """
    names = class_names(classes)
    if per_class < 1:
        raise InputError(f"per_class must be at least 1, got {per_class}")
    if size < 8:
        raise InputError(f"size must be at least 8 pixels, got {size}")
    formats = tuple(f.lower().lstrip(".") for f in formats)
    bad = [f for f in formats if f not in FORMATS]
    if not formats or bad:
        raise InputError(f"formats must be among {list(FORMATS)}, got {list(formats)}")
    root = Path(out_dir)
    for ci, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        shape_id = list(SHAPES).index(name)
        for i in range(per_class):
            rng = np.random.default_rng([seed, shape_id, i])
            image = render(name, size=size, rng=rng)
            _write(folder / f"{name}_{i:04d}.{formats[(i + ci) % len(formats)]}", image)
    return root


def generate_split(
    out_dir: str | os.PathLike,
    *,
    classes: int | Sequence[str] = 3,
    train_per_class: int = 60,
    val_per_class: int = 20,
    size: int = 64,
    seed: int = 0,
    formats: Sequence[str] = ("png", "jpg"),
) -> tuple[Path, Path]:
    """Write `out_dir/train/` and `out_dir/val/` with disjoint images; returns both folders.

    The validation images come from a different seed stream, so no image appears in both.
    """
    root = Path(out_dir)
    opts = {"classes": classes, "size": size, "formats": formats}
    train_dir = generate(root / "train", per_class=train_per_class, seed=2 * seed, **opts)
    val_dir = generate(root / "val", per_class=val_per_class, seed=2 * seed + 1, **opts)
    return train_dir, val_dir
