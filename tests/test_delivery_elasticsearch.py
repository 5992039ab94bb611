"""``protocol="elasticsearch"`` against a small ``_bulk`` endpoint (tests/fakebulk.py).

The answers a healthy Elasticsearch gives only under load or bad data are
scripted here, item by item, as the bulk API's documentation describes
them: a 429 for some items of a batch, a 409 for an ``_id`` already indexed,
a 400 ``mapper_parsing_exception``, a mix of them in one HTTP 200 with
``"errors": true``, and a 413 for a body too large.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest

from conftest import attach, check_identity, wait_until
from fakebulk import REJECTED_EXECUTION, FakeBulk, mapper_parsing
from faultserver import status
from procs import dead_letters

TOKEN = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="


@pytest.fixture
def warnings() -> list[str]:
    """The warnings logship says on its own logger during the test."""
    said: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                said.append(record.getMessage())

    logging.getLogger("logship").addHandler(Keep())  # conftest takes it off again
    return said


@pytest.fixture
def bulk():
    """A ``_bulk`` endpoint whose items' fates each test sets (``bulk.fate``)."""
    with FakeBulk() as fake:
        yield fake


def es_handler(make_handler, fake: FakeBulk, **options: Any):
    return make_handler(fake.url(), protocol="elasticsearch", **options)


def fates(**rules: Any):
    """A fate from the documents' ``fate`` field: ``rules[fate](doc, attempt)``."""

    def fate(doc: dict[str, Any], attempt: int) -> tuple[int, dict[str, Any]] | None:
        rule = rules.get(doc.get("fate", ""))
        return rule(doc, attempt) if rule else None

    return fate


def busy_once(doc: dict[str, Any], attempt: int) -> tuple[int, dict[str, Any]] | None:
    return (429, REJECTED_EXECUTION) if attempt == 1 else None


def unparsable(doc: dict[str, Any], attempt: int) -> tuple[int, dict[str, Any]]:
    return 400, mapper_parsing(doc, "n")


def already_indexed(doc: dict[str, Any], attempt: int) -> tuple[int, dict[str, Any]]:
    error = {"type": "version_conflict_engine_exception", "reason": "document already exists"}
    return 409, error


def log_fated(log: logging.Logger, fates_in_order: list[str]) -> None:
    for i, fate in enumerate(fates_in_order):
        extra: dict[str, Any] = {"i": i, "fate": fate}
        if fate == "bad":
            extra["n"] = "not a number"
        log.info("event %d (%s)", i, fate, extra=extra)


def indexed_is(bulk: FakeBulk) -> list[int]:
    return sorted(doc["i"] for doc in bulk.indexed.values())


def test_a_bulk_request_is_what_the_bulk_api_asks_for(bulk, make_handler):
    h = es_handler(make_handler, bulk, token=TOKEN, index="logs-app-test")
    log = attach(h)
    log.info("hello %s", "bulk", extra={"n": 1})
    assert h.flush(5), h.stats()
    (req,) = bulk.snapshot()
    assert req.path == "/_bulk" and req.status == 200
    assert req.headers["Authorization"] == f"ApiKey {TOKEN}"
    assert req.headers["Content-Type"] == "application/x-ndjson"
    assert req.headers["Content-Encoding"] == "gzip"
    (doc,) = bulk.indexed.values()
    assert req.ids == [doc["uuid"]]
    assert req.items[0]["create"]["_index"] == "logs-app-test"
    assert doc["message"] == "hello bulk" and doc["n"] == 1
    assert doc["@timestamp"].endswith("Z") and "timestamp" not in doc
    check_identity(h.stats())


def test_items_refused_with_429_are_resent_alone_then_delivered(bulk, make_handler):
    bulk.fate = fates(busy=busy_once)
    h = es_handler(make_handler, bulk)
    log = attach(h)
    order = ["ok", "busy", "ok", "ok", "busy", "ok"]
    log_fated(log, order)
    assert h.flush(10), h.stats()
    first, again = bulk.snapshot()
    assert len(first.ids) == 6 and first.status == 200
    assert [item["create"]["status"] for item in first.items] == [201, 429, 201, 201, 429, 201]
    assert again.ids == [first.ids[1], first.ids[4]]  # alone: only the refused ones
    assert indexed_is(bulk) == list(range(6))
    assert max(bulk.attempts.values()) == 2
    stats = h.stats()
    assert stats["shipped"] == 6 and stats["retries"] == 1 and stats["rejected"] == 0
    check_identity(stats)


