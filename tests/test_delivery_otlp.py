"""``protocol="otlp"`` against a small OTLP/HTTP fake on loopback (tests/faultserver.py).

What a healthy Fluent Bit never answers is scripted here from the OTLP
specification: ``partialSuccess`` in a 200, 429 and 503 with ``Retry-After``,
502 and 504 retried, 400 (with a ``google.rpc.Status``), 408 and 500 not
retried, 413. The body's shape is checked against the OTLP JSON rules.
Every test checks ``emitted + adopted == shipped + dropped + rejected + pending``.
"""

from __future__ import annotations

import gzip
import itertools
import json
import logging
import os
import re
from typing import Any

import pytest

from logship.cli import spillinspect as si
from logship.worker.spill import deadletters as dl
from logship.worker.spill import folder as sf

from conftest import attach, check_identity, require_within, wait_until
from faultserver import FaultServer, Request, status
from procs import dead_letters

HEX32 = re.compile(r"[0-9a-f]{32}")
HEX16 = re.compile(r"[0-9a-f]{16}")
DECIMAL = re.compile(r"-?[0-9]+")
#: The fields of an OTLP ``AnyValue`` in its JSON encoding (at most one is set).
ANY_VALUE_KEYS = {
    "stringValue",
    "boolValue",
    "intValue",
    "doubleValue",
    "arrayValue",
    "kvlistValue",
}


def header(request: Request, name: str) -> str | None:
    return next((v for k, v in request.headers.items() if k.lower() == name.lower()), None)


def document(request: Request) -> dict[str, Any]:
    """The request's ``ExportLogsServiceRequest``, as JSON."""
    raw = request.wire
    if header(request, "Content-Encoding") == "gzip":
        raw = gzip.decompress(raw)
    doc: dict[str, Any] = json.loads(raw)
    return doc


def plain(value: dict[str, Any]) -> Any:
    """An ``AnyValue`` as the Python value it stands for (from the JSON mapping's rules)."""
    (kind,) = value.keys() or ["none"]
    if kind == "intValue":
        return int(value[kind])
    if kind == "arrayValue":
        return [plain(v) for v in value[kind].get("values", [])]
    if kind == "kvlistValue":
        return {p["key"]: plain(p["value"]) for p in value[kind].get("values", [])}
    return value.get(kind)


def records(request: Request) -> list[dict[str, Any]]:
    """Each log record of a request, with its scope, resource and attributes made plain."""
    out = []
    for rl in document(request)["resourceLogs"]:
        resource = {a["key"]: plain(a["value"]) for a in rl["resource"]["attributes"]}
        for sl in rl["scopeLogs"]:
            for r in sl["logRecords"]:
                attrs = {a["key"]: plain(a["value"]) for a in r.get("attributes", [])}
                out.append(
                    {**r, "scope": sl["scope"]["name"], "resource": resource, "attrs": attrs}
                )
    return out


def delivered(server: FaultServer) -> list[dict[str, Any]]:
    """The records of every request answered 2xx."""
    with server.cond:
        taken = [r for r in server.requests if r.answered and 200 <= r.answered < 300]
    return [rec for r in taken for rec in records(r)]


def uids(request_or_records: Any) -> set[str]:
    recs = (
        records(request_or_records)
        if isinstance(request_or_records, Request)
        else request_or_records
    )
    return {r["attrs"]["log.record.uid"] for r in recs}


def snapshot(server: FaultServer) -> list[Request]:
    with server.cond:
        return list(server.requests)


def otlp(make_handler: Any, server: FaultServer, **options: Any) -> Any:
    """A ``protocol="otlp"`` handler to ``server``, its URL without a path."""
    return make_handler(server.url(""), protocol="otlp", **options)


def emit(log: logging.Logger, n: int, text: str = "event") -> None:
    for i in range(n):
        log.info("%s %d", text, i, extra={"i": i})


def check_any_value(value: dict[str, Any]) -> None:
    """An ``AnyValue`` follows the JSON encoding: one typed field, 64-bit integers as strings."""
    assert set(value) <= ANY_VALUE_KEYS and len(value) <= 1, value
    if "intValue" in value:
        assert isinstance(value["intValue"], str) and DECIMAL.fullmatch(value["intValue"])
    if "doubleValue" in value:
        assert isinstance(value["doubleValue"], float)
    if "boolValue" in value:
        assert isinstance(value["boolValue"], bool)
    if "stringValue" in value:
        assert isinstance(value["stringValue"], str)
    for inner in value.get("arrayValue", {}).get("values", []):
        check_any_value(inner)
    for pair in value.get("kvlistValue", {}).get("values", []):
        assert set(pair) == {"key", "value"}
        check_any_value(pair["value"])


