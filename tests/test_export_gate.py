"""The quantized formats' gate (`edgecnn.export._verify.compare`) on constructed probabilities.

An uncertain 5-class model: 56% accurate, with answers of three kinds: sure and right, sure and
wrong, and near-ties between two classes (the true class being the top one, the second one or
neither, a third each).
Rounding may swap near-ties both ways; what a broken int8 file does is different.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgecnn.export._verify import compare

C = 5
LABELS = ("a", "b", "c", "d", "e")
SURE_RIGHT, SURE_WRONG, TIES = 60, 10, 90  # 160 images


def _probs(top: int, p_top: float, second: int, p_second: float) -> np.ndarray:
    rest = (1.0 - p_top - p_second) / (C - 2)
    p = np.full(C, rest)
    p[top], p[second] = p_top, p_second
    return p


def _keras() -> tuple[np.ndarray, np.ndarray]:
    """(reference probabilities, targets): Keras is right on 60 + 30 = 90 of 160 (56%)."""
    probs, targets = [], []
    for i in range(SURE_RIGHT):
        k = i % C
        probs.append(_probs(k, 0.7, (k + 1) % C, 0.1))
        targets.append(k)
    for i in range(SURE_WRONG):
        k = i % C
        probs.append(_probs((k + 2) % C, 0.7, k, 0.1))
        targets.append(k)
    for i in range(TIES):
        k = i % C
        probs.append(_probs(k, 0.32, (k + 1) % C, 0.30))
        targets.append((k, (k + 1) % C, (k + 3) % C)[i % 3])  # the top, the second, neither
    return np.array(probs, dtype=np.float32), np.array(targets)


def _swap_top_two(probs: np.ndarray, rows) -> np.ndarray:
    out = probs.copy()
    for r in rows:
        a, b = np.argsort(out[r])[-2:]
        out[r, [a, b]] = out[r, [b, a]]
    return out


def _tie_rows(*, truth: str) -> list[int]:
    """Near-tie rows whose true class is Keras' top answer, or its second one."""
    first = SURE_RIGHT + SURE_WRONG
    return [first + i for i in range(TIES) if i % 3 == ("top", "second").index(truth)]


def _failed(parity) -> set[str]:
    return {c.name for c in parity.failures()}


@pytest.fixture(scope="module")
def keras():
    return _keras()


def test_near_tie_swaps_with_unchanged_accuracy_pass(keras):
    """The user's case: a few percent of answers swapped between near-equal classes, in both
    directions, accuracy to the image: refused by 98% agreement, passed by the gate."""
    reference, targets = keras
    rows = _tie_rows(truth="top")[:3] + _tie_rows(truth="second")[:3]  # 3 lost, 3 gained
    probs = _swap_top_two(reference, rows) + np.float32(0.004)  # and output rounding
    parity = compare("tflite-int8", probs, reference, targets, backend="tflite", labels=LABELS)
    assert parity.agreement == pytest.approx(1 - 6 / 160) and parity.agreement < 0.98
    assert parity.accuracy == parity.reference_accuracy == pytest.approx(90 / 160)
    assert parity.passed, parity.summary()
    assert [c.name for c in parity.criteria] == [
        "finite_outputs",
        "accuracy_change",
        "confident_agreement",
        "probability_shift",
        "lost_classes",
        "dominant_class",
    ]
    accuracy = parity.criteria[1]
    assert accuracy.detail["keras_only_right"] == 3 and accuracy.detail["file_only_right"] == 3
    assert accuracy.value == 0.0 and accuracy.limit == pytest.approx(-2 * np.sqrt(6) / 160)


def test_a_small_drop_within_the_noise_passes(keras):
    reference, targets = keras
    rows = _tie_rows(truth="top")[:5] + _tie_rows(truth="second")[:2]  # net -3 images: -1.9 points
    probs = _swap_top_two(reference, rows)
    parity = compare("onnx-int8", probs, reference, targets, backend="onnx", labels=LABELS)
    assert parity.accuracy - parity.reference_accuracy == pytest.approx(-3 / 160)
    assert parity.passed, parity.summary()  # 2 SE = 2 sqrt(7) / 160 = 3.3 points


