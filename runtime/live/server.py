"""`--serve HOST:PORT`: a small web page with the live annotated video and the current label.

For a headless Raspberry Pi watched from a phone.  Standard library only: a ThreadingHTTPServer
in a daemon thread, one thread per client.

The loop never waits for a client.  It only swaps a reference in the `FrameHub` (the newest
result); each client thread picks up the newest frame when it is ready for one, so a slow client
skips frames instead of slowing the loop, and the JPEG for a frame is encoded once, lazily, by the
first client that wants it (nothing is encoded when nobody watches).  A client that vanishes
raises BrokenPipe/ConnectionReset in its own thread, which is swallowed; a client that stops
reading is dropped by the socket timeout.

Binds 127.0.0.1 by default; on any other address every request needs the token printed at
start-up (`?token=...` once, then a cookie), compared in constant time.  Hostile clients are
bounded: nothing is served from the file system (five fixed routes, 404 otherwise), request lines
and headers are capped by http.server (414/431), at most `MAX_CONNECTIONS` connections and
`MAX_STREAMS` video streams at once (503 past them), and a client must send its request head
within `REQUEST_HEAD_DEADLINE_S`.
"""

from __future__ import annotations

import contextlib
import hmac
import html
import ipaddress
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from ..errors import InputError
from .loop import Result

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
MAX_STREAMS = 32
# Connections served at once (each holds a thread); more are answered 503 and closed.
MAX_CONNECTIONS = 64
# A socket read that waits longer drops the client; a request line and headers that take longer
# in all (a client dripping bytes to hold a thread) drop it too.
CLIENT_TIMEOUT_S = 10.0
REQUEST_HEAD_DEADLINE_S = 10.0
JPEG_QUALITY = 80
BOUNDARY = "edgecnnframe"
COOKIE = "edgecnn_token"
_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT', ':PORT', 'PORT' or '[v6]:PORT' -> (host, port); InputError otherwise."""
    value = text.strip()
    host, port_text = DEFAULT_HOST, value
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or not value[end + 1 :].startswith(":"):
            raise InputError(f"--serve {text}: expected [IPv6]:PORT")
        host, port_text = value[1:end], value[end + 2 :]
    elif ":" in value:
        host, port_text = value.rsplit(":", 1)
        host = host or DEFAULT_HOST
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise InputError(
            f"--serve {text}: expected HOST:PORT with a port 0-65535, e.g. 0.0.0.0:8080"
        )
    if not host or any(c in host for c in "/ ?#@"):
        raise InputError(f"--serve {text}: {host!r} is not a host name or address")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FrameHub:
    """The newest result and its annotated frame, handed from the loop to any number of clients."""

    def __init__(self, render: Callable[[Result], np.ndarray] | None = None) -> None:
        self._cond = threading.Condition()
        self._encode_lock = threading.Lock()
        self._render = render
        self._seq = 0
        self._result: Result | None = None
        self._annotated: np.ndarray | None = None
        self._jpeg: tuple[int, bytes] = (0, b"")
        self._state: dict = {"index": None, "label": None, "status": "starting"}
        self.closed = False

    def publish(self, result: Result, annotated: np.ndarray | None = None) -> None:
        """Called by the loop for every frame: O(1), never blocks on a client."""
        state = _state_of(result)
        with self._cond:
            self._result, self._annotated, self._state = result, annotated, state
            self._seq += 1
            self._cond.notify_all()

    def set_status(self, status: str) -> None:
        with self._cond:
            self._state = {**self._state, "status": status}

    def state(self) -> dict:
        with self._cond:
            return dict(self._state)

    def wait(self, after: int, timeout: float) -> int:
        """The newest frame number once it is past `after` (or the current one on timeout)."""
        with self._cond:
            if self._seq <= after and not self.closed:
                self._cond.wait(timeout)
            return self._seq

    def jpeg(self) -> tuple[int, bytes]:
        """(frame number, JPEG bytes) of the newest frame, encoded at most once per frame."""
        with self._cond:
            seq, result, annotated = self._seq, self._result, self._annotated
        if result is None:
            return 0, b""
        with self._encode_lock:
            if self._jpeg[0] != seq:
                image = annotated if annotated is not None else self._draw(result)
                ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                if ok:
                    self._jpeg = (seq, buf.tobytes())
            return self._jpeg

    def _draw(self, result: Result) -> np.ndarray:
        return self._render(result) if self._render is not None else result.frame

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


