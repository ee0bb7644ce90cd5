"""The live loop (`edgecnn.runtime.live`): sources, capture hand-off, reconnects, smoothing.

A deterministic colour classifier stands in for a model here (the loop is what is under test);
`test_live_cli.py` runs the same loop on a real int8 .tflite file.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from _live_fixtures import (
    LABELS,
    ColourClassifier,
    FlakySource,
    SyntheticClip,
    SyntheticLive,
    solid,
    write_folder,
    write_video,
)

from edgecnn.runtime.classifier import ranked
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.live import (
    Backoff,
    CameraSource,
    ImageFolderSource,
    Live,
    StreamSource,
    VideoFileSource,
    live,
    make_source,
    open_source,
)
from edgecnn.runtime.live.capture import (
    FILE_CAPTURE_NICENESS,
    QUEUE_DEPTH,
    Capture,
    queue_depth,
)
from edgecnn.runtime.live.loop import Result
from edgecnn.runtime.live.stats import STAGES, Histogram, RunStats

FAST = Backoff(initial=0.01, factor=2.0, cap=0.04)
COLOURS = ["red"] * 8 + ["green"] * 8 + ["blue"] * 8


@pytest.fixture
def video(tmp_path):
    return write_video(tmp_path / "clip.avi", COLOURS)


# --- sources ---------------------------------------------------------------------------------


def test_make_source_picks_by_spec(tmp_path, video):
    folder = write_folder(tmp_path / "imgs", ["red", "green"])
    assert isinstance(make_source("0"), CameraSource)
    assert isinstance(make_source(1), CameraSource)
    assert isinstance(make_source("rtsp://user:secret@cam.local/stream"), StreamSource)
    assert "secret" not in make_source("rtsp://user:secret@cam.local/stream").name
    assert isinstance(make_source(str(video)), VideoFileSource)
    assert isinstance(make_source(str(folder)), ImageFolderSource)
    assert len(make_source(str(folder / "*.png")).paths) == 2
    assert make_source(str(folder / "000_red.png")).paths == [str(folder / "000_red.png")]
    named_like_a_glob = tmp_path / "clip[1].mp4"  # an existing file is played, not globbed
    os.symlink(video, named_like_a_glob)
    assert isinstance(make_source(str(named_like_a_glob)), VideoFileSource)
    as_url = make_source("file://" + str(video).replace(" ", "%20"))  # a file: it ends
    assert isinstance(as_url, VideoFileSource) and as_url.name == str(video)


def test_a_camera_index_past_a_c_int_is_one_line_input_error():
    assert isinstance(make_source(str(2**31 - 1)), CameraSource)  # unopened: OpenCV takes it
    for spec in (str(2**31), "99999999999"):
        with pytest.raises(InputError, match=f"^--source {spec}: no camera has that index"):
            make_source(spec)


def test_a_url_that_opens_but_gives_no_frame_is_one_line_input_error(tmp_path):
    """A web server's text file: FFmpeg opens it, and no frame ever comes (the run used to
    reconnect to it forever, FFmpeg's complaints on the console)."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    (tmp_path / "notes.jpg").write_text("not a video\n" * 100)  # FFmpeg plays a .txt as text

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(InputError) as e:
            open_source(f"http://127.0.0.1:{server.server_port}/notes.jpg")
    finally:
        server.shutdown()
    assert "\n" not in str(e.value)
    assert str(e.value).startswith(
        f"http://127.0.0.1:{server.server_port}/notes.jpg: opened, but no"
    )


@pytest.mark.parametrize("spec", ["nope.mp4", "", "missing_dir/*.jpg"])
def test_bad_source_is_one_line_input_error(tmp_path, spec):
    with pytest.raises(InputError) as e:
        open_source(str(tmp_path / spec) if spec else spec)
    assert "\n" not in str(e.value)


