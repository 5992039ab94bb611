"""Outage: the receiver answers 503 for 5 s while 20,000 events are logged (table 4).

After ``--warmup`` events, asks ``peer_receivers.py`` for an outage and logs
``--events`` events paced over it, each call timed and RSS read after every
chunk, then goes on for ``--after`` seconds (fluent-logger resends only with
a later call). Waits for the receiver to count everything, closes the
handler (which delivers what it holds) and counts again. With ``--handler
null``: the same paced calls without a receiver, the floor. What is measured
and why: ``docs/performance.md``.

    python benchmarks/outage.py --handler null|ship|PEER [--url URL]
"""

from __future__ import annotations

import gc
import time
import urllib.parse
import urllib.request
from typing import Any

import _common as c
from _harness import receiver_stats
from peer_receivers import OUTAGE_PATH


def start_outage(url: str, seconds: float) -> None:
    """Make the ``peer_receivers.py`` serving ``url`` answer 503 for ``seconds``."""
    parts = urllib.parse.urlsplit(url)
    target = f"{parts.scheme}://{parts.netloc}{OUTAGE_PATH}?seconds={seconds}"
    with urllib.request.urlopen(urllib.request.Request(target, b"", method="POST"), timeout=5):
        pass


def main() -> None:
    """Run the case and print its result."""
    parser = c.case_parser(__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--outage", type=float, default=5.0, help="seconds of 503")
    parser.add_argument("--rate", type=float, default=0.0, help="events/s (default: over --outage)")
    parser.add_argument("--chunk", type=int, default=100, help="calls between pauses")
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--after", type=float, default=1.0, help="seconds of logging after it")
    parser.add_argument("--deadline", type=float, default=30.0, help="seconds after the recovery")
    parser.add_argument("--retrying", type=float, default=3.0, help="a peer: see above")
    args = parser.parse_args()
    live = args.handler in c.LIVE_KINDS
    rate = args.rate or args.events / args.outage
    with c.bench_handler(args) as handler:
        logger = c.bench_logger(handler)
        c.log_events(logger, 0, args.warmup)
        time.sleep(0.5)  # let the warm-up go out before the outage
        gc.collect()
        samples: list[int] = []
        rss = [(0, c.rss_bytes())]

        def step(start: int, count: int) -> None:
            samples.extend(c.timed_calls(logger, args.warmup + start, count)[0])
            rss.append((start + count, c.rss_bytes()))

        if live:
            start_outage(args.url, args.outage)
        t0 = c.paced(args.events, rate, args.chunk, step)
        loop_s = time.perf_counter() - t0
        recovered = t0 + args.outage
        after, first = int(args.after * rate), args.warmup + args.events

        def more(start: int, count: int) -> None:
            c.log_events(logger, first + start, first + start + count)

        c.paced(after, rate, args.chunk, more)
        total = first + after
        result: dict[str, Any] = {
            "case": "outage",
            "handler": args.handler,
            "events": args.events,
            "warmup": args.warmup,
            "after": after,
            "rate": rate,
            "outage_s": args.outage,
            "loop_s": loop_s,
            "all": c.latency_summary(samples),
            "rss_start_mib": rss[0][1] / c.MiB,
            "rss_mid_mib": min(rss, key=lambda p: abs(p[0] - args.events / 2))[1] / c.MiB,
            "rss_end_mib": rss[-1][1] / c.MiB,
            "rss_peak_mib": max(r for _n, r in rss) / c.MiB,
        }
        result["rss_growth_mib"] = result["rss_end_mib"] - result["rss_start_mib"]
        result["rss_growth_first_half_mib"] = result["rss_mid_mib"] - result["rss_start_mib"]
        result["rss_growth_second_half_mib"] = result["rss_end_mib"] - result["rss_mid_mib"]
        if live:
            quiet = c.settle_quiet(args.handler)
            if quiet is not None:
                quiet += args.retrying
            waited = c.wait_for_receiver(
                handler, args.url, 0, total, recovered + args.deadline, quiet=quiet
            )
            result |= {
                "received_unique": waited["unique"],
                "recovered_after_s": waited["done_at"] - recovered,
                "timed_out": waited["timed_out"],
                "settled": waited["settled"],
            }
        result["stats"] = c.handler_stats(handler)
        t_close = time.perf_counter()
    result["close_s"] = time.perf_counter() - t_close
    if live:
        counts = receiver_stats(args.url)
        result |= {
            "lost": total - counts["unique"],
            "at_close": counts["unique"] - result["received_unique"],
            "duplicates": counts["duplicates"],
            "refused": counts["outage_refused"],
        }
    c.emit_result(result)


if __name__ == "__main__":
    main()
