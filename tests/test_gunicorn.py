"""gunicorn: every worker ships, nothing deadlocks, nothing is sent twice.

See docs/frameworks/gunicorn.md.

Real gunicorn in a subprocess, serving examples/gunicorn_app with its
gunicorn.conf.py (``gunicornapp.Gunicorn``: a test config that only changes
the bind address, the worker count, ``preload_app`` and a few handler
timings). Each request logs one event with a unique id; after SIGTERM to the
master every id must have arrived exactly once, from the worker that
answered it. Eight workers through a fleet: test_fleet.py.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from logship.cli.receive import Receiver

from conftest import check_identity, wait_until
from faultserver import FaultServer
from gunicornapp import Gunicorn

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="gunicorn needs POSIX")

N = 48  # requests at least; more are sent until every worker has answered some


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def check_exactly_once(events: list[dict[str, Any]], answered: dict[str, int], master: int) -> None:
    uuids = Counter(e["uuid"] for e in events)
    assert max(uuids.values()) == 1, [u for u, n in uuids.items() if n > 1]

    handled = [e for e in events if e["logger"] == "example.gunicorn" and "request_id" in e]
    ids = Counter(e["request_id"] for e in handled)
    assert ids == Counter(answered.keys())  # each exactly once
    assert {
        e["request_id"]: e["pid"] for e in handled
    } == answered  # sent by the worker that answered
    workers = set(answered.values())
    assert len(workers) >= 2 and master not in workers

    access = [
        e for e in events if e["logger"] == "gunicorn.access" and "GET /hello " in e["message"]
    ]
    assert len(access) == len(answered)
    messages = Counter(e["message"] for e in events if e["logger"] == "gunicorn.error")
    # Each worker and the master logged on their way out, and that was shipped too.
    for pid in workers:
        assert messages[f"Worker exiting (pid: {pid})"] == 1, messages
    assert messages["Shutting down: Master"] == 1, messages


@pytest.mark.parametrize("preload", [False, True], ids=["sync", "sync-preload"])
def test_every_worker_ships_every_event_once(
    tmp_path: Path, receiver: Receiver, preload: bool
) -> None:
    g = Gunicorn(tmp_path, receiver.endpoint("/gunicorn"), workers=2, preload=preload)
    with g.proc:
        answered = g.load(N)
        assert g.get("/boom", "req-boom")[0] == 500
        g.stop()
    events = receiver.events()
    assert receiver.counts()["duplicates"] == 0
    check_exactly_once(events, answered, g.proc.pid)

    loaded = [e for e in events if e["message"] == "app loaded"]
    if preload:  # once, in the master, before the fork: the workers must not send it again
        assert [e["pid"] for e in loaded] == [g.proc.pid]
    else:  # once in each worker
        assert {e["pid"] for e in loaded} >= set(answered.values())
        assert len(loaded) == len({e["pid"] for e in loaded})

    (error,) = [e for e in events if e["message"] == "Error handling request GET /boom"]
    assert error["level"] == "ERROR"
    assert error["exception"].endswith("RuntimeError: the payment service is down")


def test_with_the_endpoint_down_the_workers_spill_to_one_folder(
    tmp_path: Path, server: FaultServer, make_handler: Any
) -> None:
    """Every process spills into the shared folder at exit; a later process delivers it all once."""
    url = server.url("/gunicorn")
    server.down()
    ship = {"shutdown_timeout": 1.0, "retry_max_backoff": 0.2, "timeout": 2.0}
    g = Gunicorn(tmp_path, url, workers=2, preload=True, **ship)
    with g.proc:
        answered = g.load(N)  # logging never makes a request wait, endpoint down or not
        g.stop()
    assert any(g.spill.glob("*.lship")), "nothing was spilled"

    server.up()
    handler = make_handler(url, spill=True, spill_dir=str(g.spill))
    done = server.wait_for(
        lambda s: (
            any(e["message"] == "Shutting down: Master" for e in s.events())
            and sum(e["logger"] == "example.gunicorn" for e in s.events()) > len(answered)
        ),
        20,
    )
    assert done, handler.stats()
    check_exactly_once(server.events(), answered, g.proc.pid)
    # The server records a request before it answers: the handler counts it a moment later.
    assert wait_until(lambda: handler.stats()["pending"] == 0, 10), handler.stats()
    stats = handler.stats()
    check_identity(stats)
    assert stats["adopted"] == stats["shipped"] == len(server.events()), stats