def test_unreadable_video_and_empty_folder(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(InputError, match="junk.mp4"):
        open_source(str(junk))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        open_source(str(tmp_path / "empty"))


def test_video_file_gives_every_frame_in_order(video):
    src = open_source(str(video))
    assert not src.is_live and src.fps == pytest.approx(25.0)
    assert src._cap.get(cv2.CAP_PROP_N_THREADS) == 1  # decoding never competes with inference
    frames = []
    while (got := src.read()) is not None:
        frames.append(got[0])
    src.close()
    assert len(frames) == len(COLOURS)
    assert frames[0].shape == (48, 64, 3)


def test_folder_slideshow_skips_corrupt_images(tmp_path):
    folder = write_folder(tmp_path / "imgs", ["red", "green", "blue"])
    (folder / "001_zbroken.png").write_bytes(b"\x89PNG broken")
    seen = [r.label for r in live(ColourClassifier(), str(folder))]
    assert seen == ["red", "green", "blue"]


# --- the loop --------------------------------------------------------------------------------


def test_video_every_frame_classified_with_timings(video):
    results = list(live(ColourClassifier(), str(video), top_k=2))
    assert [r.label for r in results] == COLOURS
    assert [r.index for r in results] == list(range(len(COLOURS)))
    assert [r.seq for r in results] == list(range(len(COLOURS)))
    r = results[-1]
    assert len(r.topk) == 2 and r.topk[0] == (r.label, r.score)
    assert set(r.timings) == {"capture", "preprocess", "inference", "postprocess", "total"}
    assert all(v >= 0 for v in r.timings.values())
    # total is capture-to-result: the frame's wait plus the loop's stages (a resize done by the
    # capture thread while the frame waited counts in both preprocess and frame age)
    t = r.timings
    assert t["total"] >= r.frame_age_ms + t["inference"] + t["postprocess"] - 1e-6
    assert t["total"] <= r.frame_age_ms + t["preprocess"] + t["inference"] + t["postprocess"] + 0.5
    assert r.frame.shape == (48, 64, 3) and r.probs.shape == (3,)
    d = r.to_dict()
    assert {"time", "index", "label", "score", "topk", "frame_age_ms", "inference_ms"} <= set(d)


@pytest.mark.parametrize("classes", [2, 5, 64, 65, 1000])
def test_top_k_is_the_stable_ranking(classes):
    """Both paths of `ranked` (a Python sort for few classes, numpy for many) rank like a stable
    descending sort: ties in label order, scores as Python floats equal to the model's."""
    rng = np.random.default_rng(classes)
    probs = rng.integers(0, 8, classes).astype(np.float32) / 8  # many ties
    labels = tuple(f"c{i}" for i in range(classes))
    expected = np.argsort(-probs, kind="stable")[:3]
    got = ranked(probs, labels, 3)
    assert [name for name, _ in got] == [labels[i] for i in expected]
    assert [score for _, score in got] == [float(probs[i]) for i in expected]
    assert all(type(score) is float for _, score in got)
    probs[0] = np.nan  # a broken model's output: NaN ranks last, as numpy's sort has it
    assert ranked(probs, labels, classes)[-1][0] == "c0"


def test_max_frames_and_summary(video):
    loop = live(ColourClassifier(), str(video), max_frames=5)
    assert len(list(loop)) == 5
    s = loop.summary()
    assert s.frames == 5 and s.dropped == 0
    assert set(s.percentiles) == {"capture", "preprocess", "inference", "postprocess", "total"}
    assert "frames processed: 5" in s.format()


def test_smoothing_is_an_ema_of_probabilities(video):
    raw = list(live(ColourClassifier(), str(video)))
    smooth = list(live(ColourClassifier(), str(video), smooth=0.25))
    expected = raw[0].probs
    for r_raw, r_smooth in zip(raw[1:], smooth[1:]):
        expected = 0.25 * r_raw.probs + 0.75 * expected
        np.testing.assert_allclose(r_smooth.probs, expected, rtol=1e-5, atol=1e-6)
    # right after the switch to green the smoothed label still says red
    assert smooth[8].label == "red" and raw[8].label == "green"
    assert smooth[-1].label == "blue"


def test_min_score_gives_uncertain():
    class Unsure(ColourClassifier):
        def probs(self, x):
            return np.array([[0.5, 0.3, 0.2]], np.float32)

    clip = SyntheticLive(fps=500)
    with Live(Unsure(), open_source(clip), min_score=0.6, max_frames=3) as loop:
        results = list(loop)
    assert [r.label for r in results] == ["uncertain"] * 3
    assert results[0].uncertain and results[0].best == "red" and results[0].score == 0.5


@pytest.mark.parametrize(
    "options",
    [{"smooth": 0.0}, {"smooth": 1.5}, {"min_score": 2.0}, {"max_frames": 0}, {"top_k": 0}],
)
def test_bad_options_rejected(video, options):
    with pytest.raises(InputError):
        live(ColourClassifier(), str(video), **options)


def test_live_source_keeps_only_the_newest_frame():
    """A camera faster than the model: frames are dropped, the loop never falls behind."""

    class Slow(ColourClassifier):
        def probs(self, x):
            time.sleep(0.02)
            return super().probs(x)

    cam = SyntheticLive(fps=400)
    loop = Live(Slow(), open_source(cam), max_frames=15)
    results = list(loop)
    assert len(results) == 15
    seqs = [r.seq for r in results]
    assert seqs == sorted(seqs) and seqs[-1] - seqs[0] > len(seqs)  # gaps: old frames skipped
    assert loop.dropped > 0 and loop.summary().dropped == loop.dropped


def test_realtime_file_paces_and_drops(tmp_path):
    """--realtime on a 25 fps file with a model that takes 3 frame times: frames are dropped and
    the run ends at the end of the file."""

    class Slow(ColourClassifier):
        def probs(self, x):
            time.sleep(0.12)
            return super().probs(x)

    clip = write_video(tmp_path / "rt.avi", ["green"] * 20, fps=25.0)
    loop = live(Slow(), str(clip), realtime=True)
    results = list(loop)
    assert 0 < len(results) < 20
    assert loop.dropped > 0 and len(results) + loop.dropped == 20
    assert all(r.label == "green" for r in results)


def test_reconnects_after_source_dies_and_keeps_classifying():
    messages = []
    cam = FlakySource(good=12, refuse=2)
    loop = Live(
        ColourClassifier(), open_source(cam), max_frames=30, backoff=FAST, on_status=messages.append
    )
    results = list(loop)
    assert len(results) == 30
    # every classified frame is a real frame of the source (its number is in pixel 0,0)
    numbers = [int(r.frame[0, 0, 0]) + 256 * int(r.frame[0, 0, 1]) for r in results]
    assert numbers == sorted(set(numbers)) and all(r.frame[0, 0, 2] == 7 for r in results)
    # before, between and after the two outages, with the new frame sizes
    labels = [r.label for r in results]
    assert labels[0] == "green" and "blue" in labels and labels[-1] == "red"
    assert {r.frame.shape for r in results} >= {(48, 64, 3), (72, 96, 3), (60, 80, 3)}
    assert loop.reconnects == 2 and cam.refused == 2
    text = "\n".join(messages)
    assert "reconnecting" in text and "reconnected" in text and "camera unplugged" in text


def test_backoff_is_exponential_and_capped():
    b = Backoff(initial=0.5, factor=2.0, cap=4.0)
    assert [b.delay(i) for i in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_idle_hooks_run_while_source_is_silent():
    cam = FlakySource(good=3, refuse=1000)  # never comes back
    loop = Live(ColourClassifier(), open_source(cam), backoff=FAST, on_status=lambda m: None)
    idles = []

    def idle():
        idles.append(loop.status)
        if len(idles) >= 3:
            loop.stop()

    loop.idle_hooks.append(idle)
    results = list(loop)
    assert 1 <= len(results) <= 3 and len(results) + loop.dropped == 3  # newest-frame hand-off
    assert all(s.startswith("reconnecting") for s in idles)


def test_capture_thread_closes_source_when_stopped():
    cam = SyntheticLive(fps=200)
    closed = []
    cam.close = lambda: closed.append(True)
    cap = Capture(open_source(cam)).start()
    assert cap.get(1.0) is not None
    cap.stop()
    assert closed


def test_histogram_percentiles_are_within_one_percent():
    h = Histogram()
    values = np.linspace(1.0, 100.0, 1000)
    for v in values:
        h.add(float(v))
    for q in (50, 99):
        assert h.percentile(q) == pytest.approx(np.percentile(values, q), rel=0.011)


def test_histogram_bins_each_value_in_its_one_percent_bin():
    """Batched binning against the bin of each value worked out alone: 1%-wide log bins from
    1 us, anything at or below 1 us (and NaN) in the lowest bin, anything above 1000 s in the
    highest."""
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [rng.lognormal(0.0, 2.0, 5000), [0.0, -1.0, 1e-3, 1.0101e-3, 5e6, np.nan]]
    )
    lowest, growth, bins = 1e-3, 1.01, len(Histogram().counts)
    expected = np.zeros(bins, np.int64)
    for v in values:
        expected[
            min(bins - 1, int(math.log(v / lowest) / math.log(growth)) + 1) if v > lowest else 0
        ] += 1
    at_once, one_by_one = Histogram(), Histogram()
    at_once.add_many(values)
    for v in values:
        one_by_one.add(float(v))
    for h in (at_once, one_by_one):
        np.testing.assert_array_equal(h.counts, expected)
        assert h.n == len(values) and h.max == 5e6
    assert expected[-1] == 1  # 5e6 ms


def test_run_stats_summary_counts_every_frame_pending_or_binned():
    """`add` bins in batches; a summary at any point counts every frame added so far."""
    rng = np.random.default_rng(1)
    stats, ages = RunStats(), []
    for i in range(RunStats.PENDING * 2 + 37):
        timings = dict(zip(STAGES, rng.uniform(0.1, 10.0, len(STAGES)).tolist()))
        ages.append(float(rng.uniform(0.0, 3.0)))
        stats.add(timings, ages[-1], t_result=i / 100.0)
        if i in (5, RunStats.PENDING, RunStats.PENDING * 2 + 36):
            summary = stats.summary()
            assert summary.frames == i + 1 == stats.age.n
            assert all(h.n == i + 1 for h in stats.stages.values())
    assert summary.fps == pytest.approx(100.0)
    assert summary.frame_age[0] == pytest.approx(np.percentile(ages, 50), rel=0.011)


def _result(**changes) -> Result:
    fields = dict(
        frame=None, index=12, seq=15, label="dog", score=0.7,
        topk=(("dog", 0.7), ("cat", 0.3)), probs=np.array([0.3, 0.7], np.float32),
        uncertain=False, frame_age_ms=1.25, time=1_764_968_400.123456789, fps=30.0,
        timings=dict(zip(STAGES, (0.3, 0.12345, 0.4, 0.0004, 1.2))),
    )  # fmt: skip
    return Result(**{**fields, **changes})


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"score": 1e-9, "topk": (("cat", 1e-9), ("dog", 0.0)), "label": "uncertain"},
        {"label": 'x"<b>\u00e9\u2028\n\\', "topk": (('x"<b>\u00e9\u2028\n\\', 0.5),)},
        {"timings": {"total": -0.0004, "own": 123456.78949, 7: 2.5}},
        {"score": float("nan"), "topk": (("dog", float("nan")), ("cat", 0.3))},
        {"frame_age_ms": float("inf")},
    ],
    ids=["plain", "tiny", "hostile-name", "other-timings", "nan", "inf"],
)
def test_jsonl_line_holds_what_to_dict_holds(changes):
    """`to_json` writes the line directly; parsed, it is `to_dict()` encoded by `json`."""
    r = _result(**changes)
    line = r.to_json()
    assert "\n" not in line and line.isascii()
    assert json.loads(line) == json.loads(json.dumps(r.to_dict()))
    assert list(json.loads(line)) == list(r.to_dict())