def _state_of(result: Result) -> dict:
    return {
        "index": result.index,
        "label": result.label,
        "score": round(result.score, 4),
        "uncertain": result.uncertain,
        "topk": [[name, round(score, 4)] for name, score in result.topk],
        "fps": round(result.fps, 2),
        "latency_ms": round(result.timings["total"], 2),
        "inference_ms": round(result.timings["inference"], 2),
        "frame_age_ms": round(result.frame_age_ms, 2),
        "time": round(result.time, 3),
        "status": result.status,
    }


class LiveServer:
    """The web server of `--serve`.  `start()` binds (InputError if it cannot) and serves in a
    daemon thread; `url` is what to open (with the token when one is needed)."""

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        hub: FrameHub | None = None,
        token: str | None = None,
        title: str = "edgecnn live",
    ) -> None:
        self.host, self.port = host, port
        self.hub = hub or FrameHub()
        self.token = token if token is not None else (None if is_loopback(host) else _new_token())
        self.title = title
        self.streams = threading.BoundedSemaphore(MAX_STREAMS)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> LiveServer:
        server_cls = _Server6 if ":" in self.host else _Server
        try:
            self._httpd = server_cls((self.host, self.port), _handler_for(self))
        except OSError as e:
            raise InputError(
                f"--serve {self.host}:{self.port}: cannot listen ({e.strerror or e})"
            ) from None
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
            name="edgecnn-serve", daemon=True,
        )  # fmt: skip
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        query = f"?token={self.token}" if self.token else ""
        return f"http://{host}:{self.port}/{query}"

    def stop(self) -> None:
        self.hub.close()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 18\r\n"
    b"Retry-After: 5\r\nConnection: close\r\n\r\ntoo many clients\r\n"
)


def _new_token() -> str:
    return secrets.token_urlsafe(12)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def server_activate(self) -> None:
        self.connections = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().server_activate()

    def process_request(self, request, client_address) -> None:  # noqa: ANN001
        """A thread per connection, up to MAX_CONNECTIONS; past that a 503 and close."""
        if not self.connections.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(BUSY_RESPONSE)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connections.release()
            raise

    def process_request_thread(self, request, client_address) -> None:  # noqa: ANN001
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release()

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        """A client that vanished is normal; anything else is reported in one line."""
        import sys

        error = sys.exc_info()[1]
        if not isinstance(error, (*_CLIENT_GONE, OSError)):
            print(f"edgecnn serve: client {client_address[0]}: {error!r}", file=sys.stderr)


class _Server6(_Server):
    address_family = socket.AF_INET6


