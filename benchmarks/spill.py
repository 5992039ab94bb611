"""The endpoint is down: spilling to disk, memory, and the call's latency meanwhile (7, 8, 10).

Logs ``--events`` timed calls to a port where nothing listens, at the
defaults (``overflow="spill"``): in a tight loop, or paced at ``--rate``
events/s. ``stats()`` is read between chunks, then until ``spilled`` stops
growing. With ``--checkpoints N,N`` the calls are not timed (the samples
would take memory of their own) and RSS is read at those counts instead.
With ``--spill-dir`` the folder is kept for ``replay.py``. What is measured:
``docs/performance.md``.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import _common as c

# How often stats() is read: often enough to date the end of spilling to a
# few ms, rarely enough to cost the logging loop nothing measurable.
_SAMPLE_EVERY = 0.01
# How long to wait for spilling to stop after the last call, at most.
_SETTLE_DEADLINE = 20.0


def measure(args: Any, handler: logging.Handler, logger: logging.Logger) -> Iterator[c.Result]:
    checkpoints = {int(n) for n in args.checkpoints.split(",") if n}
    if any(n % args.chunk for n in checkpoints) or not 0 <= args.warmup < args.events:
        raise SystemExit("--checkpoints must be multiples of --chunk; --warmup below --events")
    spilled: list[tuple[float, int]] = []  # (when, stats()["spilled"]), a sample per _SAMPLE_EVERY
    samples: list[int] = []
    points: list[dict[str, float]] = []
    gc.collect()
    base, base_peak, last = c.rss_bytes(), c.peak_rss_bytes(), (0, time.perf_counter())

    def poll() -> None:
        now = time.perf_counter()
        if args.handler != "null" and (not spilled or now >= spilled[-1][0] + _SAMPLE_EVERY):
            spilled.append((now, c.handler_stats(handler)["spilled"]))  # type: ignore[index]

    def since() -> float:
        """When the last count sampled was first seen."""
        return next(t for t, v in spilled if v == spilled[-1][1])

    def step(start: int, stop: int) -> None:
        nonlocal last
        if not checkpoints:
            samples.extend(c.timed_calls(logger, start, stop - start)[0])
        else:
            c.log_events(logger, start, stop)
            if stop in checkpoints:
                now, (before, at) = time.perf_counter(), last
                growth, last = (c.rss_bytes() - base) / c.MiB, (stop, now)
                rate = (stop - before) / (now - at)
                points.append({"events": stop, "growth_mib": growth, "events_per_s": rate})
        poll()

    cpu0 = time.process_time()
    t0 = c.paced(0, args.events, args.rate, args.chunk, step)
    loop_s = time.perf_counter() - t0
    result: c.Result = {"stats_loop_end": c.handler_stats(handler)}
    deadline = time.perf_counter() + _SETTLE_DEADLINE
    while spilled and time.perf_counter() < deadline and spilled[-1][0] - since() < args.quiet:
        time.sleep(_SAMPLE_EVERY)
        poll()
    cpu = time.process_time() - cpu0
    result |= {
        "events": args.events,
        "loop_events_per_s": args.events / loop_s,
        # Until spilling stopped: the pump's work included, the pauses not.
        "cpu_us_per_event": cpu / args.events * 1e6,
        "all": None if checkpoints else c.latency_summary(samples[args.warmup :]),
    }
    if checkpoints:
        peak = c.peak_rss_bytes()
        result |= {
            "base_rss_mib": base / c.MiB,
            "peak_rss_growth_mib": (peak - base_peak) / c.MiB,
            "points": points,
        }
    yield result  # the handler is closed here, spilling what memory held
    stats = result["stats"] = c.handler_stats(handler)
    if stats is not None and spilled:
        running, disk = spilled[-1][1], 0
        for entry in os.scandir(args.spill_dir):
            disk += entry.stat().st_size if entry.is_file() else 0
        result |= {
            "spilled_running": running,
            "spilled_per_s": running / (since() - t0),
            "spilled_at_close": stats["spilled"] - running,
            "bytes_per_event": disk / stats["spilled"] if stats["spilled"] else None,
        }


if __name__ == "__main__":
    c.case(
        measure,
        __doc__,
        events=100_000,
        rate=(0.0, "events/s; 0: a tight loop"),
        # 500: the first call after a pause (cold caches) is 0.2% of calls, so it
        # shows in p99.9 but not in p99, for the NullHandler and the ShipHandler alike.
        chunk=(500, "calls between pauses"),
        warmup=(10_000, "calls left out of latency"),
        quiet=(0.5, "seconds without growth"),
        checkpoints=("", "event counts to read RSS at"),
    )
