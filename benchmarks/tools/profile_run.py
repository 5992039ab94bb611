"""Where the time goes: cProfile every thread of one throughput run (not part of ``make bench``).

Logs ``--events`` events through a ShipHandler (the workload of the
benchmarks) to a fresh receiver, or with ``--handler down`` to a port where
nothing listens, and prints, for the application's thread and for
each of logship's worker threads, the CPU time per event and the functions
that spent the most of it. Each thread is profiled on its own CPU clock
(``time.thread_time``), so time a thread spends waiting is not counted.
cProfile's own overhead inflates small, frequent calls: read the shares,
not the absolute figures; ``run.py`` gives those.

    .venv/bin/python benchmarks/tools/profile_run.py [--handler down] [--overflow block] [--top 15]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import sys
import threading
import time
from types import FrameType
from typing import Any

# The benchmarks' helpers are in the folder above this one.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import bench_logger, handler_stats, log_events, receiver
from _tool import RECEIVER, bench_handler

_profiles: dict[str, cProfile.Profile] = {}


def _profile_this_thread(frame: FrameType, event: str, arg: Any) -> None:
    """Installed with ``threading.setprofile``: swap itself for a cProfile of the new thread."""
    sys.setprofile(None)
    profile = cProfile.Profile(time.thread_time)
    _profiles[threading.current_thread().name] = profile
    profile.enable()


def report(name: str, profile: cProfile.Profile, events: int, top: int) -> str:
    """A thread's CPU time per event and its ``top`` functions by own time."""
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    total = stats.total_tt  # type: ignore[attr-defined]
    out.write(f"==== {name}: {total * 1e3:.0f} ms CPU, {total / events * 1e6:.2f} µs/event\n")
    stats.sort_stats("tottime").print_stats(top)
    return "\n".join(line for line in out.getvalue().splitlines() if line.strip())


def main() -> None:
    """Profile one run and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--handler", choices=("ship", "down"), default="ship")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument(
        "--overflow", help="default: block with a receiver, the handler's own if down"
    )
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    threading.setprofile(_profile_this_thread)  # every thread started from now on
    with contextlib.ExitStack() as stack:
        args.url = None
        if args.handler == "ship":
            args.url = stack.enter_context(receiver(RECEIVER))
            args.overflow = args.overflow or "block"
        options = {"overflow": args.overflow} if args.overflow else {}
        with bench_handler(args.handler, args.url, **options) as handler:
            logger = bench_logger(handler)
            app = cProfile.Profile(time.thread_time)
            app.enable()
            log_events(logger, 0, args.events)
            app.disable()
            if args.handler == "ship":
                handler.flush(60.0)
            stats = handler_stats(handler)
        # Closing the handler has stopped its threads, so their profiles are complete.
    threading.setprofile(None)
    print(f"handler stats: {stats}\n")
    print(report("application thread (the log calls)", app, args.events, args.top))
    for name, profile in sorted(_profiles.items()):
        if name.startswith("logship"):
            print()
            print(report(f"thread {name}", profile, args.events, args.top))


if __name__ == "__main__":
    main()
