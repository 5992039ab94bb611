"""``protocol="elasticsearch"`` into a real Fluent Bit's ``elasticsearch`` input.

Fluent Bit answers ``_bulk`` as Elasticsearch does when all is well
(``{"errors":false,"items":[{"create":{"status":201,…}}]}``), ``GET /`` with
a version document, and a body over its ``buffer_max_size`` with 413. Each
record it writes keeps the bulk action under ``@meta``, so the tests see the
index and ``_id`` every event was sent with.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

import logship

from conftest import FAST, attach, check_identity

ES_INPUT = {"name": "elasticsearch", "listen": "127.0.0.1", "port": "{port}"}


def es_url(fb: Any) -> str:
    return f"http://127.0.0.1:{fb.port}"


def test_every_event_reaches_fluent_bits_elasticsearch_input(fluent_bit, make_handler):
    fb = fluent_bit([ES_INPUT])
    h = make_handler(
        es_url(fb), protocol="elasticsearch", index="logs-billing-prod", fields={"service": "b"}
    )
    log = attach(h)
    for i in range(500):
        log.info("event %d", i, extra={"i": i})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("with a traceback")
    assert h.flush(10), h.stats()
    records = fb.wait_for(501)
    assert len(records) == 501  # each once
    assert sorted(r["i"] for r in records if "i" in r) == list(range(500))
    for r in records:
        assert r["@meta"] == {"create": {"_index": "logs-billing-prod", "_id": r["uuid"]}}
        assert r["@timestamp"].endswith("Z") and "timestamp" not in r
        assert r["service"] == "b"
    (failed,) = [r for r in records if r["message"] == "with a traceback"]
    assert failed["exception"].endswith("ValueError: boom")
    stats = h.stats()
    assert stats["shipped"] == 501 and stats["retries"] == 0
    check_identity(stats)


def test_the_default_index_is_the_logs_data_stream_of_logship(fluent_bit, make_handler):
    fb = fluent_bit([ES_INPUT])
    h = make_handler(es_url(fb) + "/", protocol="elasticsearch")
    attach(h).warning("one")
    assert h.flush(10), h.stats()
    (record,) = fb.wait_for(1)
    assert record["@meta"]["create"]["_index"] == "logs-logship-default"
    check_identity(h.stats())


def test_fluent_bits_413_splits_the_batch_until_it_fits(fluent_bit, make_handler):
    fb = fluent_bit([{**ES_INPUT, "buffer_max_size": "8k"}])
    # One batch of 300 (sealed full, or by the flush): some 100 kB, refused until split.
    h = make_handler(
        es_url(fb),
        protocol="elasticsearch",
        compress=False,
        batch_max_records=300,
        flush_interval=10.0,
    )
    log = attach(h)
    for i in range(300):
        log.info("event %d %s", i, "x" * 100, extra={"i": i})
    assert h.flush(20), h.stats()
    records = fb.wait_for(300)
    assert sorted(r["i"] for r in records) == list(range(300))
    assert len(records) == 300
    stats = h.stats()
    assert stats["shipped"] == 300 and stats["rejected"] == 0
    check_identity(stats)


def spill_while_down(fb: Any, folder: str, n: int, **options: Any) -> None:
    """Log ``n`` events while Fluent Bit is stopped; close, so they are spilled to ``folder``."""
    fb.stop()
    h = logship.ShipHandler(
        url=es_url(fb), spill_dir=folder, **{**FAST, "shutdown_timeout": 0.5, **options}
    )
    log = attach(h, "spilled", logging.INFO)
    for i in range(n):
        log.info("spilled %d", i, extra={"i": i})
    h.close()
    stats = h.stats()
    assert stats["spilled"] == n and stats["shipped"] == 0, stats
    check_identity(stats)


@pytest.mark.parametrize("spilled_as", ["elasticsearch", "http"])
def test_events_spilled_while_fluent_bit_was_down_are_replayed_once(
    fluent_bit, tmp_path, spilled_as
):
    """Spilled as _bulk bodies, they are sent as they are; spilled as JSON (another
    encoder), they are read back into events and encoded again."""
    fb = fluent_bit([ES_INPUT])
    folder = str(tmp_path / "spill")
    spill_while_down(fb, folder, 50, protocol=spilled_as)
    fb.start()
    h = logship.ShipHandler(url=es_url(fb), protocol="elasticsearch", spill_dir=folder, **FAST)
    try:
        records = fb.wait_for(50)
        assert sorted(r["i"] for r in records) == list(range(50))
        assert all(r["@meta"]["create"]["_id"] == r["uuid"] for r in records)
        assert h.flush(10)
        stats = h.stats()
        assert stats["adopted"] == 50 and stats["replayed"] == 50
        check_identity(stats)
    finally:
        h.close()
