"""A service: threads serving requests at a fixed offered rate, each logging (tables 3 and 6).

``--threads`` threads serve ``--rate`` requests/s in all on a fixed schedule,
each request ``--work`` µs of pure-Python work with ``--logs`` calls spread
through it. A request's time runs from when it was due, so a request queued
behind a held-up thread counts as late as it was. After ``--warmup`` s, the
requests of the next ``--seconds`` are timed and the process's CPU read;
then, with ``--probe S``, S seconds more with a thread that keeps every gap
over ``--gap`` µs in which it could not run. The probe has a phase of its own
because it changes what it measures (a thread that never waits makes the
others wait for a forced switch). ``docs/performance.md`` says more.

    python benchmarks/service.py --handler null|ship|PEER [--url URL] [--seconds 10] [--probe 5]
    python benchmarks/service.py --handler ship --threads 1 --rate 100 --logs 20 --work 0
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from typing import Any

import _common as c
from _harness import receiver_stats


def spin(steps: int) -> int:
    """Pure-Python work: ``steps`` rounds of integer arithmetic."""
    x = 0
    for i in range(steps):
        x = (x * 31 + i) % 1_000_003
    return x


def steps_for(us: float) -> int:
    """How many steps of :func:`spin` take ``us`` µs here (from the fastest of 30 tries)."""
    fastest = float("inf")
    for _ in range(30):
        t0 = time.perf_counter_ns()
        spin(1_000)
        fastest = min(fastest, time.perf_counter_ns() - t0)
    return round(us * 1_000 * 1_000 / fastest)


class Probe:
    """A thread that spins reading the clock and keeps every gap longer than ``gap_ns``."""

    def __init__(self, gap_ns: int) -> None:
        self.gap_ns, self.spun_ns = gap_ns, 0
        self.gaps: list[int] = []
        self.running = True
        self.thread = threading.Thread(target=self._spin, name="gil-probe", daemon=True)

    def _spin(self) -> None:
        perf, gaps, gap = time.perf_counter_ns, self.gaps, self.gap_ns
        last = start = perf()
        while self.running:
            now = perf()
            if now - last > gap:
                gaps.append(now - last)
            last = now
        self.spun_ns = last - start

    def summary(self) -> dict[str, float]:
        """The gaps' percentiles (µs), how many, and the share of the time they add up to."""
        return {
            **c.latency_summary(self.gaps),
            "held_share": sum(self.gaps) / max(self.spun_ns, 1),
            "seconds": self.spun_ns / 1e9,
        }


class Schedule:
    """The requests: when each is due, which are timed, and each one's work."""

    def __init__(self, args: Any, logger: logging.Logger) -> None:
        self.rate, self.threads, self.logs = args.rate, args.threads, args.logs
        self.first = round(args.warmup * args.rate)  # the first request timed
        self.stop = self.first + round(args.seconds * args.rate)  # the first one not timed
        self.total = self.stop + round(args.probe * args.rate)
        self.piece = steps_for(args.work) // (args.logs + 1)
        self.info = logger.info
        self.start_ns = time.perf_counter_ns()
        self.samples: list[int] = []  # list.append is atomic: every thread adds to it

    def due(self, n: int) -> float:
        """When request ``n`` is due (``time.perf_counter()``)."""
        return self.start_ns / 1e9 + n / self.rate

    def serve(self, k: int) -> None:
        """Thread ``k``: serve requests k, k + threads, ..., each when it is due."""
        perf, piece, info, (msg, arg) = time.perf_counter_ns, self.piece, self.info, c.MESSAGE
        for n in range(k, self.total, self.threads):
            due = self.start_ns + round(n * 1e9 / self.rate)
            pause = due - perf()
            if pause > 0:
                time.sleep(pause / 1e9)
            for i in range(n * self.logs, (n + 1) * self.logs):  # each call its own request_id
                spin(piece)
                info(msg, i, arg, extra={"request_id": i})
            spin(piece)
            if self.first <= n < self.stop:
                self.samples.append(perf() - due)


def sleep_until(t: float) -> None:
    """Sleep until ``time.perf_counter()`` reads ``t``."""
    time.sleep(max(0.0, t - time.perf_counter()))


def measure(args: Any, handler: logging.Handler, logger: logging.Logger) -> c.Result:
    plan = Schedule(args, logger)
    gc.collect()
    servers = [threading.Thread(target=plan.serve, args=(k,)) for k in range(args.threads)]
    for t in servers:
        t.start()
    sleep_until(plan.due(plan.first))
    cpu0, t0 = time.process_time(), time.perf_counter()
    sleep_until(plan.due(plan.stop))
    cpu, window = time.process_time() - cpu0, time.perf_counter() - t0
    probe = Probe(round(args.gap * 1_000)) if args.probe else None
    if probe:
        probe.thread.start()
        sleep_until(plan.due(plan.total))
        probe.running = False
        probe.thread.join()
    for t in servers:
        t.join()
    events = (plan.stop - plan.first) * args.logs
    return {
        "request": c.latency_summary(plan.samples) if plan.samples else None,
        "window_s": window,
        "cpu_share": cpu / window if events else None,
        "cpu_us_per_event": cpu / events * 1e6 if events else None,
        "probe": probe.summary() if probe else None,
        "logged": plan.total * args.logs,
        "received_unique": receiver_stats(args.url)["unique"] if args.url else None,
        "stats": c.handler_stats(handler),
    }


if __name__ == "__main__":
    c.case(
        measure,
        __doc__,
        abandon=True,
        threads=4,
        rate=(1_500.0, "requests/s, in all"),
        work=(150.0, "µs of work per request"),
        logs=(5, "log calls per request"),
        warmup=(1.0, "seconds before the timing"),
        seconds=(10.0, "seconds timed"),
        probe=(0.0, "seconds of the probe after"),
        gap=(50.0, "µs: a longer gap is kept"),
    )