# -- the request -----------------------------------------------------------------------------


def test_the_request_follows_the_otlp_json_rules(server, make_handler):
    h = otlp(make_handler, server, token="s3cret", fields={"service": "billing", "env": "prod"})
    log = attach(h, "app")
    attach(h, "app.db")
    log.warning("plain %s", "text", extra={"n": 2**40, "f": 0.5, "ok": True, "tags": ["a", 1]})
    logging.getLogger("app.db").info(
        "query", extra={"row": {"id": 7, "none": None}, "trace_id": "ab" * 16, "span_id": "cd" * 8}
    )
    try:
        raise ValueError("bad value")
    except ValueError:
        log.exception("failed")
    assert h.flush(10), h.stats()
    (request,) = snapshot(server)
    assert request.path == "/v1/logs"  # the standard path, for a URL without one
    assert header(request, "Content-Type") == "application/json"
    assert header(request, "Content-Encoding") == "gzip"
    assert header(request, "Authorization") == "Bearer s3cret"
    assert header(request, "Idempotency-Key")

    doc = document(request)
    assert list(doc) == ["resourceLogs"] and len(doc["resourceLogs"]) == 1
    (rl,) = doc["resourceLogs"]
    resource = {a["key"]: plain(a["value"]) for a in rl["resource"]["attributes"]}
    assert resource["service.name"] == "billing"
    assert {"host.name", "os.type", "os.version"} <= set(resource)
    assert [sl["scope"] for sl in rl["scopeLogs"]] == [{"name": "app"}, {"name": "app.db"}]
    recs = records(request)
    assert len(recs) == 3
    for r in recs:
        assert DECIMAL.fullmatch(r["timeUnixNano"]) and DECIMAL.fullmatch(r["observedTimeUnixNano"])
        assert int(r["observedTimeUnixNano"]) >= int(r["timeUnixNano"])
        assert isinstance(r["severityNumber"], int) and isinstance(r["severityText"], str)
        for a in r["attributes"]:
            check_any_value(a["value"])
        check_any_value(r["body"])
        assert r["attrs"]["env"] == "prod" and "service" not in r["attrs"]
    warn, query, failed = recs[0], recs[2], recs[1]
    assert (warn["severityNumber"], warn["severityText"], warn["body"]) == (
        13,
        "WARN",
        {"stringValue": "plain text"},
    )
    assert warn["attrs"]["n"] == 2**40 and warn["attrs"]["tags"] == ["a", 1]
    assert warn["attrs"]["f"] == 0.5 and warn["attrs"]["ok"] is True
    assert warn["attrs"]["code.function.name"].endswith(
        ".test_the_request_follows_the_otlp_json_rules"
    )
    assert HEX32.fullmatch(query["traceId"]) and HEX16.fullmatch(query["spanId"])
    assert "trace_id" not in query["attrs"] and query["attrs"]["row"] == {"id": 7, "none": None}
    assert (failed["severityNumber"], failed["attrs"]["exception.type"]) == (17, "ValueError")
    assert failed["attrs"]["exception.message"] == "bad value"
    assert failed["attrs"]["exception.stacktrace"].startswith("Traceback (most recent call last):")
    assert len(uids(request)) == 3
    check_identity(h.stats())


def test_without_compress_the_body_is_plain_json(server, make_handler):
    h = otlp(make_handler, server, compress=False)
    emit(attach(h), 3)
    assert h.flush(10)
    (request,) = snapshot(server)
    assert header(request, "Content-Encoding") is None
    assert len(uids(request)) == 3
    check_identity(h.stats())


def test_a_url_with_a_path_is_used_as_given(server, make_handler):
    h = make_handler(server.url("/otlp/v1/logs"), protocol="otlp")
    emit(attach(h), 1)
    assert h.flush(10)
    assert [r.path for r in snapshot(server)] == ["/otlp/v1/logs"]


# -- partialSuccess --------------------------------------------------------------------------


def partial(rejected: Any, message: str = "") -> Any:
    body = {"partialSuccess": {"rejectedLogRecords": rejected, "errorMessage": message}}
    return status(200, json.dumps(body).encode(), Content_Type="application/json")


