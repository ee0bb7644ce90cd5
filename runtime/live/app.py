"""`edgecnn run` as one function: the loop plus the outputs asked for, and the summary at exit.

Everything is checked before the model is loaded or the camera opened (option ranges, the
`--serve` address, the `--record` extension, whether a window can be shown), so bad input fails
in a second with one line.  The run ends at the end of a file, after `max_frames`, on q/Esc in
the window, or on Ctrl-C; in every case the outputs are closed properly and the summary printed.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import webbrowser
from collections.abc import Callable
from contextlib import contextmanager
from typing import IO

import numpy as np

from ..errors import InputError
from ..formatting import shown
from .capture import Backoff
from .loop import DEFAULT_TOP_K, ClassifierLike, Live, Result, check_options, open_classifier
from .outputs import (
    ConsoleLine,
    JsonlWriter,
    Output,
    Recorder,
    Window,
    check_jsonl_target,
    check_record_path,
    has_gui_build,
)
from .overlay import draw
from .server import DEFAULT_HOST, FrameHub, LiveServer, parse_address
from .sources import Source, open_source
from .stats import Summary


def run_live(
    model: ClassifierLike | str | os.PathLike,
    source: Source | int | str | os.PathLike = 0,
    *,
    backend: str = "auto",
    threads: int | None = None,
    show: bool = False,
    serve: str | None = None,
    token: str | None = None,
    record: str | os.PathLike | None = None,
    jsonl: str | os.PathLike | None = None,
    max_frames: int | None = None,
    smooth: float | None = None,
    min_score: float | None = None,
    realtime: bool = False,
    top_k: int = DEFAULT_TOP_K,
    console: bool = True,
    backoff: Backoff | None = None,
    log: IO[str] | None = None,
    on_server: Callable[[LiveServer], None] | None = None,
    open_browser: Callable[[str], object] = webbrowser.open,
) -> Summary:
    """Run the live loop with the outputs asked for and return the summary it printed.

    Args mirror `edgecnn run`.  `console` prints a short line per label change when no other
    output is chosen; `log` receives status and summary lines (stderr by default); `on_server`
    is called with the started server (tests use it to learn the port).  `show` on an OpenCV
    build without GUI support (what `pip install edgecnn` brings) serves the live view on
    127.0.0.1 instead and hands its URL to `open_browser` (the default browser, honouring
    $BROWSER); the URL is printed too.
    """
    log = log or sys.stderr
    say = _printer(log)
    check_options(top_k=top_k, smooth=smooth, min_score=min_score, max_frames=max_frames)
    address = parse_address(serve) if serve else None
    in_browser = show and not has_gui_build()
    if in_browser:
        show = False
        address = address or (DEFAULT_HOST, 0)  # loopback, any free port
    if record is not None:
        check_record_path(record)
    if jsonl is not None:
        check_jsonl_target(jsonl)
    window = Window() if show else None

    classifier = open_classifier(model, backend=backend, threads=threads)
    opened = open_source(source)
    loop = Live(
        classifier, opened, top_k=top_k, smooth=smooth, min_score=min_score,
        max_frames=max_frames, realtime=realtime, backoff=backoff, on_status=say,
    )  # fmt: skip
    outputs: list[Output] = []
    server: LiveServer | None = None
    try:
        if window is not None:
            outputs.append(window)
        if record is not None:
            file_rate = None if (opened.is_live or realtime) else opened.fps
            outputs.append(Recorder(record, fps=file_rate))
        if jsonl is not None:
            outputs.append(JsonlWriter(jsonl))
        if address is not None:
            server = _start_server(address, token, classifier, opened, say)
            if on_server is not None:
                on_server(server)
            if in_browser:
                _open_in_browser(server.url, open_browser, say)
        if console and not outputs and server is None:
            outputs.append(ConsoleLine())
        say(f"classifying {opened.name} with {_describe(classifier)}")
        _drive(loop, outputs, server, say)
    finally:
        loop.close()
        unfinished = _close_all(outputs)
        if server is not None:
            server.stop()
    if unfinished is not None:  # a file that could not be finished (a full disk): bad input
        raise unfinished
    summary = loop.summary()
    print(summary.format(), file=log, flush=True)
    return summary


def _drive(loop: Live, outputs: list[Output], server: LiveServer | None, say) -> None:
    """Iterate the loop, feeding each output; Ctrl-C ends the run like the end of a file."""
    need_frame = any(o.needs_frame for o in outputs)

    def idle() -> None:
        for o in outputs:
            o.idle()
        if server is not None:
            server.hub.set_status(loop.status)
        if any(o.quit_requested for o in outputs):
            loop.stop()

    loop.idle_hooks.append(idle)
    interrupted = False

    def on_interrupt(signum, frame) -> None:
        nonlocal interrupted
        if interrupted:  # a second Ctrl-C: stop waiting for the current frame
            raise KeyboardInterrupt
        interrupted = True
        loop.stop()  # the loop ends after the current frame; outputs close normally

    try:
        with _handling_sigint(on_interrupt):
            for result in loop:
                annotated = _annotate(result) if need_frame else None
                for o in outputs:
                    o.write(result, annotated)
                if server is not None:
                    server.hub.publish(result, annotated)
                if any(o.quit_requested for o in outputs):
                    break
    except KeyboardInterrupt:
        interrupted = True
    if interrupted:
        say("interrupted")


@contextmanager
def _handling_sigint(handler):
    """Ctrl-C calls `handler` instead of raising KeyboardInterrupt at an arbitrary point (inside
    a video writer, say) while the block runs; only the main thread can install it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _annotate(result: Result) -> np.ndarray:
    return draw(result)


def _start_server(address, token, classifier, source, say) -> LiveServer:
    host, port = address
    title = f"edgecnn: {source.name}"
    server = LiveServer(host, port, hub=FrameHub(render=draw), token=token, title=title).start()
    if server.token:
        say(f"serving on {server.url}  (token required on {host}: keep this URL private)")
    else:
        say(f"serving on {server.url}")
    return server


def _open_in_browser(url: str, open_browser: Callable[[str], object], say) -> None:
    """--show without a GUI OpenCV: the live page in the default browser, or the URL to open."""
    say(f"this OpenCV has no window support: showing the live view in a browser at {url}")
    try:
        opened = open_browser(url)
    except Exception as e:  # webbrowser runs whatever $BROWSER names; never stop the loop for it
        opened, why = False, f" ({type(e).__name__}: {e})"
    else:
        why = ""
    if not opened:
        say(f"could not start a browser{why}; open {url} yourself")


def _close_all(outputs: list[Output]) -> OSError | InputError | None:
    """Close every output; the first that could not finish its file, if any."""
    first = None
    for o in outputs:
        try:
            o.close()
        except (OSError, InputError) as e:
            first = first or e
    return first


def _describe(classifier: ClassifierLike) -> str:
    return f"{os.path.basename(os.fspath(classifier.path))} ({classifier.backend})"


def _printer(stream: IO[str]) -> Callable[[str], None]:
    def say(message: str) -> None:  # file and source names in it are shown escaped
        print(f"edgecnn run: {shown(message)}", file=stream, flush=True)

    return say
