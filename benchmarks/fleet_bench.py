"""A fleet: three Fluent Bit nodes, through HAProxy or named to the handler; a node killed (12).

The fleet of ``tests/fleet.py`` (one definition for the tests and this case;
Fluent Bit from ``FLUENT_BIT``) and a ShipHandler at its defaults to HAProxy,
to the nodes' URLs (``failover``, ``round_robin``) or to one node alone
(``single``). A machine without Fluent Bit, or HAProxy for its route, reports
the case as skipped. What is measured: ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _common as c

sys.path.append(os.path.join(c.ROOT, "tests"))  # after this folder: its modules come first

from fleet import Fleet
from fluentbit import Missing

ROUTES = ("haproxy", "failover", "round_robin", "single")
_POLL = 0.05


class Tally:
    """How many times each request id was written, over every node, read as they write."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.counts: Counter[int] = Counter()
        self._seen = [0] * len(fleet.nodes)  # records of each node counted so far

    def update(self) -> None:
        for n, node in enumerate(self.fleet.nodes):
            records = node.records()
            ids = (r.get("request_id") for r in records[self._seen[n] :])
            self.counts.update(i for i in ids if isinstance(i, int))
            self._seen[n] = len(records)

    def wait(self, first: int, stop: int, deadline: float) -> tuple[Counter[int], float]:
        """Wait until every id in ``range(first, stop)`` was written, or ``deadline``; their
        counts, and when they were read."""
        while True:
            self.update()
            now = time.perf_counter()
            counts = Counter({i: self.counts[i] for i in range(first, stop) if i in self.counts})
            if len(counts) == stop - first or now >= deadline:
                return counts, now
            time.sleep(_POLL)


def before(args: argparse.Namespace) -> None:
    """Start the fleet (stopped, and its folder removed, as the process ends) and point the
    handler at it; a fleet that cannot start for want of Fluent Bit or HAProxy: skipped."""
    if args.handler != "ship" or args.route not in ROUTES:
        raise SystemExit("the fleet case ships to its own fleet: --handler ship --route ROUTE")
    folder = Path(tempfile.mkdtemp(prefix="logship-bench-fleet-"))
    c.AT_EXIT.append(lambda: shutil.rmtree(folder, ignore_errors=True))
    try:
        size = 1 if args.route == "single" else 3
        args.fleet = Fleet(folder, size, proxy=args.route == "haproxy").start()
    except Missing as e:  # no Fluent Bit, or no HAProxy for this route
        c.emit_result({"skipped": str(e)}, abandon=True)
    c.AT_EXIT.append(args.fleet.stop)
    if args.route == "haproxy":
        args.url = args.fleet.url("/bench")
    else:
        urls = args.fleet.urls("/bench")
        args.url, args.balance = (urls[0], None) if args.route == "single" else (urls, args.route)


def measure(args: Any, _handler: logging.Handler, logger: logging.Logger) -> c.Result:
    """Both phases: delivery, then node 0 killed a third of the way through a paced stream
    and started again two thirds in."""
    fleet, tally = args.fleet, Tally(args.fleet)
    kill, end = 1_000 + args.events, 1_000 + args.events + args.kill_events
    third = args.kill_events // 3
    held: set[str] = set()
    restarted = 0.0

    def step(start: int, stop: int) -> None:
        nonlocal restarted
        if start <= kill + third < stop:
            held.update(fleet.kill(0))
        elif start <= kill + 2 * third < stop:
            fleet.start_node(0)
            restarted = time.perf_counter()
        c.log_events(logger, start, stop)

    c.log_events(logger, 0, 1_000)  # warm-up: connections made, nodes written to once
    tally.wait(0, 1_000, time.perf_counter() + args.deadline)
    t0 = time.perf_counter()
    c.log_events(logger, 1_000, kill)
    counts, done = tally.wait(1_000, kill, time.perf_counter() + args.deadline)
    c.paced(kill, end, args.rate, 100, step)
    after, recovered = tally.wait(kill, end, time.perf_counter() + args.deadline)
    return {
        "elapsed_s": done - t0,
        "events_per_s": len(counts) / (done - t0),
        "timed_out": len(counts) < args.events,
        "lost": args.kill_events - len(after),
        "duplicates": sum(after.values()) - len(after),
        "held_at_kill": len(held),
        "recovered_after_s": recovered - restarted,
    }


if __name__ == "__main__":
    c.case(
        measure,
        __doc__,
        before=before,
        route=(ROUTES[0], "|".join(ROUTES)),
        events=(50_000, "the throughput phase"),
        kill_events=(20_000, "the kill phase"),
        rate=(5_000.0, "events/s in the kill phase"),
        deadline=(60.0, "seconds per phase to wait"),
    )