def test_labels_reach_overlay_without_touching_the_frame(video):
    from edgecnn.runtime.live import draw

    r = next(iter(live(ColourClassifier(), str(video))))
    before = r.frame.copy()
    annotated = draw(r)
    assert annotated.shape == r.frame.shape
    np.testing.assert_array_equal(r.frame, before)
    assert not np.array_equal(annotated, r.frame)
    assert LABELS[0] == r.label


def test_solid_helper_is_bgr():
    assert tuple(solid("red")[0, 0]) == (0, 0, 255)


def test_record_of_a_live_source_uses_the_measured_rate(tmp_path):
    import cv2
    from _live_fixtures import count_frames

    from edgecnn.runtime.live import run_live

    out = tmp_path / "live.mp4"
    log = tmp_path / "log.txt"
    with open(log, "w") as fh:
        summary = run_live(
            ColourClassifier(), SyntheticLive(fps=100), max_frames=40, record=str(out), log=fh
        )
    assert summary.frames == 40 and count_frames(out) == 40
    cap = cv2.VideoCapture(str(out))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    assert 1.0 <= fps <= 240.0  # the rate measured over the first frames, not a fixed 25/30
    assert "frames processed: 40" in log.read_text()


def test_handoff_wakes_a_waiting_taker_every_second_result_and_on_flush():
    """Results of a file run are handed over in pairs (one wake-up of the iterating thread per
    two frames); a flush, a sentinel or the second result wakes a waiting taker at once."""
    from edgecnn.runtime.live.loop import _Handoff

    box = _Handoff(4, wake_at=2, batched=int)
    got: list = []

    def take() -> None:
        got.append(box.get(timeout=10.0))

    def taker() -> threading.Thread:
        t = threading.Thread(target=take)
        t.start()
        time.sleep(0.1)  # waiting inside get
        return t

    t = taker()
    assert box.put(1, timeout=1.0)
    time.sleep(0.3)
    assert t.is_alive() and got == []  # one result: not woken
    assert box.put(2, timeout=1.0)
    t.join(2.0)
    assert not t.is_alive() and got == [1]  # the second: woken, oldest first
    assert box.get(timeout=0.0) == 2  # items already there are taken without waiting

    for wake in (box.flush, lambda: box.put("end", timeout=1.0)):
        got.clear()
        t = taker()
        assert box.put(3, timeout=1.0)
        time.sleep(0.3)
        assert t.is_alive()
        wake()
        t.join(2.0)
        assert not t.is_alive() and got == [3]
    assert box.get(timeout=0.0) == "end"
    assert box.get(timeout=0.05) is None

    for i in range(4):
        assert box.put(i, timeout=1.0)
    assert not box.put(4, timeout=0.05)  # bounded: full for the whole timeout


