"""The shortest path: events logged reach a collector, once each."""

from __future__ import annotations

from conftest import attach, check_identity


def test_events_arrive_once_each(server, make_handler):
    h = make_handler(server.url())
    log = attach(h)
    for i in range(2500):
        log.info("event %d", i, extra={"i": i})
    assert h.flush(10)
    assert len(server.uuids()) == 2500
    assert len(server.events()) == 2500
    stats = h.stats()
    assert stats["shipped"] == 2500 and stats["pending"] == 0 and stats["queued"] == 0
    check_identity(stats)