def test_a_partial_success_counts_the_rejected_and_dead_letters_the_batch(
    server, make_handler, tmp_path, caplog
):
    server.then(partial("2", "2 log records were older than the retention"))
    h = otlp(make_handler, server, spill_dir=str(tmp_path), batch_max_records=5, flush_interval=2.0)
    log = attach(h)
    with caplog.at_level(logging.WARNING, "logship"):
        emit(log, 5, "first")  # one batch, full at 5
        require_within(lambda: h.stats()["rejected"] == 2, what="the partial success")
        emit(log, 5, "second")
        assert h.flush(10)
    reqs = snapshot(server)
    assert [r.answered for r in reqs] == [200, 201]  # never resent
    stats = h.stats()
    assert stats["shipped"] == 8 and stats["rejected"] == 2 and stats["retries"] == 0
    assert stats["pending"] == 0 and stats["dropped"] == 0
    check_identity(stats)
    # The whole batch is in the dead letter (which 2 the server does not say), with the count.
    (letter,) = si.read_dead_letters(str(tmp_path)).batches
    assert {e["uuid"] for e in letter.events} == uids(reqs[0])
    assert letter.status == 200
    assert letter.reason == (
        "partialSuccess: 2 of 5 log records rejected: 2 log records were older than the retention"
    )
    said = [r.getMessage() for r in caplog.records if r.name == "logship"]
    assert any("rejected 2 events of a batch of 5" in m and "older than" in m for m in said), said


def test_a_partial_success_rejecting_every_record_rejects_the_batch(server, make_handler, tmp_path):
    server.then(partial(5, "schema mismatch"))
    h = otlp(make_handler, server, spill_dir=str(tmp_path), batch_max_records=5, flush_interval=2.0)
    emit(attach(h), 5)
    require_within(lambda: h.stats()["rejected"] == 5, what="the rejection")
    stats = h.stats()
    assert stats["shipped"] == 0 and stats["pending"] == 0
    check_identity(stats)
    (letter,) = si.read_dead_letters(str(tmp_path)).batches
    assert len(letter.events) == 5 and "schema mismatch" in letter.reason


def test_a_partial_success_that_only_warns_is_delivered(server, make_handler, tmp_path):
    server.then(partial("0", "attribute values were truncated"))
    h = otlp(make_handler, server, spill_dir=str(tmp_path))
    emit(attach(h), 5)
    assert h.flush(10)
    stats = h.stats()
    assert stats["shipped"] == 5 and stats["rejected"] == 0
    check_identity(stats)
    assert not si.read_dead_letters(str(tmp_path)).batches


@pytest.mark.parametrize(
    "body",
    [
        b'{"partialSuccess":{"rejectedLogRecords":1e999}}',  # int() of it: OverflowError
        b'{"partialSuccess":{"rejectedLogRecords":Infinity}}',
        b"[" * 200_000,  # too deep to parse: RecursionError
    ],
)
def test_a_2xx_whose_partial_success_cannot_be_read_is_delivered(
    server, make_handler, tmp_path, body
):
    """The 2xx says the collector accepted the request; an unreadable count rejects nothing."""
    server.then(status(200, body, Content_Type="application/json"))
    h = otlp(make_handler, server, spill_dir=str(tmp_path), batch_max_records=5, flush_interval=2.0)
    emit(attach(h), 5)  # one batch: full at 5
    assert h.flush(10), h.stats()
    assert [r.answered for r in snapshot(server)] == [200]  # never resent
    stats = h.stats()
    assert stats["shipped"] == 5 and stats["rejected"] == 0 and stats["dropped"] == 0
    check_identity(stats)
    assert not si.read_dead_letters(str(tmp_path)).batches


def test_a_replayed_batch_partly_rejected_counts_only_the_rest_as_replayed(
    server, make_handler, tmp_path
):
    folder = str(tmp_path)
    server.default = status(503)
    h1 = otlp(make_handler, server, spill=True, spill_dir=folder, shutdown_timeout=0.5)
    emit(attach(h1), 4)
    assert server.wait_for_requests(1)
    h1.close()
    assert h1.stats()["spilled"] == 4
    server.default = status(201)
    server.then(partial("1", "one too old"))
    h2 = otlp(make_handler, server, spill=True, spill_dir=folder)
    require_within(lambda: h2.stats()["pending"] == 0 and not sf.has_spilled(folder))
    stats = h2.stats()
    assert stats["adopted"] == 4 and stats["replayed"] == 3
    assert stats["shipped"] == 3 and stats["rejected"] == 1
    check_identity(stats)


