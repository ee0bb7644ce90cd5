"""`--serve`: the web page, its token, clients that vanish, a browser, and memory over a soak."""

from __future__ import annotations

import html
import json
import shutil
import socket
import struct
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from _live_fixtures import ColourClassifier, SyntheticClip, rss_kib

from edgecnn.runtime.contract import Contract
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.live import FrameHub, LiveServer, parse_address, run_live


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Running:
    """`run_live` in a thread on a synthetic clip (ends when `finish()` is called), serving on a
    free port; `port` is known once the server is up."""

    def __init__(self, colour="green", *, fps=60.0, size=(160, 120), **kwargs) -> None:
        colour_at = colour if callable(colour) else (lambda i: colour)
        self.clip = SyntheticClip(colour_at, fps=fps, size=size, **kwargs.pop("clip", {}))
        self.classifier = kwargs.pop("classifier", None) or ColourClassifier()
        self.ready = threading.Event()
        self.server: LiveServer | None = None
        self.summary = None
        self.error: BaseException | None = None
        self.kwargs = {"serve": "127.0.0.1:0", **kwargs}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_server(self, server: LiveServer) -> None:
        self.server = server
        self.ready.set()

    def _run(self) -> None:
        try:
            self.summary = run_live(
                self.classifier, self.clip, on_server=self._on_server, log=_Null(), **self.kwargs
            )
        except BaseException as e:  # surfaced by the test
            self.error = e
            self.ready.set()

    def __enter__(self) -> Running:
        self.thread.start()
        assert self.ready.wait(10), "server did not start"
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc) -> None:
        self.clip.finish()
        self.thread.join(15)
        assert not self.thread.is_alive(), "loop did not end"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def state(self) -> dict:
        status, body = _get(self.base + "/state")
        assert status == 200
        return json.loads(body)

    def wait_frames(self, n: int, timeout: float = 10.0) -> dict:
        import time

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            s = self.state()
            if s["index"] is not None and s["index"] >= n:
                return s
            time.sleep(0.05)
        raise AssertionError(f"fewer than {n} frames in {timeout}s: {self.state()}")


class _Null:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


# --- address and token -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("8080", ("127.0.0.1", 8080)),
        (":9000", ("127.0.0.1", 9000)),
        ("0.0.0.0:8080", ("0.0.0.0", 8080)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:8080", ("::1", 8080)),
    ],
)
def test_parse_address(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["host:", "host:99999", "a b:80", "[::1]8080", "http://x:80"])
def test_parse_address_rejects(text):
    with pytest.raises(InputError):
        parse_address(text)


def test_loopback_needs_no_token_other_addresses_do():
    assert LiveServer("127.0.0.1", 0).token is None
    assert LiveServer("localhost", 0).token is None
    assert LiveServer("0.0.0.0", 0).token


def test_token_required_off_loopback():
    server = LiveServer("0.0.0.0", 0, hub=FrameHub()).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert _get(base + "/state")[0] == 403
        assert _get(base + "/?token=wrong")[0] == 403
        status, body = _get(f"{base}/state?token={server.token}")
        assert status == 200 and json.loads(body)["status"] == "starting"
        assert f"token={server.token}" in server.url
    finally:
        server.stop()


def test_port_in_use_is_input_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(InputError, match="cannot listen"):
            LiveServer("127.0.0.1", port).start()


# --- page, state, frames ---------------------------------------------------------------------


def test_state_frame_and_stream_follow_the_loop():
    with Running("blue") as run:
        s = run.wait_frames(5)
        assert s["label"] == "blue" and s["topk"][0][0] == "blue" and s["status"] == "playing"
        status, page = _get(run.base + "/")
        assert status == 200 and b"stream.mjpg" in page
        status, jpeg = _get(run.base + "/frame.jpg")
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert status == 200 and img.shape == (120, 160, 3)
        b, g, r = img[60:, 80:].reshape(-1, 3).mean(axis=0)  # away from the overlay
        assert b > 200 and g < 60 and r < 60
        with socket.create_connection(("127.0.0.1", run.server.port), timeout=5) as sock:
            sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while data.count(b"Content-Type: image/jpeg") < 3:
                chunk = sock.recv(65536)
                assert chunk
                data += chunk
        assert b"multipart/x-mixed-replace" in data


def test_twenty_clients_connecting_and_vanishing_do_not_stop_the_loop():
    with Running("green", fps=200) as run:
        run.wait_frames(3)
        port = run.server.port

        def rude_client(i: int) -> None:
            for j in range(3):
                try:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                    if (i + j) % 3 == 0:  # reset: close with SO_LINGER 0 mid-stream
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                    if (i + j) % 3 != 2:
                        sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
                        sock.recv(4096 if i % 2 else 100)
                    sock.close()  # half the time before sending anything
                except OSError:
                    pass

        stalled = socket.create_connection(("127.0.0.1", port), timeout=5)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
        threads = [threading.Thread(target=rude_client, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        before = run.state()["index"]
        after = run.wait_frames(before + 100)  # still running, 100 more frames
        assert after["label"] == "green"
        assert _get(run.base + "/state")[0] == 200
        stalled.close()
    assert run.error is None
    assert run.summary.frames > before + 100


# --- a real browser --------------------------------------------------------------------------


def _chromium() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--virtual-time-budget=3000",
]  # fmt: skip


def _browser(args: list[str], tmp_path: Path) -> str:
    exe = _chromium()
    cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install chromium)")
