"""Exceptions shared by every stage.

`InputError` is the one the command line turns into exit code 2 and a single line on stderr:
the user gave us something we cannot use (a missing folder, a corrupt model file, an unknown
backend).  Anything else escaping to the CLI is a bug in edgecnn (exit 1).
"""

from __future__ import annotations

from .formatting import shown


def first_line(e: BaseException, *, limit: int | None = None) -> str:
    """The first line of an exception's message, cut to `limit` characters, for an InputError's
    one line (library errors run to many lines: a parser's context, an array, a traceback), with
    what would rewrite a console escaped: such messages quote the file (a node's name, say)."""
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return shown(line[:limit])


class InputError(ValueError):
    """Bad input from the user: the message says what is wrong and where."""


class ImageError(InputError):
    """A file that cannot be decoded as an image."""


class BrokenModelError(InputError):
    """A model file that an engine found malformed, not merely beyond its operators: `auto`
    tries no other engine on it (a corrupted file can crash one that checks less)."""


class MissingDependencyError(InputError):
    """An optional package is not installed; the message names the pip extra."""

    def __init__(self, package: str, extra: str, purpose: str = "") -> None:
        what = f" for {purpose}" if purpose else ""
        super().__init__(f"{package} is not installed{what}: pip install 'edgecnn[{extra}]'")
        self.package = package
        self.extra = extra


class VerificationError(RuntimeError):
    """An exported artifact does not behave like the model it came from (exit 1)."""
