"""Turn a bench result (`edgecnn.bench.bench`) into tables, files, a plot and a comparison.

Everything here works on the plain JSON dict, so a `bench.json` from another machine or an
earlier commit can be printed, plotted or compared without re-running anything.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from edgecnn.runtime.errors import InputError
from edgecnn.runtime.files import write_atomic
from edgecnn.runtime.formatting import ms, pct, size, table

REGRESSION_RATIO = 1.15  # p50 slower than this x the old run: flagged (run-to-run spread is ~15%)
ACCURACY_DROP = 0.01  # accuracy lower by more than this (absolute): flagged
CSV_FIELDS = (
    "artifact",
    "format",
    "backend",
    "threads",
    "file_bytes",
    "load_s",
    "first_ms",
    "warmup_runs",
    "runs",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "fps",
    "peak_rss_bytes",
    "accuracy",
    "agreement",
    "n_images",
    "delegate",
    "imported_tensorflow",
    "error",
    "skipped",
    "path",
)


# --- formatting helpers -------------------------------------------------------------------


def _num(value, fmt: str, empty: str = "-") -> str:
    return empty if value is None else format(value, fmt)


def _grid(header: list[str], rows: list[list[str]], *, markdown: bool = False) -> str:
    """Artifact, backend and threads left-aligned, the figures right-aligned."""
    return table(header, rows, left=3, markdown=markdown)


def _row_cells(r: dict) -> list[str]:
    if r.get("error"):
        return (
            [r["artifact"], r["backend"], str(r["threads"]), size(r.get("file_bytes"))]
            + ["-"] * 8
            + [_failure(r)]
        )
    return [
        r["artifact"],
        r["backend"],
        str(r["threads"]),
        size(r.get("file_bytes")),
        _num(r.get("load_s") and r["load_s"] * 1e3, ".0f"),
        _num(r.get("first_ms"), ".1f"),
        ms(r.get("p50_ms")),
        ms(r.get("p90_ms")),
        ms(r.get("p99_ms")),
        _num(r.get("fps"), ".0f"),
        size(r.get("peak_rss_bytes")),
        f"{pct(r.get('accuracy'))} / {pct(r.get('agreement'))}",
        _notes(r),
    ]


def _failure(r: dict) -> str:
    """The notes cell of a row that was not measured: skipped (backend not installed) or why
    its worker failed."""
    return f"skipped: {r['error']}" if r.get("skipped") else f"ERROR: {r['error']}"


def _notes(r: dict) -> str:
    notes = [r["delegate"]] if r.get("delegate") else []
    if r.get("imported_tensorflow") and r.get("backend") != "keras":
        notes.append("imported TensorFlow!")
    return "; ".join(notes)


HEADER = [
    "artifact",
    "backend",
    "thr",
    "size",
    "load ms",
    "1st ms",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "FPS",
    "peak RSS",
    "acc / agree",
    "notes",
]


def format_env(result: dict) -> str:
    env = result["env"]
    versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())
    delegates = ", ".join(env.get("tflite_delegates") or []) or "none reported"
    cfg = result.get("config", {})
    lines = [
        f"CPU: {env.get('cpu')} ({env.get('machine')}), {env.get('cores')} cores "
        f"({env.get('usable_cores')} usable)",
        f"OS: {env.get('os')}  Python {env.get('python')}",
        f"Versions: {versions}",
        f"TFLite delegate: {delegates}",
        f"Latency: batch 1, >= {cfg.get('runs')} runs and >= {cfg.get('min_seconds', 0)} s after "
        f">= {cfg.get('warmup')} warm-up runs and >= {cfg.get('warmup_seconds')} s; "
        "each backend in its own process",
    ]
    data = result.get("data")
    if data:
        ref = (
            data.get("reference")
            or f"none ({data.get('reference_error') or 'no model.keras found'})"
        )
        lines.append(f"Data: {data['dir']} ({data['n_images']} images); agreement vs Keras {ref}")
    return "\n".join(lines)


def format_table(result: dict, *, markdown: bool = False) -> str:
    return _grid(HEADER, [_row_cells(r) for r in result["rows"]], markdown=markdown)


def format_pipeline(result: dict, *, markdown: bool = False) -> str:
    rows = result.get("pipeline")
    if not rows:
        return ""
    header = [
        "artifact",
        "backend",
        "thr",
        "frames",
        "FPS",
        "capture",
        "preprocess",
        "inference",
        "postprocess",
        "total p50",
        "total p99",
        "notes",
    ]
    cells = []
    for r in rows:
        if r.get("error"):
            cells.append(
                [r.get("artifact", "-"), r.get("backend", "-"), str(r.get("threads", "-"))]
                + ["-"] * 8
                + [_failure(r)]
            )
            continue
        st = r.get("stages", {})
        cells.append(
            [
                r.get("artifact", "-"),
                r.get("backend", "-"),
                str(r.get("threads", "-")),
                str(r.get("frames", "-")),
                _num(r.get("fps"), ".1f"),
                *(
                    _num(st.get(k, {}).get("p50_ms"), ".2f")
                    for k in ("capture", "preprocess", "inference", "postprocess")
                ),
                _num(st.get("total", {}).get("p50_ms"), ".2f"),
                _num(st.get("total", {}).get("p99_ms"), ".2f"),
                r.get("note", ""),
            ]
        )
    return "Pipeline (ms per frame, p50 unless noted):\n" + _grid(header, cells, markdown=markdown)


def render_text(result: dict) -> str:
    parts = [format_env(result), "", format_table(result)]
    pipe = format_pipeline(result)
    if pipe:
        parts += ["", pipe]
    return "\n".join(parts)


def render_markdown(result: dict) -> str:
    env = "\n".join(f"- {line}" for line in format_env(result).splitlines())
    parts = ["# edgecnn bench", "", env, "", format_table(result, markdown=True)]
    pipe = format_pipeline(result, markdown=True)
    if pipe:
        parts += ["", pipe]
    return "\n".join(parts) + "\n"


def render_csv(result: dict) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in result["rows"]:
        writer.writerow({k: r.get(k) for k in CSV_FIELDS})
    return buf.getvalue()


# --- files ----------------------------------------------------------------------------------


def _write(path: str | os.PathLike, data: str | bytes) -> Path:
    """`data` into `path` (temp file + rename), its folder made first; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
    return path