def test_a_real_accuracy_drop_is_refused(keras):
    reference, targets = keras
    probs = _swap_top_two(reference, _tie_rows(truth="top")[:20])  # 20 right answers lost
    parity = compare("tflite-int8", probs, reference, targets, backend="tflite", labels=LABELS)
    assert _failed(parity) == {"accuracy_change"}
    assert "accuracy 43.8% vs Keras 56.2% (−12.5 ± 2.8 points, −5.6 allowed)" in parity.summary()


def test_a_confident_answer_changed_is_refused(keras):
    reference, targets = keras
    probs = reference.copy()
    probs[0] = _probs(3, 0.6, 0, 0.2)  # Keras says "a" with p 0.7 (margin 0.6)
    parity = compare("tflite-int8", probs, reference, targets, backend="tflite", labels=LABELS)
    assert _failed(parity) == {"confident_agreement"}
    assert "1 of 70 confident answers changed" in parity.summary()


def test_a_collapsed_file_is_refused(keras):
    """Every answer "a", as an int8 file calibrated on the wrong pixel range gives."""
    reference, targets = keras
    probs = np.tile(_probs(0, 0.9, 1, 0.05), (len(reference), 1)).astype(np.float32)
    parity = compare("tflite-int8", probs, reference, targets, backend="tflite", labels=LABELS)
    assert {"accuracy_change", "lost_classes", "dominant_class"} <= _failed(parity)
    lost = next(c for c in parity.criteria if c.name == "lost_classes")
    assert set(lost.detail["classes"]) == {"b", "c", "d", "e"}
    dominant = next(c for c in parity.criteria if c.name == "dominant_class")
    assert dominant.says == "100% of answers are 'a' (Keras 20%)"


def test_a_class_given_to_another_is_refused_even_without_an_accuracy_change(keras):
    """Keras' clear but wrong "c" answers all become "d": accuracy unchanged, a class lost."""
    reference, targets = keras
    probs = reference.copy()
    rows = [r for r in range(SURE_RIGHT, SURE_RIGHT + SURE_WRONG) if reference[r].argmax() == 2]
    rows += [i for i in range(SURE_RIGHT) if reference[i].argmax() == 2]
    for r in rows:
        probs[r] = _probs(3, 0.45, 2, 0.35)
    parity = compare("tflite-drq", probs, reference, targets, backend="tflite", labels=LABELS)
    assert "lost_classes" in _failed(parity)


def test_probabilities_that_moved_are_refused(keras):
    reference, targets = keras
    probs = 0.6 * reference + 0.4 / C  # same answers, flattened scores
    parity = compare("tflite-int8", probs, reference, targets, backend="tflite", labels=LABELS)
    assert parity.agreement == 1.0
    assert _failed(parity) == {"probability_shift"}


def test_outputs_that_are_not_probabilities_are_refused(keras):
    reference, targets = keras
    probs = reference.copy()
    probs[5, 1] = np.nan
    parity = compare("tflite-int8", probs, reference, targets, backend="tflite", labels=LABELS)
    assert "finite_outputs" in _failed(parity)


@pytest.mark.parametrize("fmt", ["tflite-fp32", "onnx", "tflite-fp16"])
def test_float_files_keep_their_agreement_gate(keras, fmt):
    """One swapped near-tie is a conversion bug in a float file (99.9% agreement required)."""
    reference, targets = keras
    ok = compare(fmt, reference.copy(), reference, targets, backend="tflite", labels=LABELS)
    assert ok.passed and ok.gate == "float"
    probs = _swap_top_two(reference, _tie_rows(truth="top")[:1])
    assert not compare(fmt, probs, reference, targets, backend="tflite").passed
