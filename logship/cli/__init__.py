"""The ``logship`` command line (also ``python -m logship``).

Each command is a module with ``add_parser(subparsers)``, which registers
its arguments and sets ``run``, and ``run(args) -> int``, which returns the
exit status. A new command is one module and one entry in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import os
import sys

import logship
from logship.cli import check, demo, receive, spill

COMMANDS = (receive, check, demo, spill)


def build_parser() -> argparse.ArgumentParser:
    """The ``logship`` argument parser with every command registered."""
    parser = argparse.ArgumentParser(
        prog="logship",
        description="Ship Python logs to a log aggregator: tools for developing with logship.",
    )
    parser.add_argument("--version", action="version", version=f"logship {logship.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``logship`` command; returns the exit status (2: usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        status: int = args.run(args)
        # Inside the try: what is still buffered is written here, not at exit.
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`logship receive | head`): no traceback, and
        # stdout pointed at /dev/null so that the interpreter's own final
        # flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return status
