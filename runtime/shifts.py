"""A fixed, seeded suite of camera-like shifts: how accuracy holds up on photos from elsewhere.

A model trained on one source's photos meets other cameras at the edge: lower resolution, blur,
sensor noise, heavy JPEG, dim or bright rooms, odd white balance, the subject off-centre or
further away, a tilted camera, a grayscale sensor.  Each shift below is applied to the photo at
its own resolution, before the shared `to_pixels` turns it into model input, so the model sees
exactly what a camera with that defect would hand the live loop.  Strengths are fixed and the
random parts (noise, blur direction, crop position, angle) come from a generator seeded by the
image's index, so two runs, two backends and two models see the same shifted photos.

    report = evaluate_shifts(load("model_int8.tflite"), "data/test")
    report["shifts"]["motion_blur"]["accuracy"], report["shift_mean_accuracy"]
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np

from .classifier import Classifier
from .dataset import Dataset
from .errors import ImageError, InputError
from .evaluate import match_folder
from .preprocess import load_bgr, to_pixels
from .progress import Progress

Shift = Callable[[np.ndarray, np.random.Generator], np.ndarray]

# Images decoded, shifted and classified at a time: bounds memory to a few MB per shift.
CHUNK = 64


def _short(bgr: np.ndarray) -> int:
    return min(bgr.shape[:2])


def low_resolution(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 40-pixel (short side) sensor, upscaled back: the subject's detail is gone."""
    h, w = bgr.shape[:2]
    scale = min(1.0, 40 / _short(bgr))
    small = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def defocus_blur(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A disk blur of radius 2% of the short side: a lens focused elsewhere."""
    r = max(1, round(0.02 * _short(bgr)))
    disk = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
    cv2.circle(disk, (r, r), r, 1.0, -1)
    return cv2.filter2D(bgr, -1, disk / disk.sum(), borderType=cv2.BORDER_REFLECT)


def motion_blur(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A straight streak 5% of the short side long, at a random angle: a moving camera."""
    n = max(3, round(0.05 * _short(bgr)) | 1)
    kernel = np.zeros((n, n), np.float32)
    angle = rng.uniform(0, math.pi)
    c, dx, dy = n // 2, math.cos(angle) * (n // 2), math.sin(angle) * (n // 2)
    cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1)
    return cv2.filter2D(bgr, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


def sensor_noise(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of 14 grey levels at the photo's resolution (high ISO, small sensor)."""
    noisy = bgr.astype(np.float32) + rng.normal(0.0, 14.0, bgr.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def jpeg_quality_10(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Re-encoded as JPEG at quality 10 from a 160-pixel short side (a stream's thumbnail)."""
    h, w = bgr.shape[:2]
    scale = min(1.0, 160 / _short(bgr))
    small = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 10])
    if not ok:
        raise ImageError("OpenCV could not encode the shifted image as JPEG")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def _exposure(bgr: np.ndarray, gain: float) -> np.ndarray:
    """Scale the light reaching the sensor by `gain` (in linear light, sRGB-like gamma 2.2)."""
    lut = np.clip(255 * ((np.arange(256) / 255) ** 2.2 * gain) ** (1 / 2.2), 0, 255)
    return cv2.LUT(bgr, lut.astype(np.uint8))


def underexposed(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A quarter of the light (two stops under), with the noise a dim room adds."""
    dark = _exposure(bgr, 0.25).astype(np.float32)
    return np.clip(dark + rng.normal(0.0, 4.0, bgr.shape), 0, 255).astype(np.uint8)


def overexposed(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """2.5x the light: highlights clip to white."""
    return _exposure(bgr, 2.5)


def _gains(bgr: np.ndarray, blue: float, red: float) -> np.ndarray:
    out = bgr.astype(np.float32) * np.array([blue, 1.0, red], np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def warm_white_balance(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Tungsten light without white balance: red up 25%, blue down 30%."""
    return _gains(bgr, blue=0.7, red=1.25)


def cool_white_balance(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shade or a cold LED: blue up 25%, red down 25%."""
    return _gains(bgr, blue=1.25, red=0.75)


def off_centre_crop(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 70% x 70% window at a random position: the subject off-centre, partly cut."""
    h, w = bgr.shape[:2]
    ch, cw = max(1, round(0.7 * h)), max(1, round(0.7 * w))
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return bgr[y0 : y0 + ch, x0 : x0 + cw]


def zoomed_out(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The subject at 60% of its size, its edge pixels extended around it."""
    h, w = bgr.shape[:2]
    py, px = round(h / 0.6 - h) // 2, round(w / 0.6 - w) // 2
    return cv2.copyMakeBorder(bgr, py, py, px, px, cv2.BORDER_REPLICATE)


def rotated(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A camera tilted by 10-15 degrees either way (edges filled by reflection)."""
    h, w = bgr.shape[:2]
    angle = rng.uniform(10, 15) * rng.choice((-1, 1))
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(bgr, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def grayscale(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A monochrome sensor (or a night mode): no colour at all."""
    return cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


SHIFTS: dict[str, Shift] = {
    "low_resolution": low_resolution,
    "defocus_blur": defocus_blur,
    "motion_blur": motion_blur,
    "sensor_noise": sensor_noise,
    "jpeg_quality_10": jpeg_quality_10,
    "underexposed": underexposed,
    "overexposed": overexposed,
    "warm_white_balance": warm_white_balance,
    "cool_white_balance": cool_white_balance,
    "off_centre_crop": off_centre_crop,
    "zoomed_out": zoomed_out,
    "rotated": rotated,
    "grayscale": grayscale,
}


def apply_shift(name: str, bgr: np.ndarray, *, index: int, seed: int = 0) -> np.ndarray:
    """`bgr` (uint8 HxWx3) under shift `name`; the random parts depend only on (seed, index)."""
    if name not in SHIFTS:
        raise InputError(f"unknown shift {name!r}; choose from {', '.join(SHIFTS)}")
    rng = np.random.default_rng([seed, index, list(SHIFTS).index(name)])
    return np.ascontiguousarray(SHIFTS[name](bgr, rng))


def _chunks(n: int) -> Iterator[range]:
    for start in range(0, n, CHUNK):
        yield range(start, min(n, start + CHUNK))


def evaluate_shifts(
    clf: Classifier,
    data: str | os.PathLike | Dataset,
    *,
    shifts: tuple[str, ...] | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Accuracy of `clf` on every image of `data` under each shift of the suite.

    Images are decoded once, at their own resolution, and shifted, preprocessed and classified
    a chunk at a time (memory stays bounded whatever the folder's size).  Files that cannot be
    decoded are skipped, as `evaluate` skips them.  Returns `{"shifts": {name: {"accuracy",
    "correct", "images"}}, "shift_mean_accuracy": mean over the shifts, "images": n}`.
    """
    names = tuple(SHIFTS) if shifts is None else tuple(shifts)
    for name in names:
        if name not in SHIFTS:
            raise InputError(f"unknown shift {name!r}; choose from {', '.join(SHIFTS)}")
    dataset = data if isinstance(data, Dataset) else match_folder(clf, data)[0]
    correct = dict.fromkeys(names, 0)
    seen = 0

    def shifted(i: int) -> np.ndarray | None:
        """Image i decoded once, then each shift of it at model resolution (None: undecodable)."""
        try:
            bgr = load_bgr(dataset.paths[i])
        except ImageError:
            return None
        return np.stack(
            [to_pixels(apply_shift(s, bgr, index=i, seed=seed), clf.contract) for s in names]
        )

    with (
        ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 2)) as pool,
        Progress(len(dataset), f"shifts ({clf.backend})", enabled=progress) as bar,
    ):
        for chunk in _chunks(len(dataset)):
            results = list(pool.map(shifted, chunk))
            kept = [k for k, r in enumerate(results) if r is not None]
            bar.update(len(chunk))
            if not kept:
                continue
            pixels = np.stack([results[k] for k in kept])  # images x shifts x H x W x 3
            targets = dataset.targets[[chunk[k] for k in kept]]
            for j, name in enumerate(names):
                predicted = clf.probs_pixels(np.ascontiguousarray(pixels[:, j])).argmax(axis=1)
                correct[name] += int((predicted == targets).sum())
            seen += len(kept)
    if seen == 0:
        raise dataset.nothing_decoded()
    per_shift = {
        name: {"accuracy": correct[name] / seen, "correct": correct[name], "images": seen}
        for name in names
    }
    mean = float(np.mean([v["accuracy"] for v in per_shift.values()]))
    return {"shifts": per_shift, "shift_mean_accuracy": mean, "images": seen}


def format_shifts(report: dict[str, Any], clean_accuracy: float | None = None) -> str:
    """The console table: accuracy per shift, the mean, and the drop from the clean accuracy."""
    rows = [("shift", "accuracy", "vs clean")]
    for name, v in report["shifts"].items():
        drop = "" if clean_accuracy is None else f"{100 * (v['accuracy'] - clean_accuracy):+.1f}"
        rows.append((name, f"{100 * v['accuracy']:.1f}%", drop))
    mean = report["shift_mean_accuracy"]
    drop = "" if clean_accuracy is None else f"{100 * (mean - clean_accuracy):+.1f}"
    rows.append(("mean over shifts", f"{100 * mean:.1f}%", drop))
    if clean_accuracy is not None:
        rows.insert(1, ("clean", f"{100 * clean_accuracy:.1f}%", ""))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{width}}  {b:>8}  {c:>8}".rstrip() for a, b, c in rows)
