"""Case 3: memory stays bounded while the endpoint is down.

Logs ``--events`` events (to a port where nothing listens, with
``--handler down``) and reads the process's RSS after each checkpoint
(50k, 100k and 200k events by default). With the default capacity (10,000
events) RSS must plateau: what the ring holds is bounded, whatever the
number of events logged.

    python benchmarks/memory.py --handler null|down [--events 200000]
"""

from __future__ import annotations

import gc
import time

from _common import (
    bench_handler,
    bench_logger,
    case_parser,
    emit_result,
    handler_stats,
    log_events,
    peak_rss_bytes,
    rss_bytes,
)

MiB = 2**20


def main() -> None:
    """Run the case and print its result."""
    parser = case_parser(__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--checkpoints", default="50000,100000,200000")
    args = parser.parse_args()
    checkpoints = sorted({int(c) for c in args.checkpoints.split(",")} | {args.events})
    with bench_handler(args) as handler:
        logger = bench_logger(handler)
        gc.collect()
        base, base_peak = rss_bytes(), peak_rss_bytes()
        points = []
        done = 0
        for stop in checkpoints:
            t0 = time.perf_counter()
            log_events(logger, done, stop)
            seconds = time.perf_counter() - t0
            points.append(
                {
                    "events": stop,
                    "rss_mib": rss_bytes() / MiB,
                    "growth_mib": (rss_bytes() - base) / MiB,
                    "events_per_s": (stop - done) / seconds,
                }
            )
            done = stop
        result = {
            "case": "memory",
            "handler": args.handler,
            "events": args.events,
            "base_rss_mib": base / MiB,
            "peak_rss_mib": peak_rss_bytes() / MiB,
            "peak_rss_growth_mib": (peak_rss_bytes() - base_peak) / MiB,
            "points": points,
            "stats": handler_stats(handler),
        }
    emit_result(result)


if __name__ == "__main__":
    main()