def test_a_slow_file_never_holds_a_finished_result_back():
    """A file read slower than the model: each result is handed over as soon as it is ready,
    not when the next frame's result joins it (the inference thread flushes before it waits)."""
    clip = SyntheticClip(fps=12.5, length=6)
    with Live(ColourClassifier(), open_source(clip)) as loop:
        results = list(loop)
    assert len(results) == 6
    # 80 ms between frames: a result held back for the next one would be >= 80 ms old
    assert max(r.timings["total"] for r in results) < 40.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values: Linux")
def test_file_capture_yields_the_cpu_only_to_a_model_that_is_the_limit():
    """A file read faster than the model: once the capture thread keeps finding the queue full,
    it runs FILE_CAPTURE_NICENESS nicer than the caller, so the model's thread gets the CPU
    first.  A file the model keeps up with, and a camera, keep the caller's priority; the
    caller's own thread is untouched."""

    class Slow(ColourClassifier):
        def probs(self, x):
            time.sleep(0.004)
            return super().probs(x)

    main_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    cases = [
        (Slow(), SyntheticClip(fps=1000.0), min(19, main_nice + FILE_CAPTURE_NICENESS)),
        (ColourClassifier(), SyntheticClip(fps=100.0), main_nice),
        (Slow(), SyntheticLive(fps=1000.0), main_nice),
    ]
    for classifier, source, expected in cases:
        with Live(classifier, open_source(source), max_frames=40) as loop:
            results = iter(loop)
            for _ in range(39):
                next(results)
            (capture,) = [t for t in threading.enumerate() if t.name == "edgecnn-capture"]
            assert os.getpriority(os.PRIO_PROCESS, capture.native_id) == expected
            assert len(list(results)) == 1
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_nice


