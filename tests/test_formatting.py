"""runtime/formatting.py: the figures and tables every report prints, to the character."""

from __future__ import annotations

import pytest

from edgecnn.runtime.formatting import count, file_size, ms, pct, size, table


@pytest.mark.parametrize(
    ("n", "text"),
    [(None, "-"), (0, "0 B"), (1023, "1023 B"), (1536, "1.5 KB"), (5 << 20, "5.0 MB"),
     (3 << 30, "3.0 GB")],
)  # fmt: skip
def test_size_picks_the_unit(n, text):
    assert size(n) == text


def test_file_size_is_kb_below_a_megabyte_then_mb():
    assert file_size(37_000) == "36.1 KB"
    assert file_size(37_000, kb_digits=0) == "36 KB"
    assert file_size(3 << 20) == "3.00 MB"
    assert file_size(None, empty="–") == "–"


def test_shares_latencies_and_counts():
    assert pct(0.97312) == "97.3%" and pct(0.5, 0) == "50%" and pct(None) == "-"
    assert ms(0.4567) == "0.457" and ms(12.5) == "12.50" and ms(None, empty="–") == "–"
    assert [count(n) for n in (999, 1_500, 2_340_000, 7e9)] == ["999", "1.50k", "2.34M", "7.00G"]


def test_table_pads_aligns_and_rules():
    rows = [["int8", "tflite", "0.41"], ["model.onnx", "onnx", "12.50"]]
    assert table(["file", "backend", "ms"], rows).splitlines() == [
        "file        backend  ms",
        "int8        tflite   0.41",
        "model.onnx  onnx     12.50",
    ]
    assert table(["file", "backend", "ms"], rows, left=2, rule=True).splitlines() == [
        "file        backend     ms",
        "----------  -------  -----",
        "int8        tflite    0.41",
        "model.onnx  onnx     12.50",
    ]
    assert table(["a", "b"], [["1", "2"]], markdown=True) == "| a | b |\n|---|---|\n| 1 | 2 |"
