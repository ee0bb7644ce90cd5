"""`edgecnn run` end to end on a real int8 .tflite (built here with TensorFlow; the command itself
runs without it), plus the one-line errors for bad input."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from _live_fixtures import build_colour_tflite, count_frames, write_folder, write_video

from edgecnn.runtime.live import live
from edgecnn.runtime.live.outputs import has_gui_build

COLOURS = ["red"] * 10 + ["green"] * 10 + ["blue"] * 10
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_colour_tflite(tmp_path_factory.mktemp("live_model") / "colour_int8.tflite")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("live_clip") / "clip.avi", COLOURS, size=(96, 64))


def edgecnn(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "edgecnn", "run", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=ENV, cwd=cwd)


def test_python_api_with_a_real_tflite_model(model, clip):
    from edgecnn.runtime import load

    clf = load(model, backend="tflite", threads=1)
    results = list(live(clf, str(clip), top_k=3))
    assert [r.label for r in results] == COLOURS
    assert all(r.score > 0.9 for r in results)


def test_every_frame_gets_the_numbers_of_the_one_image_path_whichever_thread_resized_it(
    model, tmp_path
):
    """The loop's probabilities for each frame are, bit for bit, those of `probs_pixels` on
    `to_pixels` of the same decoded frame: for frames the capture thread resized (it does while
    frames queue: here a slow model for the first half) and for those the inference thread
    resized (here a slow source for the second half).  Textured frames, so that the colour
    model's scores are far from 0 and 1 and any difference in the pixels shows."""
    from edgecnn.runtime import load
    from edgecnn.runtime.preprocess import to_pixels

    rng = np.random.default_rng(7)
    path = str(tmp_path / "textured.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (160, 120))
    for _ in range(40):
        writer.write(cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3), np.uint8), (9, 9), 0))
    writer.release()
    cap, decoded = cv2.VideoCapture(path), []
    while (got := cap.read())[0]:
        decoded.append(got[1])
    cap.release()
    half = len(decoded) // 2

    clf = load(model, backend="tflite", threads=1)
    invoke, invoked, resized_by_capture = clf.frame_probs, [], []

    def slow_model_then_fast(x):
        invoked.append(x)
        if len(invoked) <= half:
            time.sleep(0.005)
        return invoke(x)

    clf.frame_probs = slow_model_then_fast
    with live(clf, path) as loop:
        read, prepare = loop.source.read, loop._capture.prepare

        def fast_source_then_slow():
            if len(invoked) >= half:
                time.sleep(0.005)
            return read()

        def counted_prepare(image):
            resized_by_capture.append(image)
            return prepare(image)

        loop.source.read, loop._capture.prepare = fast_source_then_slow, counted_prepare
        results = list(loop)

    assert len(results) == len(decoded) == 40
    assert 0 < len(resized_by_capture) < 40, len(resized_by_capture)
    for r in results:
        np.testing.assert_array_equal(r.frame, decoded[r.seq])
        expected = clf.probs_pixels(to_pixels(decoded[r.seq], clf.contract))[0]
        np.testing.assert_array_equal(r.probs, expected)
    assert max(r.score for r in results) < 0.9


def test_run_jsonl_stdout_and_record(model, clip, tmp_path):
    video = tmp_path / "annotated.avi"
    proc = edgecnn(model, "--source", clip, "--threads", "1", "--jsonl", "-", "--record", video)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["label"] for r in rows] == COLOURS
    assert [r["index"] for r in rows] == list(range(30))
    first = rows[0]
    for key in ("time", "score", "topk", "frame_age_ms", "capture_ms", "preprocess_ms",
                "inference_ms", "postprocess_ms", "total_ms"):  # fmt: skip
        assert key in first
    assert len(first["topk"]) == 3 and first["topk"][0][0] == "red"
    # the summary goes to stderr
    assert "frames processed: 30" in proc.stderr and "p99" in proc.stderr
    assert "inference" in proc.stderr and "dropped: 0" in proc.stderr
    # the annotated video has every frame, at the file's rate, and no leftover temp file
    assert count_frames(video) == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.avi"]