def _handler_for(server: LiveServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        live = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    live: LiveServer
    timeout = CLIENT_TIMEOUT_S
    protocol_version = "HTTP/1.1"
    server_version = "edgecnn"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet: one line per request would drown the live output."""

    def handle(self) -> None:
        try:
            super().handle()
        except _CLIENT_GONE:
            self.close_connection = True

    def handle_one_request(self) -> None:
        """One request, its head (request line and headers) due within the deadline."""
        self._head_timer = threading.Timer(REQUEST_HEAD_DEADLINE_S, self._drop)
        self._head_timer.daemon = True
        self._head_timer.start()
        try:
            super().handle_one_request()
        finally:
            self._head_timer.cancel()

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # the head has been read
        self._head_timer.cancel()
        return parsed

    def _drop(self) -> None:
        """Too slow: shut the socket so the blocked read returns and the thread ends."""
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if not self._authorised(query):
            self._send(403, "text/plain", b"forbidden: add ?token=... as printed by edgecnn run\n")
            return
        routes = {
            "/": self._page,
            "/index.html": self._page,
            "/state": self._state,
            "/frame.jpg": self._frame,
            "/stream.mjpg": self._stream,
        }
        route = routes.get(url.path)
        if route is None:
            self._send(404, "text/plain", b"not found\n")
            return
        route(query)

    def _authorised(self, query: dict) -> bool:
        token = self.live.token
        if token is None:
            return True
        given = (query.get("token") or [""])[0]
        if not given:
            cookie = SimpleCookie(self.headers.get("Cookie", ""))
            given = cookie[COOKIE].value if COOKIE in cookie else ""
        return hmac.compare_digest(given.encode(), token.encode())

    def _send(self, code: int, ctype: str, body: bytes, extra: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _page(self, query: dict) -> None:
        token = self.live.token
        extra = {}
        if token:
            extra["Set-Cookie"] = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
        body = PAGE.replace("{title}", html.escape(self.live.title)).encode()
        self._send(200, "text/html; charset=utf-8", body, extra)

    def _state(self, query: dict) -> None:
        body = json.dumps(self.live.hub.state()).encode()
        self._send(200, "application/json", body)

    def _frame(self, query: dict) -> None:
        _, jpeg = self.live.hub.jpeg()
        if not jpeg:
            self._send(503, "text/plain", b"no frame yet\n", {"Retry-After": "1"})
            return
        self._send(200, "image/jpeg", jpeg)

    def _stream(self, query: dict) -> None:
        if not self.live.streams.acquire(blocking=False):
            self._send(503, "text/plain", b"too many viewers\n", {"Retry-After": "5"})
            return
        try:
            self._stream_frames()
        finally:
            self.live.streams.release()
            self.close_connection = True

    def _stream_frames(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        hub = self.live.hub
        sent = 0
        while not hub.closed:
            seq = hub.wait(sent, timeout=1.0)
            if seq == sent:
                continue
            sent, jpeg = hub.jpeg()
            if not jpeg:
                time.sleep(0.05)
                continue
            head = (
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
            )
            self.wfile.write(head.encode() + jpeg + b"\r\n")
            self.wfile.flush()


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
 body{margin:0;background:#111;color:#eee;font:16px system-ui,sans-serif;text-align:center}
 #video{max-width:100%;max-height:75vh;background:#000;display:block;margin:0 auto}
 #label{font-size:2.2em;font-weight:600;margin:.3em 0 0}
 #label.uncertain{color:#fa0}
 #info{color:#aaa;margin:.2em 0}
 #topk{display:inline-block;text-align:left;min-width:18em}
 .row{display:flex;align-items:center;gap:.5em;margin:.15em 0}
 .name{width:8em;overflow:hidden;text-overflow:ellipsis}
 .bar{height:.8em;background:#4c4}
</style></head>
<body>
<img id="video" alt="live video">
<div id="label">waiting for frames...</div>
<div id="score"></div>
<div id="info"></div>
<div id="topk"></div>
<script>
const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token");
const auth = token ? "token=" + encodeURIComponent(token) + "&" : "";
function startVideo() {
  const img = $("video");
  img.onerror = () => setTimeout(startVideo, 2000);
  img.src = "stream.mjpg?" + auth + "t=" + Date.now();
}
function show(s) {
  if (s.label === null) { $("info").textContent = s.status; return; }
  $("label").textContent = s.label;
  $("label").className = s.uncertain ? "uncertain" : "";
  $("score").textContent = s.score.toFixed(2);
  $("info").textContent = s.fps.toFixed(1) + " FPS \\u00b7 latency " + s.latency_ms.toFixed(1)
    + " ms \\u00b7 frame " + s.index + (s.status === "live" || s.status === "playing" ? "" : " \\u00b7 " + s.status);
  $("topk").innerHTML = s.topk.map(([n, p]) =>
    '<div class="row"><span class="name"></span><span class="bar" style="width:' + Math.round(p * 12)
    + 'em"></span><span>' + p.toFixed(2) + '</span></div>').join("");
  [...$("topk").querySelectorAll(".name")].forEach((el, i) => el.textContent = s.topk[i][0]);
}
async function poll() {
  try {
    const r = await fetch("state?" + auth, {cache: "no-store"});
    if (r.ok) show(await r.json());
  } catch (e) { $("info").textContent = "disconnected, retrying..."; }
  setTimeout(poll, 250);
}
window.addEventListener("load", () => { startVideo(); poll(); });
</script>
</body></html>
"""
