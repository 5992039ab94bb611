"""Case 4: spilling to disk with the endpoint down, and the log call's latency meanwhile.

Logs ``--events`` events, each call timed (the call of ``latency.py``), to a
port where nothing listens, with the default options (``overflow="spill"``)
and a spill folder of its own: as fast as the loop goes, or paced at
``--rate`` events per second (chunks of ``--chunk`` calls, each started when
it is due). ``stats()`` is read between chunks, then every 10 ms after the
last call until ``spilled`` has not grown for ``--quiet`` seconds.

Reports events spilled per second (``spilled`` then, over the time from the
first call to the first sample that saw it), what ``close()`` spilled after
that (what the ring and the batches still held), events dropped, and bytes
on disk per spilled event after ``close()``. The latency percentiles leave
out the first ``--warmup`` calls, made before the ring is half full and
spilling starts. With ``--handler null`` it makes the same calls, paced the
same way, to a NullHandler: the floor for the latency and the CPU.

With ``--spill-dir`` the folder is kept, spilled events and all, for ``replay.py``.

    python benchmarks/spill.py --handler null|down [--rate 50000] [--spill-dir DIR]
"""

from __future__ import annotations

import gc
import logging
import tempfile
import time
from contextlib import ExitStack
from typing import Any

from _common import (
    bench_handler,
    bench_logger,
    case_parser,
    emit_result,
    folder_usage,
    handler_stats,
    latency_summary,
    paced,
    timed_calls,
)

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
        stats = handler_stats(self.handler)
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


def paced_calls(
    logger: logging.Logger, events: int, rate: float, chunk: int, watch: SpilledOverTime
) -> tuple[list[int], float]:
    """Make ``events`` timed calls, ``rate`` per second (0: no pause); return them and the start.

    ``stats()`` is sampled after each chunk (see :func:`_common.paced`).
    """
    samples: list[int] = []

    def step(start: int, count: int) -> None:
        samples.extend(timed_calls(logger, start, count)[0])
        watch.poll()

    return samples, paced(events, rate, chunk, step)


def main() -> None:
    """Run the case and print its result."""
    parser = case_parser(__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=0.0, help="events/s; 0: a tight loop")
    # 500: the first call after a pause (cold caches) is 0.2% of calls, so it
    # shows in p99.9 but not in p99, for the NullHandler and the ShipHandler alike.
    parser.add_argument("--chunk", type=int, default=500, help="calls between pauses")
    parser.add_argument("--warmup", type=int, default=10_000, help="calls left out of latency")
    parser.add_argument("--quiet", type=float, default=0.5, help="seconds without growth")
    parser.add_argument("--spill-dir", help="spill here and keep it (default: a temporary one)")
    args = parser.parse_args()
    if not 0 <= args.warmup < args.events:
        parser.error("--warmup must leave some of --events to time")
    with ExitStack() as stack:
        folder = args.spill_dir or stack.enter_context(
            tempfile.TemporaryDirectory(prefix="logship-bench-")
        )
        with bench_handler(args, spill_dir=folder) as handler:
            logger = bench_logger(handler)
            watch = SpilledOverTime(handler)
            gc.collect()
            cpu0 = time.process_time()
            samples, t0 = paced_calls(logger, args.events, args.rate, args.chunk, watch)
            loop_s = time.perf_counter() - t0
            watch.settle(args.quiet, time.perf_counter() + _SETTLE_DEADLINE)
            cpu = time.process_time() - cpu0
            running = handler_stats(handler)
        stats = handler_stats(handler)  # after close(), which spilled what memory held
        disk = folder_usage(folder)
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
        "all": latency_summary(samples[args.warmup :]),
        "stats_running": running,
        "stats": stats,
    }
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
    emit_result(result)


if __name__ == "__main__":
    main()
