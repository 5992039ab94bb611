"""``protocol="http"`` into a real Fluent Bit's ``http`` input: every event arrives, once."""

from __future__ import annotations

from conftest import attach, check_identity


def test_every_event_reaches_fluent_bits_http_input(fluent_bit, make_handler):
    fb = fluent_bit([{"name": "http", "listen": "127.0.0.1", "port": "{port}"}])
    h = make_handler(f"http://127.0.0.1:{fb.port}/app", fields={"service": "billing"})
    log = attach(h)
    for i in range(500):
        log.info("event %d", i, extra={"i": i})
    assert h.flush(10), h.stats()
    records = fb.wait_for(500)
    assert sorted(r["i"] for r in records) == list(range(500))
    assert {r["service"] for r in records} == {"billing"}
    check_identity(h.stats())