def test_headless_chromium_shows_the_label_of_the_frames_being_played(tmp_path):
    with Running("green", fps=30, size=(320, 240)) as run:
        run.wait_frames(3)
        dom = _browser(["--dump-dom", run.base + "/"], tmp_path)
        shot = tmp_path / "page.png"
        _browser(["--window-size=800,700", f"--screenshot={shot}", run.base + "/"], tmp_path)
    assert '<div id="label" class="">green</div>' in dom, dom[:2000]
    assert "FPS" in dom and "stream.mjpg" in dom
    img = cv2.imread(str(shot))
    assert img is not None
    video = img[60:230, 300:500].reshape(-1, 3)  # inside the 320x240 video, below the overlay
    green_pixels = (video[:, 1] > 200) & (video[:, 0] < 80) & (video[:, 2] < 80)
    assert green_pixels.mean() > 0.5


# --- class names from a hostile model file ---------------------------------------------------

# What the colour classifier calls red, green and blue: markup that would run if the page put
# class names into its HTML instead of text.
HOSTILE_LABELS = (
    "<script>document.title='pwned'</script>",
    '"><img src=x onerror="document.title=\'pwned\'">',
    "blue & <b>bold</b>",
)


class HostileLabelClassifier(ColourClassifier):
    def __init__(self) -> None:
        super().__init__()
        self.contract = Contract(labels=HOSTILE_LABELS, height=16, width=16)
        self.labels = HOSTILE_LABELS


def test_state_carries_hostile_class_names_as_json_strings():
    """The label and top-k names reach the page only through /state, as JSON strings; the page
    itself never holds them (the browser test below checks they end up as text in the DOM)."""
    with Running("green", classifier=HostileLabelClassifier()) as run:
        s = run.wait_frames(3)
        status, page = _get(run.base + "/")
    assert s["label"] == HOSTILE_LABELS[1]
    assert {name for name, _ in s["topk"]} == set(HOSTILE_LABELS)
    assert status == 200 and not any(label.encode() in page for label in HOSTILE_LABELS)


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install chromium)")
def test_headless_chromium_shows_hostile_class_names_as_literal_text(tmp_path):
    with Running("green", fps=30, size=(320, 240), classifier=HostileLabelClassifier()) as run:
        run.wait_frames(3)
        dom = _browser(["--dump-dom", run.base + "/"], tmp_path)
    label = html.escape(HOSTILE_LABELS[1], quote=False)
    assert f'<div id="label" class="">{label}</div>' in dom, dom[:2000]
    for name in HOSTILE_LABELS:  # every top-k name as text, none as markup
        assert f'<span class="name">{html.escape(name, quote=False)}</span>' in dom
        assert name not in dom
    assert dom.count("<img") == 1  # the video; no injected image
    assert dom.count("<script>") == 1  # the page's own
    assert "<b>" not in dom and "pwned" not in dom.split("<title>")[1].split("</title>")[0]


# --- memory ----------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc (Linux)")
def test_short_soak_keeps_rss_flat(tmp_path):
    """2,000 frames with overlay, web clients and a JSON-lines log: RSS grows < 5% after
    warm-up (benchmarks/soak.py runs 20,000)."""
    marks: dict[int, int] = {}

    def colour(i: int) -> str:
        if i in (300, 1999):
            marks[i] = rss_kib()
        return ("red", "green", "blue")[(i // 50) % 3]

    jsonl = str(tmp_path / "soak.jsonl")
    with Running(colour, fps=5000, size=(320, 240), jsonl=jsonl, clip={"length": 2000}) as run:
        viewer = socket.create_connection(("127.0.0.1", run.server.port), timeout=5)
        viewer.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")

        def watch() -> None:
            try:
                while viewer.recv(1 << 16):
                    pass
            except OSError:
                pass

        threading.Thread(target=watch, daemon=True).start()
        run.thread.join(120)
        viewer.close()
    assert run.summary.frames == 2000
    growth = (marks[1999] - marks[300]) / marks[300]
    assert growth < 0.05, f"RSS {marks[300]} -> {marks[1999]} KiB ({growth:+.1%})"
    assert len((tmp_path / "soak.jsonl").read_text().splitlines()) == 2000


def test_http_mjpeg_stream_source_reconnects_when_the_server_comes_back():
    """A real network stream: `--source http://.../stream.mjpg` (read by FFmpeg) served by a
    first run; that server goes away, the source fails to reopen at least once, a second server
    comes up on the same port with other frames, and the loop carries on with them."""
    from edgecnn.runtime.live import Backoff, live

    first = Running("green", fps=30).__enter__()
    port = first.server.port
    second: list[Running] = []
    messages: list[str] = []

    def on_status(message: str) -> None:
        messages.append(message)
        if "still unavailable" in message and not second:  # a reopen was refused: come back
            second.append(Running("blue", fps=30, serve=f"127.0.0.1:{port}").__enter__())

    loop = live(
        ColourClassifier(), f"http://127.0.0.1:{port}/stream.mjpg", max_frames=40,
        backoff=Backoff(initial=0.2, factor=1.5, cap=0.5), on_status=on_status,
    )  # fmt: skip
    labels = []
    try:
        for r in loop:
            labels.append(r.label)
            if len(labels) == 10:
                first.__exit__(None, None, None)  # the server stops: the stream dies
    finally:
        if second:
            second[0].__exit__(None, None, None)
    assert labels[:10] == ["green"] * 10
    assert labels[-1] == "blue" and len(labels) == 40
    assert loop.reconnects == 1
    assert any("reconnected" in m for m in messages)
