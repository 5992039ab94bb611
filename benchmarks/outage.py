"""Outage: the receiver answers 503 for 5 s while 20,000 events are logged (table 4).

After ``--warmup`` events, asks ``peer_receivers.py`` for an outage and logs
``--events`` events paced over it, each call timed and RSS read after every
chunk, then goes on for ``--after`` seconds (fluent-logger resends only with
a later call). Waits for the receiver to count everything, closes the
handler (which delivers what it holds) and counts again. What is measured
and why: ``docs/performance.md``.
"""

from __future__ import annotations

import functools
import gc
import logging
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import _common as c
from peer_receivers import OUTAGE_PATH


def start_outage(url: str, seconds: float) -> None:
    """Make the ``peer_receivers.py`` serving ``url`` answer 503 for ``seconds``."""
    parts = urllib.parse.urlsplit(url)
    target = f"{parts.scheme}://{parts.netloc}{OUTAGE_PATH}?seconds={seconds}"
    with urllib.request.urlopen(urllib.request.Request(target, b"", method="POST"), timeout=5):
        pass


def measure(args: Any, handler: logging.Handler, logger: logging.Logger) -> Iterator[c.Result]:
    rate, first = args.events / args.outage, args.warmup
    c.log_events(logger, 0, first)
    time.sleep(0.5)  # let the warm-up go out before the outage
    gc.collect()
    samples: list[int] = []
    rss = [(0, c.rss_bytes())]

    def step(start: int, stop: int) -> None:
        samples.extend(c.timed_calls(logger, start, stop - start)[0])
        rss.append((stop - first, c.rss_bytes()))

    if args.url:
        start_outage(args.url, args.outage)
    cpu0 = time.process_time()
    t0 = c.paced(first, first + args.events, rate, args.chunk, step)
    recovered, total = t0 + args.outage, first + args.events + int(args.after * rate)
    c.paced(first + args.events, total, rate, args.chunk, functools.partial(c.log_events, logger))
    start, end = rss[0][1] / c.MiB, rss[-1][1] / c.MiB
    mid = min(rss, key=lambda p: abs(p[0] - args.events / 2))[1] / c.MiB
    result: c.Result = {
        "all": c.latency_summary(samples),
        "rss_growth_first_half_mib": mid - start,
        "rss_growth_second_half_mib": end - mid,
    }
    if args.url:
        deadline = recovered + args.deadline
        waited = c.wait_for_receiver(
            handler, args, total, (cpu0, t0), deadline, extra_quiet=args.retrying
        )
        result |= {
            "recovered_after_s": waited["done_at"] - recovered,
            "timed_out": waited["timed_out"],
            "settled": waited["settled"],
        }
    yield result  # the handler is closed here
    if args.url:
        counts = c.receiver_stats(args.url)
        result |= {
            "lost": total - counts["unique"],
            "at_close": counts["unique"] - waited["received_unique"],
            "duplicates": counts["duplicates"],
        }


if __name__ == "__main__":
    c.case(
        measure,
        __doc__,
        events=20_000,
        outage=(5.0, "seconds of 503"),
        chunk=(100, "calls between pauses"),
        warmup=1_000,
        after=(1.0, "seconds of logging after it"),
        deadline=(30.0, "seconds after the recovery"),
        retrying=(3.0, "a peer: seconds more to wait for a resend"),
    )
