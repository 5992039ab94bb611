"""Why a log call is slow: each slow call of the latency case, with its cause (not in make bench).

Makes ``--calls`` calls of the latency case through a handler shipping to a
fresh receiver, and sorts every call slower than ``--slow`` µs by what
happened during it, first match wins:

- ``gc``: a garbage collection ran on the application's thread
  (``gc.callbacks``), by generation;
- ``yield``: the call yielded the GIL to a woken worker (``Ring.put``'s
  pacing), and waited until a worker thread gave it back;
- ``after a yield``: the call right after one, on caches the worker has
  since used;
- ``wait``: the thread had the CPU for less than 60 % of the call
  (``time.thread_time``): it waited for the GIL, or the machine ran
  something else;
- ``cpu``: it had the CPU: the machine's own noise, or cold caches.

Each cause is shown as its count, with the median length of its calls in
µs. The instruments cost about 1 µs per call; read the counts and lengths,
not p50. With ``--handler null`` the same calls go to a ``NullHandler``: the
floor's noise.

    .venv/bin/python benchmarks/tools/tail.py [--handler null] [--calls 50000] [--runs 3]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import os
import statistics
import sys
import threading
import time
from typing import Any

# The benchmarks' helpers are in the folder above this one.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import (
    bench_logger,
    handler_stats,
    latency_summary,
    log_events,
    receiver,
    receiver_stats,
)
from _tool import RECEIVER, bench_handler

import logship.handler

_CAUSES = ("gc0", "gc1", "gc2", "yield", "after a yield", "wait", "cpu")


class _Probe:
    """What happened on the application's thread during the current call."""

    def __init__(self) -> None:
        self.main = threading.get_ident()
        self.generations = 0  # a bit per generation collected
        self.yielded = False

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and threading.get_ident() == self.main:
            self.generations |= 1 << info["generation"]


def _cause(wall: int, cpu: int, generations: int, yielded: bool, after_yield: bool) -> str:
    if generations:
        return f"gc{generations.bit_length() - 1}"
    if yielded:
        return "yield"
    if after_yield:
        return "after a yield"
    return "wait" if cpu < wall * 0.6 else "cpu"


def run(handler_kind: str, calls: int, slow_ns: int) -> tuple[dict[str, list[int]], list[int]]:
    """One run in this process: the slow calls' ns by cause, and every call's ns."""
    probe = _Probe()
    real_yield = logship.handler._yield_gil

    def counting_yield(seconds: float) -> None:
        probe.yielded = True
        real_yield(seconds)

    ship = handler_kind == "ship"
    with receiver(RECEIVER) if ship else contextlib.nullcontext("") as url:
        with bench_handler(handler_kind, url or None) as handler:
            logger = bench_logger(handler)
            info = logger.info
            log_events(logger, 0, 2_000)  # warm-up: connection, caches, the worker's first batch
            if ship and not handler.flush(10):
                sys.exit(f"the warm-up was not delivered: {handler_stats(handler)}")
            gc.collect()  # as latency.py does: no garbage from the warm-up in the counts
            logship.handler._yield_gil = counting_yield  # type: ignore[assignment]
            gc.callbacks.append(probe.on_gc)
            perf, cpu_ns = time.perf_counter_ns, time.thread_time_ns
            samples = [0] * calls
            causes: dict[str, list[int]] = collections.defaultdict(list)
            after_yield = False
            try:
                for i in range(calls):
                    probe.generations, probe.yielded = 0, False
                    c0 = cpu_ns()
                    t0 = perf()
                    info("user %s did %s", i, "thing", extra={"request_id": i})
                    t1 = perf()
                    c1 = cpu_ns()
                    wall = samples[i] = t1 - t0
                    if wall > slow_ns:
                        cause = _cause(wall, c1 - c0, probe.generations, probe.yielded, after_yield)
                        causes[cause].append(wall)
                    after_yield = probe.yielded
            finally:
                gc.callbacks.remove(probe.on_gc)
                logship.handler._yield_gil = real_yield
            if ship and not handler.flush(20):
                sys.exit(f"not delivered: {handler_stats(handler)}")
        if ship and receiver_stats(url)["unique"] < calls + 2_000:
            sys.exit("the receiver counted fewer events than were logged")
    return causes, samples


def _count_and_median(walls: list[int]) -> str:
    if not walls:
        return "0"
    return f"{len(walls)} ({statistics.median(walls) / 1000:,.0f})"


def main() -> None:
    """Run ``--runs`` times and print one line per run, then the causes' counts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--handler", choices=("ship", "null"), default="ship")
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--slow", type=float, default=12.0, help="µs: a call slower is counted")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.handler}: {args.calls:,} calls per run, slow > {args.slow:g} µs")
    header = "| run | slow calls | p99 µs | p99.9 µs | " + " | ".join(_CAUSES) + " |"
    print(header)
    print("|" + "---:|" * (header.count("|") - 1))
    for k in range(args.runs):
        causes, samples = run(args.handler, args.calls, int(args.slow * 1000))
        summary = latency_summary(samples)
        p99, p999 = summary["p99"], summary["p99.9"]
        slow = sum(map(len, causes.values()))
        counts = " | ".join(_count_and_median(causes.get(c, [])) for c in _CAUSES)
        print(
            f"| {k + 1} | {slow} ({slow / args.calls:.2%}) | {p99:.1f} | {p999:,.0f} | {counts} |"
        )


if __name__ == "__main__":
    main()