def test_a_409_counts_as_delivered_and_is_not_resent(bulk, make_handler):
    bulk.fate = fates(dup=already_indexed)
    h = es_handler(make_handler, bulk)
    log = attach(h)
    log_fated(log, ["ok", "dup", "dup", "ok"])
    assert h.flush(10), h.stats()
    (req,) = bulk.snapshot()
    assert [item["create"]["status"] for item in req.items] == [201, 409, 409, 201]
    stats = h.stats()
    assert stats["shipped"] == 4 and stats["retries"] == 0 and stats["rejected"] == 0
    check_identity(stats)


def test_an_answer_lost_after_indexing_resends_the_batch_and_indexes_nothing_twice(
    bulk, make_handler
):
    """The _id is the event's uuid: the resent creates come back as 409s, delivered."""
    bulk.lose_answers = 1
    h = es_handler(make_handler, bulk)
    log = attach(h)
    log_fated(log, ["ok"] * 20)
    assert h.flush(10), h.stats()
    lost, again = bulk.snapshot()
    assert lost.status is None and again.ids == lost.ids
    assert again.headers["Idempotency-Key"] == lost.headers["Idempotency-Key"]
    assert {item["create"]["status"] for item in again.items} == {409}
    assert indexed_is(bulk) == list(range(20))
    stats = h.stats()
    assert stats["shipped"] == 20 and stats["retries"] == 1
    check_identity(stats)


def test_a_mapper_parsing_exception_is_rejected_and_dead_lettered(bulk, make_handler, tmp_path):
    bulk.fate = fates(bad=unparsable)
    folder = str(tmp_path / "spill")
    h = es_handler(make_handler, bulk, spill_dir=folder)
    log = attach(h)
    log_fated(log, ["ok", "bad", "ok", "bad", "ok"])
    assert h.flush(10), h.stats()
    (req,) = bulk.snapshot()  # never resent
    assert indexed_is(bulk) == [0, 2, 4]
    stats = h.stats()
    assert stats["shipped"] == 3 and stats["rejected"] == 2 and stats["retries"] == 0
    check_identity(stats)
    letters = dead_letters(folder)
    assert sorted(line["event"]["i"] for line in letters) == [1, 3]
    for line in letters:
        assert line["status"] == 400
        assert line["reason"].startswith(
            "400 mapper_parsing_exception: failed to parse field [n] of type [long]"
        )
        assert "For input string" in line["reason"]
        event = line["event"]  # the event as logged, its time under its own name again
        assert event["timestamp"].endswith("Z") and event["n"] == "not a number"
        assert event["uuid"] in req.ids


def test_a_mix_in_one_http_200_is_settled_item_by_item(bulk, make_handler, tmp_path):
    bulk.fate = fates(busy=busy_once, dup=already_indexed, bad=unparsable)
    folder = str(tmp_path / "spill")
    h = es_handler(make_handler, bulk, spill_dir=folder)
    log = attach(h)
    order = ["ok", "dup", "busy", "bad", "ok", "busy", "bad", "dup"]
    log_fated(log, order)
    assert h.flush(10), h.stats()
    first, again = bulk.snapshot()
    assert first.status == 200
    answer_items = [item["create"] for item in first.items]
    assert [item["status"] for item in answer_items] == [201, 409, 429, 400, 201, 429, 400, 409]
    assert again.ids == [first.ids[2], first.ids[5]]
    assert indexed_is(bulk) == [0, 2, 4, 5]
    # The two refusals name their own documents; one dead letter holds both.
    assert sorted(line["event"]["i"] for line in dead_letters(folder)) == [3, 6]
    stats = h.stats()
    assert (stats["shipped"], stats["rejected"], stats["retries"]) == (6, 2, 1)
    check_identity(stats)


def test_items_refused_with_403_are_held_not_dead_lettered(bulk, make_handler, tmp_path, warnings):
    forbidden = {
        "type": "security_exception",
        "reason": "action [indices:data/write/bulk[s]] is unauthorized for API key id [k1]",
    }
    bulk.fate = lambda doc, attempt: (403, forbidden) if attempt <= 2 else None
    h = es_handler(make_handler, bulk, spill_dir=str(tmp_path / "spill"))
    log = attach(h)
    log_fated(log, ["ok"] * 3)
    assert h.flush(10), h.stats()
    assert len(bulk.snapshot()) == 3 and indexed_is(bulk) == [0, 1, 2]
    stats = h.stats()
    assert stats["rejected"] == 0 and stats["shipped"] == 3
    assert stats["last_error_kind"] == "http-403"
    check_identity(stats)
    assert any("answered 403; access is forbidden: check the token" in w for w in warnings)


