"""The camera-shift suite: each shift does what its name says, reproducibly, and
`evaluate_shifts` scores a model under every one of them on every backend."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from _runtime_fixtures import artifacts_once

from edgecnn.runtime import evaluate, load
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.shifts import SHIFTS, apply_shift, evaluate_shifts, format_shifts


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 240x320 BGR 'photo' with structure at every scale: gradients, edges, texture."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:240, 0:320].astype(np.float32)
    img = np.stack([x / 320 * 200, y / 240 * 200, (x + y) / 560 * 200], axis=-1) + 30
    img += rng.normal(0, 6, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    cv2.rectangle(img, (100, 70), (220, 170), (20, 60, 200), -1)
    cv2.circle(img, (160, 120), 30, (240, 240, 240), -1)
    return img


def _sharpness(bgr: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.CV_32F).var())


@pytest.mark.parametrize("name", list(SHIFTS))
def test_every_shift_is_a_reproducible_change_of_the_photo(photo, name):
    once = apply_shift(name, photo, index=3)
    assert once.dtype == np.uint8 and once.ndim == 3 and once.shape[2] == 3
    assert np.array_equal(once, apply_shift(name, photo, index=3))  # same image, same result
    same_shape = once.shape == photo.shape
    assert not same_shape or np.abs(once.astype(int) - photo).mean() > 1.0, "no visible change"


def test_shifts_do_what_their_names_say(photo):
    def shift(name):
        return apply_shift(name, photo, index=0)

    sharp = _sharpness(photo)
    for name in ("low_resolution", "defocus_blur", "motion_blur", "jpeg_quality_10"):
        assert _sharpness(shift(name)) < 0.5 * sharp, name
    assert _sharpness(shift("sensor_noise")) > sharp
    assert shift("underexposed").mean() < 0.6 * photo.mean()
    assert shift("overexposed").mean() > 1.2 * photo.mean()
    gray = shift("grayscale")
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    warm, cool = shift("warm_white_balance"), shift("cool_white_balance")
    assert warm[..., 2].mean() > photo[..., 2].mean() > cool[..., 2].mean()  # red
    assert warm[..., 0].mean() < photo[..., 0].mean() < cool[..., 0].mean()  # blue
    crop = shift("off_centre_crop")
    assert crop.shape[:2] == (168, 224)
    zoomed = shift("zoomed_out")
    assert zoomed.shape[0] > 1.6 * 240 and np.array_equal(
        zoomed[(zoomed.shape[0] - 240) // 2 :][:240, (zoomed.shape[1] - 320) // 2 :][:, :320],
        photo,
    )
    assert shift("rotated").shape == photo.shape


def test_random_parts_depend_on_the_image_index_and_seed(photo):
    a = apply_shift("off_centre_crop", photo, index=0)
    b = apply_shift("rotated", photo, index=0)
    assert any(
        not np.array_equal(a, apply_shift("off_centre_crop", photo, index=i)) for i in range(1, 6)
    )
    assert not np.array_equal(b, apply_shift("rotated", photo, index=0, seed=1))
    with pytest.raises(InputError, match="unknown shift 'fog'"):
        apply_shift("fog", photo, index=0)


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    return artifacts_once(tmp_path_factory)


@pytest.mark.parametrize(
    ("artifact", "backend"), [("tflite_int8", "tflite"), ("onnx", "onnx"), ("onnx", "opencv")]
)
def test_evaluate_shifts_scores_every_shift_on_every_backend(arts, artifact, backend):
    clf = load(arts[artifact], backend=backend, threads=1)
    report = evaluate_shifts(clf, arts["data"], progress=False)
    clean = evaluate(clf, arts["data"], progress=False)["accuracy"]
    assert set(report["shifts"]) == set(SHIFTS)
    n = report["images"]
    assert n == sum(len(list(p.iterdir())) for p in arts["data"].iterdir())
    for name, v in report["shifts"].items():
        assert v["images"] == n and v["accuracy"] == pytest.approx(v["correct"] / n), name
    mean = np.mean([v["accuracy"] for v in report["shifts"].values()])
    assert report["shift_mean_accuracy"] == pytest.approx(mean)
    # the fixture's classes differ only by colour: without colour the model is lost, while a
    # shift that keeps colour and shape (a small tilt) keeps it right
    assert clean >= 0.9
    assert report["shifts"]["grayscale"]["accuracy"] <= 0.6
    assert report["shifts"]["rotated"]["accuracy"] >= 0.8
    table = format_shifts(report, clean)
    assert "grayscale" in table and "mean over shifts" in table and "clean" in table


def test_backends_see_the_same_shifted_pixels(arts):
    """Shifts are seeded by image, so two backends running the same float model agree."""
    reports = [
        evaluate_shifts(load(arts["onnx"], backend=b, threads=1), arts["data"], progress=False)
        for b in ("onnx", "opencv")
    ]
    for name in SHIFTS:
        assert reports[0]["shifts"][name]["correct"] == reports[1]["shifts"][name]["correct"]


def test_a_subset_of_shifts_and_unknown_names(arts):
    clf = load(arts["tflite_int8"], threads=1)
    report = evaluate_shifts(clf, arts["data"], shifts=("grayscale",), progress=False)
    assert list(report["shifts"]) == ["grayscale"]
    with pytest.raises(InputError, match="unknown shift"):
        evaluate_shifts(clf, arts["data"], shifts=("fog",), progress=False)


def test_eval_cli_prints_the_shift_table_and_writes_it_to_json(arts, tmp_path, capsys):
    import json

    from edgecnn.cli import main

    out_json = tmp_path / "eval.json"
    argv = [
        "eval",
        str(arts["tflite_int8"]),
        str(arts["data"]),
        "--shifts",
        "--json",
        str(out_json),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads(out_json.read_text())
    assert set(report["shifts"]) == set(SHIFTS) and 0 <= report["accuracy"] <= 1
    assert report["shift_mean_accuracy"] == pytest.approx(
        np.mean([v["accuracy"] for v in report["shifts"].values()])
    )
    for name, v in report["shifts"].items():
        assert f"{100 * v['accuracy']:.1f}%" in printed.split(name, 1)[1].splitlines()[0]
    assert "mean over shifts" in printed
