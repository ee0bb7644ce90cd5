"""Keep TensorFlow's native log lines off the console of the commands that import it.

TensorFlow, its TFLite converter and the LiteRT interpreter write C++ log lines straight to file
descriptor 2 (`I0000 ... cpu_feature_guard.cc:...]`, `fully_quantize: 0, ...`, `INFO: Created
TensorFlow Lite XNNPACK delegate for CPU.`), between edgecnn's own lines.  TF_CPP_MIN_LOG_LEVEL
hides most of them, but only once TensorFlow has read it: the lines logged while its shared
libraries load (`cudart_stub.cc`, `WARNING: All log messages before absl::InitializeLog() ...`)
and the plain prints of the converter and of LiteRT ignore it, and no other variable reaches
them (TensorFlow's absl logging reads TF_CPP_MIN_LOG_LEVEL only).

So `quiet_native_logs()` does two things, for the duration of one command:

1. sets TF_CPP_MIN_LOG_LEVEL (3 unless the user set it: their value wins) before anything
   imports TensorFlow, and unsets it again afterwards;
2. sends file descriptor 2 through a small filter process that drops the native lines that
   level hides and passes every other byte on at once.  Python's own `sys.stderr` (edgecnn's
   messages, progress bars, warnings, tracebacks) keeps writing to the real stderr directly.

The filter is a separate process, not a thread, so a native crash message (a `F0000 ...` check
failure, which is never dropped) still reaches the console after the crash.  Nothing happens
when stderr is not the process's own (tests capturing it, embedding applications).

Run as a script, this module is that filter: `python _native_log.py LEVEL` copies stdin to
stdout without the native lines that LEVEL hides.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator

LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
DEFAULT_LEVEL = "3"  # hide INFO, WARNING and ERROR lines; FATAL ones always show
FATAL = 3

# absl/glog line prefix: severity letter, MMDD, time (whole seconds since the epoch before absl
# is initialised), thread id, file:line]
_ABSL = re.compile(rb"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] ")
_SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": FATAL}
# native prints that bypass absl, with the severity they amount to
_PRINTS = (
    (re.compile(rb"^WARNING: All log messages before absl::InitializeLog\(\) is called"), 1),
    (re.compile(rb"^INFO: "), 0),  # TFLite/LiteRT's own logger (XNNPACK delegate created, ...)
    (re.compile(rb"^fully_quantize: \d+, inference_type: "), 0),  # the int8 converter
    (re.compile(rb"^To enable the following instructions: "), 0),  # cpu_feature_guard's 2nd line
)
_PARTIAL_WAIT_S = 0.1  # a line without its newline yet is passed on after this long
_STOP_WAIT_S = 5.0


def severity(line: bytes) -> int | None:
    """0-3 (info, warning, error, fatal) for a native TensorFlow log line, None for any other."""
    match = _ABSL.match(line)
    if match:
        return _SEVERITY[match.group(1)]
    return next((level for pattern, level in _PRINTS if pattern.match(line)), None)


def is_hidden(line: bytes, level: int) -> bool:
    """Whether TF_CPP_MIN_LOG_LEVEL=`level` hides this line (fatal lines never are)."""
    found = severity(line)
    return found is not None and found < min(level, FATAL)


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """TF_CPP_MIN_LOG_LEVEL set (unless already) and native lines it hides filtered from fd 2.

    Example:
        >>> with quiet_native_logs():
        ...     train(...)  # edgecnn's lines and Keras' progress bar only
    """
    ours = LEVEL_VARIABLE not in os.environ
    os.environ.setdefault(LEVEL_VARIABLE, DEFAULT_LEVEL)
    try:
        level = _level(os.environ[LEVEL_VARIABLE])
        filtering = level and _is_process_stderr(sys.stderr)
        with _filtered_fd2(level) if filtering else contextlib.nullcontext():
            yield
    finally:
        if ours:  # TensorFlow has read it by now; leave the environment as it was
            os.environ.pop(LEVEL_VARIABLE, None)


def _level(value: str) -> int:
    try:
        return max(0, int(value))
    except ValueError:
        return 0  # TensorFlow treats an unreadable value as 0 too


def _is_process_stderr(stream) -> bool:
    try:
        return stream is sys.__stderr__ and stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


@contextlib.contextmanager
def _filtered_fd2(level: int) -> Iterator[None]:
    """fd 2 -> filter process -> the real stderr; sys.stderr -> the real stderr directly."""
    sys.stderr.flush()
    try:
        real = os.dup(2)
    except OSError:  # no usable fd 2: nothing to filter
        yield
        return
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__), str(level)],
            stdin=subprocess.PIPE,
            stdout=real,
            stderr=real,
            start_new_session=True,  # Ctrl-C stops the command, not its stderr
        )
    except OSError:
        os.close(real)
        yield
        return
    python_stderr = sys.stderr
    try:
        sys.stderr = _text_stream(real, like=python_stderr)
        os.dup2(proc.stdin.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        sys.stderr = python_stderr
        os.dup2(real, 2)  # `real` itself stays open: the stream above may still be referenced
        proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_STOP_WAIT_S)  # lets it pass on the last lines first


def _text_stream(fd: int, *, like) -> io.TextIOWrapper:
    """A stderr-like text stream on `fd` (same encoding and error handling, unbuffered)."""
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(
        raw,
        encoding=getattr(like, "encoding", None) or "utf-8",
        errors=getattr(like, "errors", None) or "backslashreplace",
        line_buffering=True,
        write_through=True,
    )


# --- the filter process --------------------------------------------------------------------


def _filter(level: int, *, source: int = 0, sink: int = 1) -> None:
    """Copy `source` to `sink` line by line without the hidden lines, until end of file."""
    import select

    pending = b""
    while True:
        ready, _, _ = select.select([source], [], [], _PARTIAL_WAIT_S if pending else None)
        if not ready:  # a prompt or a progress bar: nothing more is coming for now
            _write(sink, pending)
            pending = b""
            continue
        chunk = os.read(source, 65536)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        _write(sink, b"".join(line + b"\n" for line in lines if not is_hidden(line, level)))
    if pending and not is_hidden(pending, level):
        _write(sink, pending)


def _write(fd: int, data: bytes) -> None:
    """Write all of `data`; if the console is gone, drop it (the input must still drain)."""
    while data:
        try:
            data = data[os.write(fd, data) :]
        except OSError:
            return


if __name__ == "__main__":
    _filter(_level(sys.argv[1]))
