"""`edgecnn demo` end to end on the tiny budget, and its report opened in headless Chromium.

One tiny demo runs once for the module (generated 32x32 data, one epoch, every export format,
every backend benched a few times, a 12-frame clip); the tests read what it left behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecnn.demo import MARKER, demo
from edgecnn.export import FILENAMES
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.shifts import SHIFTS

BACKENDS = ("tflite", "onnx", "opencv", "keras")


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory) -> tuple[Path, str]:
    """The tiny demo, run into a folder that already holds an earlier demo's leftovers."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    out.mkdir()
    (out / MARKER).write_text("earlier demo\n")
    (out / "stale.txt").write_text("from an earlier demo\n")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        report = demo(out, budget="tiny", progress=True)
    return report, printed.getvalue()


def test_demo_replaces_an_earlier_demo_and_writes_every_stage(tiny_demo):
    report, _ = tiny_demo
    root = report.parent
    assert report.name == "report.html" and report.is_file()
    assert not (root / "stale.txt").exists()
    assert (root / MARKER).is_file()
    run = root / "run"
    for name in ("model.keras", "training.png", "confusion.png", "metrics.json"):
        assert (run / name).is_file(), name
    manifest = json.loads((run / "export" / "export.json").read_text())
    assert set(manifest["artifacts"]) == set(FILENAMES)
    # A one-epoch model sits near chance with almost uniform probabilities, so a format may
    # flip a tie and fail verification: the demo must then go on without that file.
    for fmt, entry in manifest["artifacts"].items():
        assert (run / "export" / FILENAMES[fmt]).is_file() == entry["passed"], fmt
    assert (
        manifest["artifacts"]["tflite-fp32"]["passed"] and manifest["artifacts"]["onnx"]["passed"]
    )
    bench = json.loads((run / "bench" / "bench.json").read_text())
    measured = {r["backend"] for r in bench["rows"] if not r.get("error")}
    assert measured == set(BACKENDS)
    assert all(r["p50_ms"] > 0 and r["accuracy"] is not None for r in bench["rows"])
    assert (run / "bench" / "bench.png").is_file()

    summary = json.loads((root / "demo.json").read_text())
    live = summary["live"]
    frames = summary["budget"]["clip_images"] * summary["budget"]["frames_per_image"]
    assert live["summary"]["frames"] == frames == live["frames_in_clip"]
    expected_model = "model_int8.tflite" if manifest["artifacts"]["tflite-int8"]["passed"] else None
    assert Path(live["model"]).is_file()
    assert expected_model in (None, Path(live["model"]).name)
    lines = (root / "live" / "live.jsonl").read_text().splitlines()
    assert len(lines) == frames
    cap = cv2.VideoCapture(str(root / "live" / "annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
    cap.release()
    assert list(summary["steps"]) == ["data", "train", "export", "bench", "shifts", "live",
                                      "report"]  # fmt: skip


def test_demo_prints_a_summary_table(tiny_demo):
    report, printed = tiny_demo
    for step in ("data", "train", "export", "bench", "shifts", "live", "report", "total"):
        assert re.search(rf"^{step}\s+\d+\.\d", printed, re.M), step
    assert re.search(r"^export\s+\d+\.\d\s+[2-6]/6 formats verified", printed, re.M)
    shifts = json.loads((report.parent / "demo.json").read_text())["shifts"]
    line = re.search(r"^shifts\s+\d+\.\d\s+(\S+) on (\d+) held-back images: clean "
                     r"(\d+\.\d)%, mean over 13 camera shifts (\d+\.\d)% \(worst (\w+) ",
                     printed, re.M)  # fmt: skip
    assert line, "no shifts line"
    assert line[1] == Path(shifts["model"]).name and int(line[2]) == shifts["images"]
    assert float(line[3]) == pytest.approx(100 * shifts["accuracy"], abs=0.05)
    assert float(line[4]) == pytest.approx(100 * shifts["shift_mean_accuracy"], abs=0.05)
    worst = min(shifts["shifts"].values(), key=lambda v: v["accuracy"])["accuracy"]
    assert shifts["shifts"][line[5]]["accuracy"] == worst
    assert printed.rstrip().endswith(f"open {report}")


def _img_sources(html: str) -> list[str]:
    return re.findall(r'<img[^>]*\ssrc="([^"]*)"', html)


def test_report_is_self_contained_with_tables_and_images(tiny_demo):
    report, _ = tiny_demo
    html = report.read_text(encoding="utf-8")
    sources = _img_sources(html)
    assert sources and all(s.startswith(("data:image/png;base64,", "data:image/jpeg;base64,"))
                           for s in sources)  # fmt: skip
    # 3 classes x 8 samples, training curves, confusion matrix, bench plot, 3 live frames,
    # one held-back image clean and under 13 shifts
    assert len(sources) >= 3 * 8 + 3 + 3 + 14
    assert len([s for s in sources if s.startswith("data:image/jpeg")]) == 3 + 14
    for uri in sources[:1] + sources[-1:]:
        import base64

        data = np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8)
        assert cv2.imdecode(data, cv2.IMREAD_COLOR) is not None
    assert not re.search(r'(src|href)="(https?:)?//', html), "external reference in report"
    assert "url(http" not in html and "@import" not in html
    assert html.count("<table") >= 5  # per-class metrics, export, bench, shifts, live stages
    for name in FILENAMES.values():  # verified, or struck through when not kept
        assert f"<code>{name}</code>" in html or f'<code class="gone">{name}</code>' in html
    for backend in BACKENDS:
        assert f"<td>{backend}</td>" in html
    for text in ("scp ", 'pip install "edgecnn[tflite]"',
                 "edgecnn run model_int8.tflite --source 0 --serve 0.0.0.0:8080",
                 "edgecnn train photos/", "edgecnn export runs/mine"):  # fmt: skip
        assert text in __import__("html").unescape(html), text


def _shift_rows(html: str) -> list[list[str]]:
    """The cells of the report's camera-shift table, one list a row."""
    body = re.search(r'<table class="shifts">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert body, "no camera-shift table in the report"
    return [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body[1])]


def _percent(cell: str) -> float:
    return float(re.fullmatch(r"(\d+\.\d)%", cell)[1]) / 100


def test_demo_scores_the_int8_file_under_the_camera_shifts(tiny_demo):
    """demo.json holds the shift suite on every held-back image; the report's table shows the
    same figures: clean, 13 shifts, their mean, each with the image it was scored on."""
    report, _ = tiny_demo
    root = report.parent
    summary = json.loads((root / "demo.json").read_text())
    sh = summary["shifts"]
    b = summary["budget"]
    n = b["heldback_per_class"] * len(b["classes"])
    assert sh["images"] == n and Path(sh["model"]) == Path(summary["live"]["model"])
    assert list(sh["shifts"]) == list(SHIFTS)
    for v in [sh, *sh["shifts"].values()]:
        assert 0.0 <= v["accuracy"] <= 1.0
    for name, v in sh["shifts"].items():
        assert v["images"] == n and v["accuracy"] == v["correct"] / n, name
    assert sh["correct"] / n == sh["accuracy"]
    assert sh["shift_mean_accuracy"] == pytest.approx(
        np.mean([v["accuracy"] for v in sh["shifts"].values()])
    )
    # the clean figure is what `edgecnn eval` reports for the same file on the same images
    from edgecnn.runtime import evaluate, load

    clf = load(sh["model"], backend=sh["backend"], threads=sh["threads"])
    assert evaluate(clf, sh["data"], progress=False)["accuracy"] == sh["accuracy"]

    html = report.read_text(encoding="utf-8")
    rows = _shift_rows(html)
    assert len(rows) == 1 + 13 + 1
    assert [r[1] for r in rows] == ["clean", *(f"<code>{s}</code>" for s in SHIFTS),
                                    "mean over 13 shifts"]  # fmt: skip
    expected = [sh["accuracy"], *(v["accuracy"] for v in sh["shifts"].values()),
                sh["shift_mean_accuracy"]]  # fmt: skip
    for row, value in zip(rows, expected):
        assert 0.0 <= _percent(row[3]) <= 1.0
        assert _percent(row[3]) == pytest.approx(value, abs=0.0005), row[1]
    for row, v in zip(rows[1:-1], sh["shifts"].values()):
        assert float(row[4]) == pytest.approx(100 * (v["accuracy"] - sh["accuracy"]), abs=0.05)
        assert row[5] == f"{v['correct']}/{n}"
    assert rows[0][5] == f"{sh['correct']}/{n}"
    assert "the subject&#x27;s detail is gone" in html  # the shift's own words, escaped
    # each example is the first held-back image as scored (as JPEG): clean is the file, grayscale
    # is grey
    uris = [re.search(r'src="data:image/jpeg;base64,([^"]*)"', r[0])[1] for r in rows[:-1]]
    import base64

    views = [cv2.imdecode(np.frombuffer(base64.b64decode(u), np.uint8), cv2.IMREAD_COLOR)
             for u in uris]  # fmt: skip
    original = cv2.imread(sh["example"], cv2.IMREAD_COLOR)
    assert views[0].shape == original.shape
    assert np.abs(views[0].astype(int) - original).mean() < 8  # another image: tens
    gray = views[1 + list(SHIFTS).index("grayscale")].astype(int)
    assert np.ptp(views[0].astype(int), axis=2).max() > 40 and np.ptp(gray, axis=2).max() <= 3


def test_refuses_a_folder_that_is_not_a_demo(tmp_path):
    (tmp_path / "mine.txt").write_text("precious\n")
    with pytest.raises(InputError, match="not made by edgecnn demo"):
        demo(tmp_path, budget="tiny", progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
    proc = subprocess.run(
        [sys.executable, "-m", "edgecnn", "demo", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("edgecnn demo: error:")
    with pytest.raises(InputError, match="unknown demo budget"):
        demo(tmp_path / "new", budget="huge")


# --- the report in a real browser ------------------------------------------------------------


def _chromium() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return None


def _browser(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}"]  # fmt: skip
    return subprocess.run([_chromium(), *flags, *args], capture_output=True, text=True,
                          timeout=90)  # fmt: skip


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tiny_demo, tmp_path):
    report, _ = tiny_demo
    url = report.resolve().as_uri()
    dom = _browser(["--dump-dom", url], tmp_path / "p1").stdout
    assert "edgecnn" in dom and dom.count("<table") >= 4
    assert len(_img_sources(dom)) >= 3 * 8 + 6
    for section in ("data", "training", "export", "bench", "shifts", "live", "own", "pi"):
        assert f'id="{section}"' in dom

    shot = tmp_path / "report.png"
    _browser([f"--screenshot={shot}", "--window-size=1280,2400", url], tmp_path / "p2")
    image = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    assert image is not None, "no screenshot written"
    assert image.shape[:2] == (2400, 1280)
    assert float(image.std()) > 20  # not a blank page
    # the header band is dark blue, the page below it light: the CSS was applied
    assert image[20:60, :200].mean() < 90 and image[1000:1100, 20:60].mean() > 200
    colours = np.unique(image[::8, ::8].reshape(-1, 3), axis=0)
    assert len(colours) > 500  # photos and plots, not just text on a flat background


def test_demo_runs_live_what_edgecnn_run_picks_in_a_run_directory(
    tmp_path, tmp_path_factory, capsys
):
    """The demo's live step, `edgecnn run RUN` and bench's listing follow one preference order:
    removing the best file each time, all three name the same next one."""
    from _bench_fixtures import cached_run

    from edgecnn.bench import list_artifacts
    from edgecnn.cli import main
    from edgecnn.demo import _live_model

    base = cached_run(tmp_path_factory.getbasetemp())
    run = shutil.copytree(base, tmp_path / "run")
    export_dir = run / "export"
    # the formats a partial export may leave: other files of the same kinds, under their names
    shutil.copy(export_dir / "model_fp32.tflite", export_dir / "model_fp16.tflite")
    shutil.copy(export_dir / "model.onnx", export_dir / "model_int8.onnx")
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "a.png"), np.full((40, 48, 3), 200, np.uint8))
    expected = ["model_int8.tflite", "model_fp32.tflite", "model.onnx", "model_fp16.tflite",
                "model_int8.onnx"]  # fmt: skip
    for name in expected:
        capsys.readouterr()
        assert main(["run", str(run), "--source", str(frames), "--max-frames", "1"]) == 0
        ran = re.search(r"classifying \S+ with (\S+) ", capsys.readouterr().err).group(1)
        assert ran == _live_model(run).name == list_artifacts(run)[0].name == name
        (export_dir / name).unlink()
    assert _live_model(run) == list_artifacts(run)[0] == run / "model.keras"