def _glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):  # a C library without the name (musl)
        return False


GLIBC = _glibc()
# In a fresh interpreter: after warm-up rounds, allocate eight 900 KiB frames (640x480 BGR),
# write them, free them, twenty times; print the page faults per frame.
FRAME_FAULTS = """
import resource, sys
import numpy as np
from edgecnn.runtime.live import Live, open_source
tuned = None
if sys.argv[1] == "loop":  # the settings come with the first capture a loop starts
    from _live_fixtures import ColourClassifier, SyntheticClip
    with Live(ColourClassifier(), open_source(SyntheticClip(fps=100.0)), max_frames=2) as loop:
        list(loop)
    from edgecnn.runtime.live import capture
    tuned = capture._malloc_tuned
def rounds(n):
    for _ in range(n):
        frames = [np.ones(900 * 1024, np.uint8) for _ in range(8)]
        del frames
rounds(3)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(20)
print(tuned, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 160)
"""


@pytest.mark.skipif(not GLIBC, reason="malloc settings: glibc on Linux")
def test_a_loop_keeps_freed_frame_memory_instead_of_faulting_pages_in_per_frame():
    """glibc maps fresh pages for frame-sized blocks and returns freed ones to the kernel, so
    every frame faulted ~225 pages in.  Once a loop has started its capture thread, freed
    frames are reused: no page faults a frame.  A user's own MALLOC_TRIM_THRESHOLD_ wins."""
    import subprocess

    def faults(mode: str, **env: str) -> tuple[str, float]:
        out = subprocess.run(
            [sys.executable, "-c", FRAME_FAULTS, mode],
            capture_output=True, text=True, check=True, timeout=120,
            env={**os.environ, "PYTHONPATH": os.path.dirname(__file__), **env},
        ).stdout.split()  # fmt: skip
        return out[0], float(out[1])

    tuned, kept = faults("loop")
    assert tuned == "True" and kept < 1  # 0 here; a stray fault elsewhere in 160 frames is fine
    tuned, plain = faults("plain")
    assert tuned == "None" and plain > 100  # 900 KiB = 225 pages, faulted in every time
    tuned, kept_by_user = faults("loop", MALLOC_TRIM_THRESHOLD_=str(2**20))
    assert tuned == "False" and kept_by_user > 100


@pytest.mark.parametrize(("size", "ahead"), [((64, 48), QUEUE_DEPTH), ((2400, 2400), 2)])
def test_a_file_is_read_ahead_of_the_model_by_frames_and_bytes(size, ahead):
    """A file's capture thread reads up to QUEUE_DEPTH frames ahead of a slow consumer, but
    never more than QUEUE_BYTES of decoded frames (17 MB frames: two)."""
    assert queue_depth(size[0] * size[1] * 3) == ahead
    clip = SyntheticClip(fps=1000.0, size=size)
    capture = Capture(open_source(clip)).start()
    try:
        assert capture.get(5.0) is not None
        deadline = time.monotonic() + 5.0
        while capture.captured < 1 + ahead and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # time to read further if it could
        # taken + waiting in the queue + the one the thread holds, blocked in put
        assert capture.captured == 1 + ahead + 1
    finally:
        clip.finish()
        capture.stop()
