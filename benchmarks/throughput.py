"""End to end: from the first log call to the last event counted by the receiver (table 2).

``--events`` calls as fast as the loop goes, then until the receiver counted
every event the handler kept (or ``--deadline`` s). What is measured and
why: ``docs/performance.md``.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

import _common as c


def measure(args: Any, handler: logging.Handler, logger: logging.Logger) -> c.Result:
    n = args.events
    base = c.receiver_stats(args.url)["unique"] if args.url else 0
    gc.collect()
    peak_before = c.peak_rss_bytes()
    cpu0, main0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
    c.log_events(logger, 0, n)
    t_loop, main_cpu = time.perf_counter(), time.thread_time() - main0
    waited = c.wait_for_receiver(handler, args, n, (cpu0, t0), t_loop + args.deadline, base)
    return {
        **waited,
        "loop_events_per_s": n / (t_loop - t0),
        "main_thread_cpu_us_per_event": main_cpu / n * 1e6,
        "lost": n - waited["received_unique"],
        "peak_rss_mib": c.peak_rss_bytes() / c.MiB,
        "peak_rss_growth_mib": (c.peak_rss_bytes() - peak_before) / c.MiB,
    }


if __name__ == "__main__":
    c.case(
        measure, __doc__, abandon=True, events=50_000, deadline=(60.0, "seconds to wait for it all")
    )
