"""The endpoint is down: spilling to disk, memory, and the call's latency meanwhile (7, 8, 10).

Logs ``--events`` timed calls to a port where nothing listens, at the
defaults (``overflow="spill"``): in a tight loop, or paced at ``--rate``
events/s. ``stats()`` is read between chunks, then until ``spilled`` stops
growing. With ``--checkpoints N,N`` the calls are not timed (the samples
would take memory of their own) and RSS is read at those counts instead.
With ``--spill-dir`` the folder is kept for ``replay.py``. With ``--handler
null``: the same calls, the floor. What is measured: ``docs/performance.md``.

    python benchmarks/spill.py --handler null|down [--rate 50000] [--checkpoints N,N]
        [--spill-dir DIR]
"""

from __future__ import annotations

import argparse
import gc
import logging
import tempfile
import time
from contextlib import ExitStack
from typing import Any

import _common as c

# How often stats() is read: often enough to date the end of spilling to a
# few ms, rarely enough to cost the logging loop nothing measurable.
_SAMPLE_EVERY = 0.01
# How long to wait for spilling to stop after the last call, at most.
_SETTLE_DEADLINE = 20.0


class SpilledOverTime:
    """``stats()["spilled"]`` sampled over time, at most once per ``_SAMPLE_EVERY``."""

    def __init__(self, handler: logging.Handler) -> None:
        self.handler = handler
        self.points: list[tuple[float, int]] = []
        self._next = 0.0

    def poll(self) -> None:
        """Take a sample, unless the last one is too recent (or the handler has no stats)."""
        now = time.perf_counter()
        if now < self._next:
            return
        self._next = now + _SAMPLE_EVERY
        stats = c.handler_stats(self.handler)
        if stats is not None:
            self.points.append((now, stats["spilled"]))

    def settle(self, quiet: float, deadline: float) -> None:
        """Sample until ``spilled`` has not grown for ``quiet`` seconds, or ``deadline``."""
        while self.points and time.perf_counter() < deadline:
            self.poll()
            if self.points[-1][0] - self.plateau()[1] >= quiet:
                return
            time.sleep(_SAMPLE_EVERY)

    def plateau(self) -> tuple[int, float]:
        """The last count sampled, and when it was first seen."""
        value, since = self.points[-1][1], self.points[-1][0]
        for t, v in reversed(self.points):
            if v != value:
                break
            since = t
        return value, since


class Checkpoints:
    """The process's RSS, and the loop's rate, each time the events logged reach a checkpoint."""

    def __init__(self, counts: str) -> None:
        self.counts = {int(n) for n in counts.split(",") if n}
        gc.collect()
        self.base, self.base_peak = c.rss_bytes(), c.peak_rss_bytes()
        self.points: list[dict[str, float]] = []
        self._last = (0, time.perf_counter())

    def reached(self, events: int) -> None:
        """Read RSS if ``events`` is a checkpoint."""
        if events not in self.counts:
            return
        now, (before, since) = time.perf_counter(), self._last
        rss, self._last = c.rss_bytes(), (events, now)
        growth = (rss - self.base) / c.MiB
        rate = (events - before) / (now - since)
        self.points.append({"events": events, "growth_mib": growth, "events_per_s": rate})

    def result(self) -> dict[str, Any]:
        """The start, the points, and the peak's growth over the start's."""
        peak = c.peak_rss_bytes()
        return {
            "base_rss_mib": self.base / c.MiB,
            "peak_rss_mib": peak / c.MiB,
            "peak_rss_growth_mib": (peak - self.base_peak) / c.MiB,
            "points": self.points,
        }


def calls(
    logger: logging.Logger,
    args: argparse.Namespace,
    watch: SpilledOverTime,
    rss: Checkpoints | None,
) -> tuple[list[int], float]:
    """Make the calls, ``--rate`` per second (0: no pause); return their times and the start.

    ``stats()`` is sampled after each chunk (see :func:`_common.paced`); with
    ``rss`` the calls are not timed and RSS is read at its checkpoints.
    """
    samples: list[int] = []

    def step(start: int, count: int) -> None:
        if rss is None:
            samples.extend(c.timed_calls(logger, start, count)[0])
        else:
            c.log_events(logger, start, start + count)
            rss.reached(start + count)
        watch.poll()

    return samples, c.paced(args.events, args.rate, args.chunk, step)


def main() -> None:
    """Run the case and print its result."""
    parser = c.case_parser(__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=0.0, help="events/s; 0: a tight loop")
    # 500: the first call after a pause (cold caches) is 0.2% of calls, so it
    # shows in p99.9 but not in p99, for the NullHandler and the ShipHandler alike.
    parser.add_argument("--chunk", type=int, default=500, help="calls between pauses")
    parser.add_argument("--warmup", type=int, default=10_000, help="calls left out of latency")
    parser.add_argument("--quiet", type=float, default=0.5, help="seconds without growth")
    parser.add_argument("--checkpoints", default="", help="event counts to read RSS at")
    parser.add_argument("--spill-dir", help="spill here and keep it (default: a temporary one)")
    args = parser.parse_args()
    if not 0 <= args.warmup < args.events:
        parser.error("--warmup must leave some of --events to time")
    if any(int(n) % args.chunk for n in args.checkpoints.split(",") if n):
        parser.error("--checkpoints must be multiples of --chunk")
    with ExitStack() as stack:
        folder = args.spill_dir or stack.enter_context(
            tempfile.TemporaryDirectory(prefix="logship-bench-")
        )
        with c.bench_handler(args, spill_dir=folder) as handler:
            logger = c.bench_logger(handler)
            watch = SpilledOverTime(handler)
            rss = Checkpoints(args.checkpoints) if args.checkpoints else None
            gc.collect()
            cpu0 = time.process_time()
            samples, t0 = calls(logger, args, watch, rss)
            loop_s = time.perf_counter() - t0
            loop_end = c.handler_stats(handler)
            watch.settle(args.quiet, time.perf_counter() + _SETTLE_DEADLINE)
            cpu = time.process_time() - cpu0
            running = c.handler_stats(handler)
        stats = c.handler_stats(handler)  # after close(), which spilled what memory held
        disk = c.folder_usage(folder)
    result: dict[str, Any] = {
        "case": "spill",
        "handler": args.handler,
        "rate": args.rate or None,
        "chunk": args.chunk,
        "events": args.events,
        "loop_s": loop_s,
        "loop_events_per_s": args.events / loop_s,
        # Until spilling stopped: the pump's work included, the pauses not.
        "cpu_us_per_event": cpu / args.events * 1e6,
        "all": c.latency_summary(samples[args.warmup :]) if rss is None else None,
        "stats_loop_end": loop_end,
        "stats_running": running,
        "stats": stats,
    }
    if rss is not None:
        result |= rss.result()
    if stats is not None and watch.points:
        spilled, since = watch.plateau()
        result |= {
            "spilled_running": spilled,
            "spill_s": since - t0,
            "spilled_per_s": spilled / (since - t0),
            "spilled_at_close": stats["spilled"] - spilled,
            "disk_bytes": disk["bytes"],
            "disk_files": len(disk["files"]),
            "bytes_per_event": disk["bytes"] / stats["spilled"] if stats["spilled"] else None,
        }
    c.emit_result(result)


if __name__ == "__main__":
    main()