def test_run_folder_with_max_frames_smoothing_and_jsonl_file(model, tmp_path):
    folder = write_folder(tmp_path / "imgs", ["green"] * 6 + ["blue"] * 6)
    log = tmp_path / "out.jsonl"
    proc = edgecnn(
        model, "--source", folder, "--jsonl", log, "--max-frames", "8", "--smooth", "0.5"
    )
    assert proc.returncode == 0, proc.stderr
    labels = [json.loads(line)["label"] for line in log.read_text().splitlines()]
    assert labels[:6] == ["green"] * 6 and len(labels) == 8
    assert labels[6] == "green"  # EMA: the first blue frame does not flip it yet
    assert "frames processed: 8" in proc.stderr


def test_a_bad_file_in_a_folder_is_skipped_with_its_name_escaped(model, tmp_path):
    folder = write_folder(tmp_path / "imgs", ["green"] * 3)
    (folder / "\x1b[2Jcleared.jpg").write_text("not an image; its name would clear the screen")
    proc = edgecnn(model, "--source", folder, "--jsonl", tmp_path / "out.jsonl")
    assert proc.returncode == 0, proc.stderr
    assert "edgecnn run: skipping " in proc.stderr and "\\x1b[2Jcleared.jpg" in proc.stderr
    assert "\x1b" not in proc.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 3


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_jsonl_into_a_named_pipe_streams_and_leaves_the_pipe(model, clip, tmp_path):
    """A FIFO (or a device such as /dev/stdout) is written in place, line by line: a temp file
    renamed over it would replace the node itself."""
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(fifo.read_text().splitlines()), daemon=True
    )
    reader.start()
    proc = edgecnn(model, "--source", clip, "--threads", "1", "--jsonl", fifo)
    reader.join(timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert [json.loads(line)["label"] for line in lines] == COLOURS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.fifo"]  # no temp file left


def test_run_without_outputs_prints_label_lines(model, clip):
    proc = edgecnn(model, "--source", clip, "--min-score", "0.99999")
    assert proc.returncode == 0, proc.stderr
    assert "uncertain" in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.tflite", "--source", "CLIP"], "missing.tflite"),
        (["MODEL", "--source", "nope.mp4"], "nope.mp4"),
        (["MODEL", "--source", "CLIP", "--serve", "localhost:http"], "--serve"),
        (["MODEL", "--source", "CLIP", "--smooth", "0"], "--smooth"),
        (["MODEL", "--source", "CLIP", "--smooth", "1.5"], "--smooth"),
        (["MODEL", "--source", "CLIP", "--record", "out.gif"], "--record"),
        (["MODEL", "--source", "CLIP", "--max-frames", "0"], "--max-frames"),
        (["MODEL", "--source", "CLIP", "--threads", "100000"], "--threads must be from 1 to 256"),
    ],
)
def test_bad_input_is_exit_2_with_one_line(model, clip, tmp_path, args, message):
    args = [str(model) if a == "MODEL" else str(clip) if a == "CLIP" else a for a in args]
    proc = edgecnn(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecnn run: error:") and message in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(has_gui_build(), reason="this OpenCV has a GUI: --show opens a window")
def test_show_on_headless_opencv_opens_the_live_page_in_the_browser(model, clip, tmp_path):
    """$BROWSER is what Python's webbrowser runs: here a script that notes the URL it got."""
    seen = tmp_path / "url.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {seen}\n')
    browser.chmod(0o755)
    cmd = [sys.executable, "-m", "edgecnn", "run", str(model), "--source", str(clip), "--show"]
    env = {**ENV, "BROWSER": f"{browser} %s"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    url = proc.stderr.split("showing the live view in a browser at ", 1)[1].split()[0]
    assert url.startswith("http://127.0.0.1:")
    for _ in range(50):  # the browser command runs in the background
        if seen.exists() and seen.read_text().strip():
            break
        time.sleep(0.1)
    assert seen.read_text().strip() == url


def test_run_does_not_import_tensorflow(model, clip):
    code = (
        "import sys\n"
        "from edgecnn.cli import main\n"
        f"rc = main(['run', {str(model)!r}, '--source', {str(clip)!r}, '--jsonl', '-'])\n"
        "assert rc == 0\n"
        "bad = [m for m in ('tensorflow', 'keras', 'tf2onnx', 'onnx') if m in sys.modules]\n"
        "print('HEAVY', bad, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stderr


def test_stream_that_refuses_is_one_line_with_the_reason(model):
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = edgecnn(model, "--source", f"rtsp://user:secret@127.0.0.1:{port}/cam")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot open stream" in lines[0] and "secret" not in lines[0]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_ctrl_c_ends_the_run_with_the_summary(model, tmp_path):
    long_clip = write_video(tmp_path / "long.avi", ["green"] * 250, size=(96, 64), fps=25.0)
    cmd = [sys.executable, "-m", "edgecnn", "run", str(model), "--source", str(long_clip),
           "--realtime", "--jsonl", "-"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    first = proc.stdout.readline()  # the loop is running
    assert json.loads(first)["label"] == "green"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "interrupted" in err and "frames processed:" in err
    processed = int(err.split("frames processed:")[1].split()[0])
    assert 1 <= processed < 250 and processed == 1 + len(out.splitlines())


def test_run_top_k_defaults_to_the_live_loops_own():
    """`edgecnn run` and the Python API show the same number of classes unless told."""
    import inspect

    from edgecnn.cli import build_parser
    from edgecnn.runtime.live import DEFAULT_TOP_K, Live, run_live

    assert build_parser().parse_args(["run", "model.tflite"]).top_k == DEFAULT_TOP_K
    for api in (live, run_live, Live):
        assert inspect.signature(api).parameters["top_k"].default == DEFAULT_TOP_K, api


class _FullDisk:
    """A file that takes `room` characters, then fails as a full disk does."""

    def __init__(self, path, room: int) -> None:
        self._real = open(path, "w", encoding="utf-8")  # noqa: SIM115
        self.room = room

    @property
    def closed(self) -> bool:
        return self._real.closed

    def write(self, text: str) -> int:
        self.room -= len(text)
        if self.room < 0:
            raise OSError(28, "No space left on device")
        return self._real.write(text)

    def flush(self) -> None:
        self._real.flush()

    def close(self) -> None:
        self._real.close()


@pytest.mark.parametrize("room", [0, 1000])
def test_a_jsonl_file_that_cannot_be_finished_is_an_error_and_leaves_nothing(
    model, clip, tmp_path, monkeypatch, room
):
    """A full disk at the first line or later: an OSError out of `run_live` (one line and exit
    2 from the command), no file under the name asked for, and no temp file beside it."""
    from edgecnn.runtime.live import outputs, run_live

    monkeypatch.setattr(outputs, "open", lambda path, *a, **k: _FullDisk(path, room), raising=False)
    target = tmp_path / "out" / "frames.jsonl"
    target.parent.mkdir()
    with pytest.raises(OSError, match="No space left"):
        run_live(model, clip, jsonl=target, console=False, log=io.StringIO())
    assert list(target.parent.iterdir()) == []


def test_a_jsonl_file_that_cannot_be_renamed_into_place_is_an_error(
    model, clip, tmp_path, monkeypatch
):
    from edgecnn.runtime.live import outputs, run_live

    def refused(src, dst):
        raise OSError(18, "Invalid cross-device link", str(dst))

    monkeypatch.setattr(outputs.os, "replace", refused)
    target = tmp_path / "out" / "frames.jsonl"
    target.parent.mkdir()
    with pytest.raises(OSError, match="cross-device"):
        run_live(model, clip, jsonl=target, console=False, log=io.StringIO())
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_a_recording_cut_short_is_not_kept(clip, tmp_path, monkeypatch, suffix):
    """OpenCV's video writer never reports a failed write (a full disk); the file is checked
    when it is closed: a video cut short is removed and the run ends in one error."""
    from edgecnn.runtime.errors import InputError
    from edgecnn.runtime.live import outputs

    frames = np.zeros((30, 48, 64, 3), np.uint8)
    frames[:, :, :32] = 200
    whole = tmp_path / f"whole{suffix}"
    recorder = outputs.Recorder(whole, fps=10.0)
    for image in frames:
        recorder._write(image)
    recorder.close()
    assert outputs._whole_video(whole, 30)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert not outputs._whole_video(cut, 30)

    real = outputs.cv2.VideoWriter

    class CutShort:  # writes half the frames it is given, silently, as on a full disk
        def __init__(self, *args):
            self._writer = real(*args)
            self._n = 0

        def isOpened(self):
            return self._writer.isOpened()

        def write(self, image):
            self._n += 1
            if self._n <= 15:
                self._writer.write(image)

        def release(self):
            self._writer.release()

    monkeypatch.setattr(outputs.cv2, "VideoWriter", CutShort)
    target = tmp_path / f"run{suffix}"
    recorder = outputs.Recorder(target, fps=10.0)
    for image in frames:
        recorder._write(image)
    with pytest.raises(InputError, match="could not be written whole"):
        recorder.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([whole.name, cut.name])
