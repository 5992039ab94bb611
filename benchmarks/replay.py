"""Replaying a spill folder to a live receiver, from a fresh process (table 9).

Counts the events in ``--spill-dir`` as ``logship spill status`` does, then
builds a ShipHandler at its defaults on that folder and logs nothing: it
replays from its construction. Waits until the receiver counted every event
and ``stats()["replayed"]`` agrees, then until no spill file is left.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import _common as c

from logship.cli import spillinspect as si
from logship.worker.spill import folder as spillfolder
from logship.worker.spill import safefiles as safe


def before(args: Any) -> None:
    """What is read before the handler is built: the events on disk, the receiver's count."""
    if args.handler != "ship" or not args.url or not args.spill_dir:
        raise SystemExit("replay needs --handler ship, --url and --spill-dir")
    args.on_disk = si.summarize(args.spill_dir, set()).events
    if not args.on_disk:
        raise SystemExit(f"nothing spilled in {args.spill_dir}: the spill case failed?")
    args.base = c.receiver_stats(args.url)["unique"]
    args.started = time.process_time(), time.perf_counter()


def measure(args: Any, handler: logging.Handler, _logger: logging.Logger) -> Iterator[c.Result]:
    n, deadline = args.on_disk, args.started[1] + args.deadline
    replayed = lambda stats: stats["replayed"] >= n  # noqa: E731
    waited = c.wait_for_receiver(handler, args, n, args.started, deadline, args.base, replayed)
    emptied_at = None
    while time.perf_counter() < waited["done_at"] + 5.0:
        if not spillfolder.has_spilled(args.spill_dir):
            emptied_at = time.perf_counter()
            break
        time.sleep(0.01)
    result: c.Result = {
        "on_disk_events": n,
        **waited,
        # From the last event counted to the last spill file gone.
        "emptied_after_s": None if emptied_at is None else emptied_at - waited["done_at"],
    }
    yield result  # the handler is closed here
    # The folder's lock file stays after the last spill file goes; it holds no events.
    left = [e.name for e in os.scandir(args.spill_dir) if e.is_file() and e.name != safe.LOCK_NAME]
    stats, counts = c.handler_stats(handler), c.receiver_stats(args.url)
    result |= {"left_files": left, "stats": stats, "receiver": counts}


if __name__ == "__main__":
    c.case(measure, __doc__, before=before, deadline=(40.0, "seconds to wait for it all"))
