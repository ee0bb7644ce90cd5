"""Memory over a long live run: 20,000 frames through the whole `edgecnn run` pipeline.

    python benchmarks/soak.py [MODEL.tflite] [--frames 20000]

A short generated 320x240 clip is played in a loop (a file source that rewinds at its end, so
decoding is real), through the real model, the overlay, the web server with one MJPEG viewer and
a /state poller attached, and a JSON-lines log.  RSS is read from /proc/self/status after a
warm-up (frame 1,000) and at the last frame; the run passes when it grew by less than 5%.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

from edgecnn.runtime.live import VideoFileSource, run_live

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 1000


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def make_clip(path: Path, frames: int = 250) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (320, 240))
    rng = np.random.default_rng(0)
    for i in range(frames):
        img = np.full((240, 320, 3), (i * 3) % 255, np.uint8)
        cv2.circle(
            img, ((7 * i) % 320, 120), 40, tuple(int(c) for c in rng.integers(0, 255, 3)), -1
        )
        writer.write(img)
    writer.release()
    return path


class LoopingClip(VideoFileSource):
    """A video file that rewinds at its end (a camera that never stops, with real decoding);
    it notes RSS when frame `WARMUP` and frame `last` are read."""

    def __init__(self, path: Path, *, last: int) -> None:
        super().__init__(path)
        self.count = 0
        self.last = last
        self.rss: dict[str, float] = {}

    def read(self):
        got = super().read()
        if got is None:
            self.open()
            got = super().read()
        self.count += 1
        if self.count == WARMUP:
            self.rss["warm"] = rss_mib()
        if self.count == self.last:
            self.rss["end"] = rss_mib()
        return got


def viewers(port: int, stop: threading.Event) -> None:
    """One MJPEG viewer reading everything and one page polling /state, until `stop`."""

    def stream() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: soak\r\n\r\n")
            while not stop.is_set() and s.recv(1 << 16):
                pass

    def poll() -> None:
        while not stop.is_set():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/state", timeout=10) as r:
                r.read()
            time.sleep(0.2)

    def quietly(fn) -> None:
        with contextlib.suppress(OSError):  # the server goes away at the end of the run
            fn()

    for target in (stream, poll):
        threading.Thread(target=quietly, args=(target,), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "model", nargs="?", help="model file (default: newest runs/*/export/model_int8.tflite)"
    )
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    found = sorted(glob.glob(str(ROOT / "runs/*/export/model_int8.tflite")), key=os.path.getmtime)
    model = args.model or (found[-1] if found else None)
    if model is None:
        parser.error("no model: pass MODEL or create runs/NAME/export/model_int8.tflite")
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="edgecnn-soak-") as tmp:
        clip = LoopingClip(make_clip(Path(tmp) / "clip.mp4"), last=args.frames)
        start_rss = rss_mib()
        t0 = time.perf_counter()
        summary = run_live(
            model, clip, threads=args.threads, max_frames=args.frames, serve="127.0.0.1:0",
            jsonl=str(Path(tmp) / "soak.jsonl"), console=False,
            on_server=lambda server: viewers(server.port, stop),
        )  # fmt: skip
        stop.set()
        seconds = time.perf_counter() - t0
    warm, end = clip.rss.get("warm", float("nan")), clip.rss.get("end", float("nan"))
    growth = (end - warm) / warm
    print(
        f"\nsoak: {summary.frames} frames in {seconds:.0f}s ({summary.fps:.0f} FPS), model {model}"
    )
    print(
        f"RSS at start {start_rss:.1f} MiB, after {WARMUP} frames {warm:.1f} MiB, "
        f"at frame {args.frames} {end:.1f} MiB: growth {growth:+.2%} (limit 5%)"
    )
    return 0 if growth < 0.05 and summary.frames == args.frames else 1


if __name__ == "__main__":
    sys.exit(main())
