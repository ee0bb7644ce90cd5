"""`edgecnn export` (not implemented yet)."""

from __future__ import annotations

import argparse

from edgecnn.runtime.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise InputError("'export' is not implemented yet")