# -- statuses: retried only when the specification says so ---------------------------------


@pytest.mark.parametrize("code", [429, 503])
def test_throttling_is_retried_after_retry_after_with_the_same_key(server, make_handler, code):
    server.then(status(code, Retry_After="1"))
    h = otlp(make_handler, server)  # back-off ceiling 0.2 s: the wait is the server's
    emit(attach(h), 5)
    assert h.flush(10)
    first, retry = snapshot(server)
    assert (first.answered, retry.answered) == (code, 201)
    assert header(first, "Idempotency-Key") == header(retry, "Idempotency-Key")
    assert retry.arrived - first.arrived >= 0.95  # Retry-After: 1
    assert uids(first) == uids(retry) and len(uids(retry)) == 5
    stats = h.stats()
    assert stats["shipped"] == 5 and stats["retries"] == 1
    check_identity(stats)


@pytest.mark.parametrize("code", [502, 504])
def test_gateway_failures_are_retried(server, make_handler, code):
    server.then(status(code), status(code))
    h = otlp(make_handler, server)
    emit(attach(h), 3)
    assert h.flush(10)
    assert [r.answered for r in snapshot(server)] == [code, code, 201]
    assert len({header(r, "Idempotency-Key") for r in snapshot(server)}) == 1
    stats = h.stats()
    assert stats["shipped"] == 3 and stats["retries"] == 2
    check_identity(stats)


@pytest.mark.parametrize("code", [400, 408, 500])
def test_other_failures_are_rejected_dead_lettered_and_never_resent(
    server, make_handler, tmp_path, code
):
    rpc_status = {"code": 3, "message": "ResourceLogs[0]: invalid timeUnixNano", "details": []}
    server.then(status(code, json.dumps(rpc_status).encode(), Content_Type="application/json"))
    h = otlp(make_handler, server, spill_dir=str(tmp_path), batch_max_records=5, flush_interval=2.0)
    log = attach(h)
    emit(log, 5, "first")
    require_within(lambda: h.stats()["rejected"] == 5, what="the rejection")
    emit(log, 5, "second")
    assert h.flush(10)
    reqs = snapshot(server)
    assert [r.answered for r in reqs] == [code, 201]
    (letter,) = si.read_dead_letters(str(tmp_path)).batches
    assert letter.status == code and letter.reason == "ResourceLogs[0]: invalid timeUnixNano"
    assert {e["uuid"] for e in letter.events} == uids(reqs[0])
    assert sorted(e["message"] for e in letter.events) == [f"first {i}" for i in range(5)]
    stats = h.stats()
    assert stats["rejected"] == 5 and stats["shipped"] == 5 and stats["retries"] == 0
    check_identity(stats)


def test_a_configuration_error_is_held_not_rejected(server, make_handler, tmp_path):
    server.then(status(401), status(401))
    h = otlp(make_handler, server, spill_dir=str(tmp_path))
    emit(attach(h), 3)
    assert h.flush(10)
    reqs = snapshot(server)
    assert [r.answered for r in reqs] == [401, 401, 201]
    gaps = [b.arrived - a.arrived for a, b in itertools.pairwise(reqs)]
    assert min(gaps) >= 0.15, gaps  # at the back-off ceiling
    stats = h.stats()
    assert stats["shipped"] == 3 and stats["rejected"] == 0
    check_identity(stats)


def test_413_splits_until_each_part_fits(server, make_handler):
    server.max_body = 2500  # wire bytes; the events below are about 700 bytes each
    h = otlp(make_handler, server, compress=False, flush_interval=2.0)
    log = attach(h)
    for i in range(12):
        log.info("split %d %s", i, "x" * 200)
    assert h.flush(15)
    taken = [r for r in snapshot(server) if r.answered == 201]
    assert all(len(r.wire) <= 2500 for r in taken)
    got = delivered(server)
    assert sorted(int(r["body"]["stringValue"].split()[1]) for r in got) == list(range(12))
    stats = h.stats()
    assert stats["shipped"] == 12 and stats["rejected"] == 0
    check_identity(stats)


