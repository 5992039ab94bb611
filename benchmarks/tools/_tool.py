"""What the tools share beyond ``benchmarks/_common.py``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import LIVE_KINDS, make_handler, receiver

#: ``logship receive``: logship's wire only.
RECEIVER = (sys.executable, "-m", "logship", "receive", "--port", "0", "--quiet")


@contextmanager
def bench_handler(kind: str, url: str | None = None, **options: Any) -> Iterator[logging.Handler]:
    """A handler of ``kind``, closed after; without ``url``, a receiver of its own."""
    args = argparse.Namespace(handler=kind, url=url, spill_dir=None)
    with ExitStack() as stack:
        if kind in LIVE_KINDS and not url:
            args.url = stack.enter_context(receiver())
        handler, close = make_handler(args, **options)
        stack.callback(close)
        yield handler
