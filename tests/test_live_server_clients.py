"""`--serve` against hostile clients: every one gets a bounded HTTP refusal and the loop, and
well-behaved viewers, carry on."""

from __future__ import annotations

import socket
import time

import pytest
from test_live_server import Running, _get

import edgecnn.runtime.live.server as server_module


def _raw(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send raw bytes, return everything the server answers before it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else 0


@pytest.mark.parametrize(
    "path",
    [
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "//etc/passwd",
        "/static/../../edgecnn.json",
        "/index.html/../../etc/hostname",
    ],
)
def test_paths_outside_the_five_routes_are_not_found(path):
    with Running("green") as run:
        run.wait_frames(1)
        status, body = _get(run.base + path)
        assert status == 404 and body == b"not found\n"
        assert _get(run.base + "/state")[0] == 200


def test_oversized_request_line_and_headers_are_refused():
    with Running("green") as run:
        run.wait_frames(1)
        long_line = b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        assert _status(_raw(run.server.port, long_line)) == 414
        big_header = b"GET /state HTTP/1.1\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n"
        assert _status(_raw(run.server.port, big_header)) == 431
        many = b"".join(b"X-%d: 1\r\n" % i for i in range(200))
        assert _status(_raw(run.server.port, b"GET /state HTTP/1.1\r\n" + many + b"\r\n")) == 431
        assert _get(run.base + "/state")[0] == 200


def test_a_client_dripping_its_request_is_dropped_at_the_deadline(monkeypatch):
    monkeypatch.setattr(server_module, "REQUEST_HEAD_DEADLINE_S", 1.0)
    with Running("green") as run:
        run.wait_frames(1)
        with socket.create_connection(("127.0.0.1", run.server.port), timeout=8) as s:
            start = time.monotonic()
            s.sendall(b"GET /state HTTP/1.1\r\n")
            closed = False
            for _ in range(20):  # one header byte every 0.3 s: each read is well inside timeout
                try:
                    s.sendall(b"X")
                except OSError:
                    closed = True
                    break
                time.sleep(0.3)
                s.setblocking(False)
                try:
                    closed = s.recv(1024) == b""
                except BlockingIOError:
                    pass
                except OSError:
                    closed = True
                s.setblocking(True)
                if closed:
                    break
            assert closed, "the dripping client was still connected after 6 s"
            assert 0.8 < time.monotonic() - start < 4.0
        assert _get(run.base + "/state")[0] == 200  # the others were never held up


def test_connections_past_the_cap_get_503_and_the_server_recovers(monkeypatch):
    monkeypatch.setattr(server_module, "MAX_CONNECTIONS", 4)
    monkeypatch.setattr(server_module, "REQUEST_HEAD_DEADLINE_S", 1.5)
    with Running("green") as run:
        run.wait_frames(1)
        idle = [socket.create_connection(("127.0.0.1", run.server.port)) for _ in range(4)]
        try:
            time.sleep(0.2)
            reply = _raw(run.server.port, b"GET /state HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _status(reply) == 503 and b"too many clients" in reply
        finally:
            for s in idle:
                s.close()
        time.sleep(0.5)
        assert _get(run.base + "/state")[0] == 200


def test_streams_past_the_cap_get_503(monkeypatch):
    monkeypatch.setattr(server_module, "MAX_STREAMS", 2)
    with Running("green") as run:
        run.wait_frames(1)
        viewers = []
        try:
            for _ in range(2):
                s = socket.create_connection(("127.0.0.1", run.server.port), timeout=5)
                s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
                assert s.recv(64).startswith(b"HTTP/1.1 200")
                viewers.append(s)
            status, body = _get(run.base + "/stream.mjpg")
            assert status == 503 and body == b"too many viewers\n"
        finally:
            for s in viewers:
                s.close()


def test_a_wrong_or_missing_token_is_forbidden_on_every_route():
    with Running("green", token="right-token") as run:
        for route in ("/", "/state", "/frame.jpg", "/stream.mjpg", "/nowhere"):
            assert _get(run.base + route)[0] == 403
            assert _get(run.base + route + "?token=wrong-token")[0] == 403
            assert _get(run.base + route + "?token=right-token-and-more")[0] == 403
        assert _get(run.base + "/state?token=right-token")[0] == 200


def test_responses_forbid_content_sniffing():
    import urllib.request

    with Running("green") as run:
        run.wait_frames(1)
        for route in ("/", "/state", "/frame.jpg", "/nowhere"):
            try:
                with urllib.request.urlopen(run.base + route, timeout=5) as resp:
                    headers = resp.headers
            except urllib.error.HTTPError as e:
                headers = e.headers
            assert headers["X-Content-Type-Options"] == "nosniff", route