def test_batch_max_bytes_holds_for_the_uncompressed_body(server, make_handler):
    h = otlp(make_handler, server, compress=False, batch_max_bytes=4000, flush_interval=2.0)
    logs = [attach(h, f"app.l{k}") for k in range(3)]  # three scopes in a body
    for i in range(40):
        logs[i % 3].info("sized %d %s", i, "y" * (i * 7))
    assert h.flush(15)
    assert len(snapshot(server)) > 1
    assert all(len(r.wire) <= 4000 for r in snapshot(server))
    assert len(uids(delivered(server))) == 40
    check_identity(h.stats())


# -- the spill: same bytes, same key; other encoders' batches re-encoded --------------------


def spill_for(server: FaultServer, make_handler: Any, folder: str, n: int, **options: Any) -> None:
    """``n`` events spilled by a handler with ``options`` while ``server`` answers 503."""
    server.default = status(503)
    h = make_handler(server.url(""), spill=True, spill_dir=folder, shutdown_timeout=0.5, **options)
    emit(attach(h, "spilled"), n, "spilled")
    assert server.wait_for_requests(1)
    h.close()
    assert h.stats()["spilled"] == n, h.stats()
    server.default = status(201)


def test_a_spilled_batch_is_replayed_as_the_same_bytes_under_the_same_key(
    server, make_handler, tmp_path
):
    folder = str(tmp_path)
    spill_for(server, make_handler, folder, 5, protocol="otlp")
    (tried,) = {(r.wire, header(r, "Idempotency-Key")) for r in snapshot(server)}
    failed = len(snapshot(server))
    h = otlp(make_handler, server, spill=True, spill_dir=folder)
    require_within(lambda: h.stats()["pending"] == 0 and not sf.has_spilled(folder))
    (replay,) = snapshot(server)[failed:]
    assert (replay.wire, header(replay, "Idempotency-Key")) == tried
    stats = h.stats()
    assert stats["replayed"] == 5
    check_identity(stats)


def test_a_batch_spilled_as_json_is_replayed_as_otlp(server, make_handler, tmp_path):
    folder = str(tmp_path)
    spill_for(server, make_handler, folder, 4)  # protocol="http", a JSON array
    failed = len(snapshot(server))
    h = otlp(make_handler, server, spill=True, spill_dir=folder)
    require_within(lambda: h.stats()["pending"] == 0 and not sf.has_spilled(folder))
    (replay,) = snapshot(server)[failed:]
    assert header(replay, "Content-Type") == "application/json"
    got = records(replay)
    assert sorted(r["body"]["stringValue"] for r in got) == [f"spilled {i}" for i in range(4)]
    assert {r["scope"] for r in got} == {"spilled"} and all(r["attrs"]["i"] >= 0 for r in got)
    check_identity(h.stats())


def test_a_batch_spilled_as_otlp_is_replayed_as_json_by_an_http_handler(
    server, make_handler, tmp_path
):
    folder = str(tmp_path)
    spill_for(server, make_handler, folder, 4, protocol="otlp")
    failed = len(snapshot(server))
    h = make_handler(server.url("/app"), spill=True, spill_dir=folder)
    require_within(lambda: h.stats()["pending"] == 0 and not sf.has_spilled(folder))
    (replay,) = snapshot(server)[failed:]
    events = replay.events
    assert sorted(e["message"] for e in events) == [f"spilled {i}" for i in range(4)]
    for e in events:
        assert e["logger"] == "spilled" and e["level"] == "INFO" and e["uuid"]
        assert {"timestamp", "hostname", "kernel_version", "pid", "thread", "line"} <= set(e)
    check_identity(h.stats())


def test_dead_letters_print_as_events_with_spill_status(server, make_handler, tmp_path):
    folder = str(tmp_path)
    server.then(status(400, b'{"message":"bad"}'))
    h = otlp(make_handler, server, spill_dir=folder, fields={"service": "billing"})
    attach(h, "rejected").error("rejected %d", 0, extra={"order": 7})
    require_within(lambda: h.stats()["rejected"] == 1, what="the rejection")
    check_identity(h.stats())
    (line,) = dead_letters(folder)
    assert line["status"] == 400 and line["reason"] == "bad"
    event = line["event"]
    assert (event["message"], event["level"], event["logger"]) == (
        "rejected 0",
        "ERROR",
        "rejected",
    )
    assert event["service"] == "billing" and event["order"] == 7 and event["uuid"]
    assert wait_until(lambda: os.path.exists(os.path.join(folder, dl.DEAD_LETTER_NAME)))
