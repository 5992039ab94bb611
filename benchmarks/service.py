"""A service: threads serving requests at a fixed offered rate, each logging (tables 3 and 6).

Requests due on a fixed schedule, timed from when each was due, and the
process's CPU over the timed window; then, with ``--probe S``, S seconds
more with a thread that keeps every gap in which it could not run. What is
measured and why: ``docs/performance.md``.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from typing import Any

import _common as c


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


def measure(args: Any, _handler: logging.Handler, logger: logging.Logger) -> c.Result:
    first = round(args.warmup * args.rate)  # the first request timed
    stop = first + round(args.seconds * args.rate)  # the first one not timed
    total = stop + round(args.probe * args.rate)
    piece, (msg, arg) = steps_for(args.work) // (args.logs + 1), c.MESSAGE
    samples: list[int] = []  # list.append is atomic: every thread adds to it
    gaps: list[int] = []
    ran: list[int] = []  # how long the probe ran
    probing = threading.Event()
    start_ns = time.perf_counter_ns()

    def serve(k: int) -> None:
        """Serve requests k, k + threads, ..., each when it is due."""
        perf, info = time.perf_counter_ns, logger.info
        for n in range(k, total, args.threads):
            due = start_ns + round(n * 1e9 / args.rate)
            pause = due - perf()
            if pause > 0:
                time.sleep(pause / 1e9)
            for i in range(n * args.logs, (n + 1) * args.logs):  # each call its own request_id
                spin(piece)
                info(msg, i, arg, extra={"request_id": i})
            spin(piece)
            if first <= n < stop:
                samples.append(perf() - due)

    def probe() -> None:
        """Spin reading the clock; keep every gap longer than ``--gap`` µs."""
        perf, gap = time.perf_counter_ns, round(args.gap * 1_000)
        last = start = perf()
        while probing.is_set():
            now = perf()
            if now - last > gap:
                gaps.append(now - last)
            last = now
        ran.append(last - start)

    def sleep_until(n: int) -> None:
        """Sleep until request ``n`` is due."""
        time.sleep(max(0.0, start_ns / 1e9 + n / args.rate - time.perf_counter()))

    gc.collect()
    servers = [threading.Thread(target=serve, args=(k,)) for k in range(args.threads)]
    for t in servers:
        t.start()
    sleep_until(first)
    cpu0, t0 = time.process_time(), time.perf_counter()
    sleep_until(stop)
    cpu, window = time.process_time() - cpu0, time.perf_counter() - t0
    summary = None
    if args.probe:
        probing.set()
        prober = threading.Thread(target=probe, name="gil-probe", daemon=True)
        prober.start()
        sleep_until(total)
        probing.clear()
        prober.join()
        summary = {**c.latency_summary(gaps), "held_share": sum(gaps) / max(ran[0], 1)}
    for t in servers:
        t.join()
    events = (stop - first) * args.logs
    return {
        "request": c.latency_summary(samples) if samples else None,
        "window_s": window,
        "cpu_share": cpu / window if events else None,
        "cpu_us_per_event": cpu / events * 1e6 if events else None,
        "probe": summary,
        "logged": total * args.logs,
        "received_unique": c.receiver_stats(args.url)["unique"] if args.url else None,
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