def test_a_413_splits_the_batch_until_it_fits(bulk, make_handler):
    bulk.max_body = 8000  # bytes on the wire: a few dozen events
    h = es_handler(make_handler, bulk, compress=False, batch_max_records=200, flush_interval=0.5)
    log = attach(h)
    log_fated(log, ["ok"] * 200)
    assert h.flush(15), h.stats()
    assert bulk.requests[0].answered == 413  # the whole batch, refused by size
    assert all(r.answered == 413 for r in bulk.requests)
    assert all(r.status == 200 for r in bulk.snapshot())
    assert indexed_is(bulk) == list(range(200))
    assert max(bulk.attempts.values()) == 1  # nothing sent twice once it fitted
    stats = h.stats()
    assert stats["shipped"] == 200 and stats["rejected"] == 0
    check_identity(stats)


def test_a_2xx_that_is_not_a_bulk_answer_is_sent_again(bulk, make_handler, warnings):
    bulk.then(status(200, b"OK"))
    h = es_handler(make_handler, bulk)
    log = attach(h)
    log_fated(log, ["ok"] * 5)
    assert h.flush(10), h.stats()
    assert indexed_is(bulk) == list(range(5))
    stats = h.stats()
    assert stats["retries"] == 1 and stats["shipped"] == 5
    check_identity(stats)
    (said,) = warnings
    assert "answered 200: the answer 'OK' is not a bulk answer for 5 events" in said


#: A 200 whose body nests deeper than the JSON parser follows (RecursionError).
TOO_DEEP = b"[" * 200_000


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (status(200, TOO_DEEP), "answered 200: the answer '[[[["),
        # A date past every year datetime holds: reading it raises OverflowError.
        (status(503, Retry_After="Mon, 1 Jan 99999999999999999999 00:00:00 GMT"), "answered 503"),
    ],
    ids=["2xx-too-deep", "absurd-retry-after"],
)
def test_an_answer_that_cannot_be_read_is_sent_again_not_dropped(
    bulk, make_handler, warnings, answer, said
):
    bulk.then(answer)
    h = es_handler(make_handler, bulk)  # back-off ceiling 0.2 s
    log_fated(attach(h), ["ok"] * 5)
    assert h.flush(5), h.stats()
    assert indexed_is(bulk) == list(range(5))
    stats = h.stats()
    assert stats["shipped"] == 5 and stats["dropped"] == 0 and stats["retries"] == 1
    check_identity(stats)
    assert [w for w in warnings if said in w], warnings


def test_a_half_whose_answer_cannot_be_read_is_sent_again(bulk, make_handler):
    """After a split, an answer no reader can read costs neither half, nor leaves it pending."""
    bulk.then(status(413, b"too large"), status(200, TOO_DEEP))
    h = es_handler(make_handler, bulk, batch_max_records=100, flush_interval=2.0)
    log_fated(attach(h), ["ok"] * 100)  # one batch: full at 100
    assert h.flush(10), h.stats()
    assert [r.answered for r in bulk.requests][:2] == [413, 200]
    assert indexed_is(bulk) == list(range(100))
    stats = h.stats()
    assert stats["shipped"] == 100 and stats["dropped"] == 0 and stats["pending"] == 0
    assert stats["retries"] == 1
    check_identity(stats)


def test_an_error_for_the_whole_request_keeps_its_reason(bulk, make_handler, tmp_path):
    error = {"type": "illegal_argument_exception", "reason": "no write index is defined"}
    bulk.then(status(400, json.dumps({"error": error, "status": 400}).encode()))
    folder = str(tmp_path / "spill")
    h = es_handler(make_handler, bulk, spill_dir=folder)
    log = attach(h)
    log_fated(log, ["ok"] * 2)
    assert wait_until(lambda: h.stats()["rejected"] == 2)
    letters = dead_letters(folder)
    assert {line["reason"] for line in letters} == {
        "illegal_argument_exception: no write index is defined"
    }
    assert [line["status"] for line in letters] == [400, 400]
    check_identity(h.stats())


def test_without_a_token_the_urls_user_and_password_go_as_basic_auth(bulk, make_handler):
    """OpenSearch's security plugin has no API keys: its users log in with a password."""
    url = bulk.url().replace("http://", "http://logship:s3cret-pw@")
    h = make_handler(url, protocol="elasticsearch")
    attach(h).info("to opensearch")
    assert h.flush(5), h.stats()
    (req,) = bulk.snapshot()
    assert (
        req.headers["Authorization"] == "Basic " + base64.b64encode(b"logship:s3cret-pw").decode()
    )
    assert "s3cret-pw" not in repr(h) and "s3cret-pw" not in str(h.stats())
    check_identity(h.stats())
