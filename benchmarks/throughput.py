"""End to end: from the first log call to the last event counted by the receiver (table 2).

Logs ``--events`` events as fast as the loop goes, then polls the receiver
until every event the handler did not drop was counted (or ``--deadline``);
a peer, which has no ``stats()``, is done once nothing has arrived for the
longest it holds an event plus 2 s. The polling's own CPU is left out. What
is measured and why: ``docs/performance.md``.

    python benchmarks/throughput.py --handler null|ship|PEER [--url URL] [--overflow block]
"""

from __future__ import annotations

import gc
import time

import _common as c
from _harness import receiver_stats


def main() -> None:
    """Run the case and print its result."""
    parser = c.case_parser(__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds to wait for delivery")
    args = parser.parse_args()
    live, n = args.handler in c.LIVE_KINDS, args.events
    with c.bench_handler(args) as handler:
        logger = c.bench_logger(handler)
        base = receiver_stats(args.url)["unique"] if live else 0
        gc.collect()
        peak_before = c.peak_rss_bytes()
        cpu0, main0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
        c.log_events(logger, 0, n)
        t_loop, main_cpu = time.perf_counter(), time.thread_time() - main0
        waited = {"done_at": t_loop, "unique": n, "poll_cpu_s": 0.0}
        if live:
            quiet = c.settle_quiet(args.handler)
            deadline = t_loop + args.deadline
            waited = c.wait_for_receiver(handler, args.url, base, n, deadline, quiet=quiet)
        cpu = time.process_time() - cpu0 - waited["poll_cpu_s"]
        elapsed = waited["done_at"] - t0
        result = {
            "case": "throughput",
            "handler": args.handler,
            "overflow": args.overflow or ("default" if live else None),
            "events": n,
            "elapsed_s": elapsed,
            # Delivered events only: an event the handler dropped does not count.
            "events_per_s": waited["unique"] / elapsed,
            "loop_s": t_loop - t0,
            "loop_events_per_s": n / (t_loop - t0),
            "cpu_us_per_event": cpu / n * 1e6,
            "main_thread_cpu_us_per_event": main_cpu / n * 1e6,
            "received_unique": waited["unique"],
            "lost": n - waited["unique"],
            "timed_out": waited.get("timed_out", False),
            "settled": waited.get("settled", False),
            "peak_rss_mib": c.peak_rss_bytes() / c.MiB,
            "peak_rss_growth_mib": (c.peak_rss_bytes() - peak_before) / c.MiB,
            "stats": c.handler_stats(handler),
            "receiver": receiver_stats(args.url) if live else None,
        }
        c.emit_result(result, abandon=args.handler in c.PEER_KINDS)


if __name__ == "__main__":
    main()