def write_json(result: dict, path: str | os.PathLike) -> Path:
    return _write(path, json.dumps(result, indent=2) + "\n")


def write_csv(result: dict, path: str | os.PathLike) -> Path:
    return _write(path, render_csv(result))


def write_markdown(result: dict, path: str | os.PathLike) -> Path:
    return _write(path, render_markdown(result))


def write_plot(result: dict, path: str | os.PathLike) -> Path:
    """PNG: p50 latency bars per artifact/backend/threads with p99 marks; accuracy beside it.

    Drawn with OpenCV (a core dependency), so `edgecnn bench` writes it on a device too."""
    from edgecnn._bench_plot import encode_png, render_plot

    return _write(path, encode_png(render_plot(result)))


# the writer of each of bench.OUTPUT_FILES
WRITERS = {"json": write_json, "csv": write_csv, "md": write_markdown, "png": write_plot}


# --- comparison -----------------------------------------------------------------------------


def load_result(path: str | os.PathLike) -> dict:
    """A bench.json written by `edgecnn bench`; InputError for anything else."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not a bench JSON file ({e})") from None
    from edgecnn.bench import SCHEMA

    if (
        not isinstance(data, dict)
        or data.get("schema") != SCHEMA
        or not isinstance(data.get("rows"), list)
    ):
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise InputError(
            f"{path}: not an edgecnn bench result (expected schema {SCHEMA!r}, found {found!r})"
        )
    return data


def _key(r: dict) -> tuple[str, str, int]:
    return (r["artifact"], r["backend"], int(r["threads"]))


def check_comparable(rows: list[dict], old: dict, *, source: str = "old result") -> None:
    """InputError unless `old` has at least one artifact x backend x threads row among `rows`."""
    old_keys = {_key(r) for r in old["rows"]}
    if not any(_key(r) in old_keys for r in rows):
        raise InputError(
            f"{source}: shares no artifact x backend x threads row with this run; nothing to compare"
        )


def compare(result: dict, old: dict, *, source: str = "old result") -> list[dict]:
    """Ratios new/old for every row present in both; regressions flagged.

    InputError when the two results share no artifact x backend x threads row (another shape)."""
    old_rows = {_key(r): r for r in old["rows"] if not r.get("error")}
    out = []
    for r in result["rows"]:
        o = old_rows.get(_key(r))
        if o is None or r.get("error"):
            continue
        item = {
            "artifact": r["artifact"],
            "backend": r["backend"],
            "threads": r["threads"],
            "flags": [],
        }
        for k in ("p50_ms", "p99_ms", "load_s", "peak_rss_bytes"):
            if r.get(k) and o.get(k):
                item[f"{k}_ratio"] = r[k] / o[k]
        if item.get("p50_ms_ratio", 0) > REGRESSION_RATIO:
            item["flags"].append(f"p50 {item['p50_ms_ratio']:.2f}x slower")
        if r.get("accuracy") is not None and o.get("accuracy") is not None:
            item["accuracy_delta"] = r["accuracy"] - o["accuracy"]
            if item["accuracy_delta"] < -ACCURACY_DROP:
                item["flags"].append(f"accuracy {100 * item['accuracy_delta']:+.1f} pts")
        out.append(item)
    if not out:
        raise InputError(
            f"{source}: shares no artifact x backend x threads row with this run; nothing to compare"
        )
    return out


def format_compare(items: list[dict]) -> str:
    header = [
        "artifact",
        "backend",
        "thr",
        "p50 new/old",
        "p99 new/old",
        "load new/old",
        "acc delta",
        "flag",
    ]
    cells = [
        [
            i["artifact"],
            i["backend"],
            str(i["threads"]),
            _num(i.get("p50_ms_ratio"), ".2f") + "x",
            _num(i.get("p99_ms_ratio"), ".2f") + "x",
            _num(i.get("load_s_ratio"), ".2f") + "x",
            "-" if i.get("accuracy_delta") is None else f"{100 * i['accuracy_delta']:+.1f} pts",
            "REGRESSION: " + "; ".join(i["flags"]) if i["flags"] else "ok",
        ]
        for i in items
    ]
    n_bad = sum(1 for i in items if i["flags"])
    return f"Compared with the earlier run ({n_bad} regression(s)):\n" + _grid(header, cells)
