"""Accuracy of any opened model on a folder-per-class dataset (what `edgecnn eval` prints).

Class folders are matched to the model's labels by name, so a model's class order never has to
agree with the folder order.  A model without labels (class_0..N-1) is matched to the sorted
folder names by index, the order `edgecnn train` uses.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from .classifier import Classifier
from .confusion import confused_pairs
from .dataset import Dataset, Decoded, list_dataset, load_pixels
from .errors import InputError
from .metrics import classification_report
from .progress import Progress


def _has_assumed_labels(clf: Classifier) -> bool:
    return bool(clf.contract.info.get("assumed")) or all(
        label == f"class_{i}" for i, label in enumerate(clf.labels)
    )


def match_folder(clf: Classifier, root: str | os.PathLike) -> tuple[Dataset, tuple[str, ...], str]:
    """The files of a class-per-folder dataset, in the model's class order: (dataset, class
    names, where the names came from)."""
    if _has_assumed_labels(clf):
        dataset = list_dataset(root)
        if len(dataset.classes) > clf.num_classes:
            raise InputError(
                f"{root}: {len(dataset.classes)} class folders but the model has only "
                f"{clf.num_classes} outputs"
            )
        names = tuple(dataset.classes) + clf.labels[len(dataset.classes) :]
        return dataset, names, "sorted folder names (the model file has no labels)"
    return list_dataset(root, classes=clf.labels), clf.labels, "model"


# Images of a folder decoded and classified at a time: memory stays bounded whatever the
# folder's size (2,048 images at the default net's 88x88 are 48 MB of pixels).
CHUNK = 2048


def _predict_folder(
    clf: Classifier, dataset: Dataset, *, batch: int, progress: bool | None
) -> tuple[np.ndarray, np.ndarray, list, float]:
    """(targets, predicted class indices, skipped files, seconds of inference) for every image
    of `dataset`, decoded and classified `CHUNK` images at a time."""
    targets, predicted, skipped, seconds = [], [], [], 0.0
    with Progress(len(dataset), f"evaluating ({clf.backend})", enabled=progress) as bar:
        for start in range(0, len(dataset), CHUNK):
            part = dataset.subset(np.arange(start, min(len(dataset), start + CHUNK)))
            decoded = load_pixels(part, clf.contract, progress=False, allow_none=True)
            skipped.extend(decoded.skipped)
            if len(decoded.targets):
                t0 = time.perf_counter()
                probs = clf.probs_pixels(decoded.pixels, batch=max(1, int(batch)))
                seconds += time.perf_counter() - t0
                targets.append(decoded.targets)
                predicted.append(probs.argmax(axis=1))
            bar.update(len(part))
    if not targets:
        raise dataset.nothing_decoded()
    return np.concatenate(targets), np.concatenate(predicted), skipped, seconds


def _probs_with_progress(
    clf: Classifier, pixels: np.ndarray, *, batch: int, progress: bool | None
) -> np.ndarray:
    n = len(pixels)
    batch = max(1, int(batch))
    out = np.empty((n, clf.num_classes), dtype=np.float32)
    with Progress(n, f"inference ({clf.backend})", enabled=progress) as bar:
        for start in range(0, n, batch):
            chunk = pixels[start : start + batch]
            out[start : start + len(chunk)] = clf.probs_pixels(chunk, batch=batch)
            bar.update(len(chunk))
    return out


def evaluate(
    clf: Classifier,
    data: str | os.PathLike | Decoded,
    *,
    batch: int = 32,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Classify every image of `data` (a class-per-folder directory, or pixels already decoded
    with this model's contract) and report accuracy, per-class precision/recall/F1 and the
    confusion matrix, plus the files that could not be decoded and why.

    Example:
        >>> report = evaluate(load("model.onnx"), "data/test")  # doctest: +SKIP
        >>> report["accuracy"], report["confusion_matrix"]  # doctest: +SKIP
        (0.95, [[48, 2], [3, 47]])
    """
    if isinstance(data, Decoded):
        names, source, root = clf.labels, "model", None
        expected = (clf.contract.height, clf.contract.width, 3)
        if data.pixels.shape[1:] != expected:
            raise InputError(
                f"decoded pixels have shape {data.pixels.shape[1:]}, the model takes {expected}"
            )
        start = time.perf_counter()
        probs = _probs_with_progress(clf, data.pixels, batch=batch, progress=progress)
        seconds = time.perf_counter() - start
        targets, skipped = data.targets, data.skipped
        predicted = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    else:
        root = data
        dataset, names, source = match_folder(clf, data)
        targets, predicted, skipped, seconds = _predict_folder(
            clf, dataset, batch=batch, progress=progress
        )
    report = classification_report(targets, predicted, names)
    return {
        **report,
        "confused_pairs": confused_pairs(report["confusion_matrix"], names),
        "model": str(clf.path),
        "backend": clf.backend,
        "data": None if root is None else str(root),
        "label_source": source,
        "inference_seconds": round(seconds, 4),
        "skipped": [{"path": str(p), "reason": r} for p, r in skipped],
    }
