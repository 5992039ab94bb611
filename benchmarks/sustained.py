"""Comparison (e): a sustained load of 2,000 events/s for 30 s; the CPU logging costs.

Logs ``--rate`` events per second (chunks of ``--chunk`` calls, each started
when due) for ``--warmup`` seconds, then for ``--seconds`` more while
measuring the process's CPU time (every thread: the calls, the handler's
workers, the pacing loop). Reports it as a share of one core over that
window, the floor's share included: with ``--handler null`` the loop and its
pauses alone. Then reads how many events the receiver had counted, and
abandons a peer (whatever it still holds is not waited for).

    python benchmarks/sustained.py --handler null|ship|PEER [--url URL] [--rate 2000 --seconds 30]
"""

from __future__ import annotations

import gc
import time
from typing import Any

from _common import (
    LIVE_KINDS,
    PEER_KINDS,
    bench_handler,
    bench_logger,
    case_parser,
    emit_result,
    handler_stats,
    log_events,
    paced,
    receiver_stats,
)


def main() -> None:
    """Run the case and print its result."""
    parser = case_parser(__doc__)
    parser.add_argument("--rate", type=float, default=2_000.0, help="events/s")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--chunk", type=int, default=20, help="calls between pauses")
    args = parser.parse_args()
    warmup, events = int(args.warmup * args.rate), int(args.seconds * args.rate)
    with bench_handler(args) as handler:
        logger = bench_logger(handler)

        def step(start: int, count: int) -> None:
            log_events(logger, start, start + count)

        paced(warmup, args.rate, args.chunk, step)
        gc.collect()
        cpu0 = time.process_time()
        t0 = paced(events, args.rate, args.chunk, lambda s, n: step(warmup + s, n))
        # The last chunk was due 1/rate x chunk before the window's end: wait for it.
        time.sleep(max(0.0, t0 + args.seconds - time.perf_counter()))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        live = args.handler in LIVE_KINDS
        result: dict[str, Any] = {
            "case": "sustained",
            "handler": args.handler,
            "rate": args.rate,
            "events": events,
            "window_s": wall,
            "cpu_s": cpu,
            "cpu_share": cpu / wall,
            "cpu_us_per_event": cpu / events * 1e6,
            "received_unique": receiver_stats(args.url)["unique"] if live else None,
            "logged": warmup + events,
            "stats": handler_stats(handler),
        }
        emit_result(result, abandon=args.handler in PEER_KINDS)


if __name__ == "__main__":
    main()
