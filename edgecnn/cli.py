"""The `edgecnn` command: one entry point, a thin layer over the Python API.

Each subcommand lives in `edgecnn/commands/<name>.py` with two functions: `add_arguments(parser)`
and `run(args) -> int`.  Modules are imported lazily, so `edgecnn --help` and `edgecnn predict`
never import TensorFlow.  Exit codes: 0 ok, 2 bad input (one line on stderr), 1 internal error.
The commands that import TensorFlow run with its native log lines kept off the console
(`_native_log`): set up here, before dispatch, never when a library module is imported.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from edgecnn import __version__

# commands that import TensorFlow (profile: for some inputs only)
TENSORFLOW_COMMANDS = frozenset({"demo", "train", "export", "profile"})
COMMANDS = {
    "demo": "built-in data -> train -> export -> verify -> bench -> live run -> report",
    "train": "train a CNN on a folder of labelled photos",
    "export": "export a trained model to int8/fp16/fp32 TFLite and ONNX, verified",
    "eval": "accuracy, per-class precision/recall and confusion matrix of any model file",
    "predict": "classify image files with any model file",
    "run": "live classification from a camera, video, stream or image folder",
    "bench": "latency, throughput, memory and accuracy of every artifact x backend",
    "profile": "parameters, MACs, memory and quantisation error per layer",
}


# OSErrors that say a path the user gave, or the disk behind it, cannot take what is written
# (a full SD card, a read-only mount, a folder that cannot exist): bad input, not a bug. Without
# a path only a full disk (_FULL_ERRNOS) is; anything else stays an internal error.
_PATH_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ENAMETOOLONG,
        errno.EEXIST,  # mkdir(parents=True, exist_ok=True) where a file has the folder's name
    }
)


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

# Arguments that LiteRT, OpenCV, FFmpeg or TensorFlow open by name (models, videos, the export's
# run folder). They take UTF-8 names only, and OpenCV's binding crashes the process on others.
_NATIVE_PATHS = ("model", "targets", "source", "record")


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line (no usage block) on bad arguments."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="edgecnn",
        description="From a folder of labelled photos to a CNN classifier running live at the edge.",
    )
    parser.add_argument("--version", action="version", version=f"edgecnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _command_module(name).add_arguments(p)
    return parser


def _command_module(name: str):
    return importlib.import_module(f"edgecnn.commands.{name}")


def main(argv: list[str] | None = None) -> int:
    try:
        args, unknown = build_parser().parse_known_args(argv)
        if unknown:  # argparse would name the top-level program, not the command
            print(f"edgecnn {args.command}: error: unrecognized arguments: {' '.join(unknown)}",
                  file=sys.stderr)  # fmt: skip
            return 2
        if args.command in TENSORFLOW_COMMANDS or _runs_keras(args):
            from edgecnn._native_log import quiet_native_logs

            with quiet_native_logs():
                return _dispatch(args)
        return _dispatch(args)
    except KeyboardInterrupt:  # Ctrl-C while the command modules are still being imported
        # (this module imports nothing heavy at its top, so the whole start-up is covered)
        print("edgecnn: interrupted", file=sys.stderr)
        return 130


def _runs_keras(args: argparse.Namespace) -> bool:
    """Whether a device command will import TensorFlow: given a .keras file or the keras
    backend (`edgecnn.runtime` never imports it for .tflite or .onnx files)."""
    models = [getattr(args, "model", None), *(getattr(args, "targets", None) or ())]
    backends = [getattr(args, "backend", None), *(getattr(args, "backends", None) or "").split(",")]
    return "keras" in backends or any(str(m).endswith(".keras") for m in models if m)


def _dispatch(args: argparse.Namespace) -> int:
    from edgecnn.runtime.errors import InputError
    from edgecnn.runtime.formatting import shown

    try:
        _refuse_names_not_utf8(args)
        return int(_command_module(args.command).run(args) or 0)
    except InputError as e:  # file names in it are shown escaped: one line, whatever they hold
        print(f"edgecnn {args.command}: error: {shown(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgecnn {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `edgecnn eval ... | head`: the reader left; exit quietly like other Unix tools.
        _drop_stdout()
        return 141
    except OSError as e:
        if e.errno not in _PATH_ERRNOS:
            raise
        if e.filename is not None:
            where = str(e.filename)
        elif e.errno in _FULL_ERRNOS:  # a write to stdout or an open file
            where = "cannot write the output"
        else:  # no path to name: not the user's
            raise
        try:
            sys.stdout.flush()
        except OSError:  # stdout itself is what failed (`> /dev/full`)
            _drop_stdout()
        reason = e.strerror or os.strerror(e.errno)
        if e.errno == errno.EEXIST and not os.path.isdir(where):
            reason = "a file is in the way of a folder of that name"
        print(f"edgecnn {args.command}: error: {shown(where)}: {reason}", file=sys.stderr)
        return 2


def _refuse_names_not_utf8(args: argparse.Namespace) -> None:
    """InputError for a path in `_NATIVE_PATHS` whose bytes are not UTF-8 (Python holds them
    as lone surrogates), before a native library is handed it."""
    from edgecnn.runtime.errors import InputError
    from edgecnn.runtime.formatting import shown

    for name in _NATIVE_PATHS:
        value = getattr(args, name, None)
        for text in value if isinstance(value, list) else [value]:
            if not isinstance(text, str):
                continue
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise InputError(
                    f"{shown(text)}: the name is not UTF-8 text, which the model and video "
                    "libraries cannot open; rename it"
                ) from None


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that the exit's own flush cannot fail a second time."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
