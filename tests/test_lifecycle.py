"""Process life at the edges a new user meets first: a handler replaced by ``dictConfig``
while its first batch is on its way, exit with the endpoint refusing connections, and a
short run that replays part of an earlier backlog. Real subprocesses, a real collector."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import Counter

import pytest

import logship

from conftest import check_identity, require_within
from faultserver import FaultServer, delayed
from procs import Proc, child_env

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lifecycle_scripts")


def script(name: str, *args: object) -> list[str]:
    return [sys.executable, os.path.join(SCRIPTS, name), *map(str, args)]


@pytest.mark.parametrize("delay", [0.0, 0.1, 0.25, 0.5])
def test_a_handler_replaced_by_dictconfig_delivers_its_first_event_once(server, tmp_path, delay):
    """The first handler's event arrives once and is counted as shipped, not dropped or spilled."""
    with Proc(script("reconfigure.py", server.url(), tmp_path, delay), env=child_env()) as p:
        assert p.wait(30) == 0, p.describe()
        stats = json.loads(p.stdout.strip().splitlines()[-1])
    arrived = [e for e in server.events() if e.get("message") == "first"]
    assert len(arrived) == 1, arrived
    assert stats["emitted"] == 1 and stats["shipped"] == 1, stats
    assert stats["dropped"] == 0 and stats["pending"] == 0, stats
    check_identity(stats)


def replay_all(url: str, folder: str, server: FaultServer, expected: int) -> None:
    """A handler on ``folder`` replays what it holds to ``url`` until ``expected`` arrived."""
    h = logship.ShipHandler(url=url, spill_dir=folder, retry_max_backoff=0.2, flush_interval=0.05)
    try:
        require_within(
            lambda: len(server.uuids()) >= expected, 20, f"{expected} events to be replayed"
        )
        require_within(lambda: h.stats()["pending"] == 0, 10, "the replay to be acknowledged")
    finally:
        h.close()


def test_exit_with_the_endpoint_refusing_spills_at_once(server, refused_url, tmp_path):
    folder = str(tmp_path / "spill")
    with Proc(script("log_and_exit.py", refused_url, folder, 100), env=child_env()) as p:
        p.wait_for("LOGGED")
        logged = time.monotonic()
        assert p.wait(30) == 0, p.describe()
        took = time.monotonic() - logged
    # Not shutdown_timeout (5 s): nothing could have been delivered.
    assert took < 1.5, f"exit took {took:.2f} s"
    replay_all(server.url(), folder, server, 100)
    assert len(server.uuids()) == 100 and len(server.events()) == 100


def test_a_replayed_batch_is_never_sent_again(server, refused_url, tmp_path):
    folder = str(tmp_path / "spill")
    # An earlier run: the endpoint was down, 200 events (10 batches) spilled.
    with Proc(script("log_and_exit.py", refused_url, folder, 200), env=child_env()) as p:
        assert p.wait(30) == 0, p.describe()
    # A short run: the endpoint is up but slow; the handler closes while a
    # replayed batch is in flight, after another was delivered.
    server.default = delayed(0.3)
    with Proc(script("replay_then_close.py", server.url(), folder), env=child_env()) as p:
        assert p.wait(30) == 0, p.describe()
    short_run = len(server.events())
    assert 0 < short_run < 200, "the short run should have delivered part of the backlog"
    server.default = delayed(0.0)
    replay_all(server.url(), folder, server, 200)
    counts = Counter(e["uuid"] for e in server.events())
    again = {uuid: n for uuid, n in counts.items() if n > 1}
    assert not again, f"{len(again)} events sent twice"
    assert len(counts) == 200


def test_the_logger_caches_are_warm_for_the_worker_when_dictconfig_waits(server, tmp_path):
    """What the reconfiguration test relies on, checked directly: after flush() from a
    thread holding logging's lock, the worker's library loggers answer from their cache."""
    h = logship.ShipHandler(url=server.url(), spill=False)
    try:
        logging.getLogger("app").addHandler(h)
        logging.getLogger("app").warning("starts the worker")
        assert h.flush(5)
        logging.getLogger("urllib3.connectionpool").setLevel(logging.WARNING)  # clears caches
        with logging._lock:  # as dictConfig holds it  # type: ignore[attr-defined]
            h.flush(1)
        cache = logging.getLogger("urllib3.connectionpool")._cache  # type: ignore[attr-defined]
        assert logging.DEBUG in cache
    finally:
        logging.getLogger("app").removeHandler(h)
        h.close()
