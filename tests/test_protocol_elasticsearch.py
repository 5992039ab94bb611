"""``protocol="elasticsearch"`` without a network: the ``_bulk`` encoder and the answer reader.

The bodies are checked against the bulk API's rules (NDJSON, an action line
then the document, a newline after the last line); the answers below are
shaped as the bulk API's documentation shows them (``errors``, ``items``
keyed by their action, each with ``status`` and, when it failed, ``error``
with ``type`` and ``reason``), plus the shape Fluent Bit's ``elasticsearch``
input answers with.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from logship.pure.batching import make_batches
from logship.pure.event import EventBuilder
from logship.pure.frames import ENCODER_NAMES
from logship.pure.options import build_options
from logship.pure.protocols import Answer, Outcome, Verdict
from logship.pure.protocols import elasticsearch as es
from logship.pure.protocols.elasticsearch import (
    DEFAULT_INDEX,
    MAX_REJECT_GROUPS,
    BulkEncoder,
    BulkReader,
)
from logship.pure.protocols.registry import decoder_named, protocol_named

from test_eventjson import FAST_CASES, SLOW_CASES, item, record

# -- the body ---------------------------------------------------------------------------


def encoder(index: str = DEFAULT_INDEX, compress: bool = False) -> BulkEncoder:
    return BulkEncoder(index, compress, EventBuilder({}))


def pairs(unit: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    action, doc = unit.split(b"\n")
    return json.loads(action), json.loads(doc)


@pytest.mark.parametrize("case", [*FAST_CASES, *SLOW_CASES])
def test_a_ring_item_becomes_a_create_action_and_its_document(case):
    make = {**FAST_CASES, **SLOW_CASES}[case]
    enc = encoder()
    (unit,) = enc.units([make()])
    action, doc = pairs(unit)
    assert list(action) == ["create"]
    assert action["create"] == {"_index": DEFAULT_INDEX, "_id": doc["uuid"]}
    assert next(iter(doc)) == "@timestamp" and "timestamp" not in doc
    assert doc["@timestamp"].endswith("Z") and len(doc["@timestamp"]) == 27
    # The fast path and the dict path write the same bytes.
    (event,) = enc.events_of(enc.body([unit])[0])
    assert enc.unit(event) == unit


def test_a_batch_of_every_kind_of_record_keeps_its_order_and_round_trips():
    enc = encoder(compress=True)
    items = [make() for make in [*FAST_CASES.values(), *SLOW_CASES.values()]] * 2
    units = enc.units(items)
    body, raw_size = enc.body(units)
    raw = gzip.decompress(body)
    assert raw.endswith(b"\n") and raw_size == len(raw)
    assert raw_size == sum(map(len, units)) + enc.per_event_overhead * len(units)
    assert raw.count(b"\n") == 2 * len(items)
    assert enc.units_of(body) == units
    events = enc.events_of(body)
    assert [e["uuid"] for e in events] == [pairs(u)[1]["uuid"] for u in units]
    assert all(next(iter(e)) == "timestamp" and "@timestamp" not in e for e in events)


def test_the_event_dict_path_renames_the_time_and_restores_it():
    event = {"timestamp": "2026-11-24T10:00:00.123456Z", "message": "m", "uuid": "u-1", "n": 1}
    enc = encoder("logs-app-prod")
    unit = enc.unit(event)
    assert unit == (
        b'{"create":{"_index":"logs-app-prod","_id":"u-1"}}\n'
        b'{"@timestamp":"2026-11-24T10:00:00.123456Z","message":"m","uuid":"u-1","n":1}'
    )
    assert enc.events_of(enc.body([unit])[0]) == [event]


def test_an_events_own_at_timestamp_is_kept_apart_instead_of_duplicated():
    """Elasticsearch refuses a document that names a key twice."""
    enc = encoder()
    (unit,) = enc.units([item(record(**{"@timestamp": "mine"}))])
    doc_line = unit.split(b"\n")[1]
    assert doc_line.count(b'"@timestamp"') == 1
    doc = json.loads(doc_line)
    assert doc["extra_@timestamp"] == "mine" and doc["@timestamp"].endswith("Z")


def test_a_nested_at_timestamp_stays_where_it_is():
    enc = encoder()
    (unit,) = enc.units([item(record(inner={"a": 1, "@timestamp": "nested"}))])
    _action, doc = pairs(unit)
    assert doc["inner"] == {"a": 1, "@timestamp": "nested"}


def test_an_event_without_a_uuid_lets_the_server_pick_the_id():
    unit = encoder().unit({"timestamp": "2026-11-24T10:00:00.000000Z", "message": "m"})
    assert pairs(unit)[0] == {"create": {"_index": DEFAULT_INDEX}}


def test_an_index_name_is_written_as_json():
    unit = encoder("logs-café-x").unit({"uuid": "u"})
    assert unit.startswith(b'{"create":{"_index":"logs-caf\\u00e9-x","_id":"u"}}\n')


def test_headers_say_ndjson_and_gzip():
    assert encoder(compress=True).headers() == {
        "Content-Type": "application/x-ndjson",
        "Content-Encoding": "gzip",
    }
    assert encoder().headers() == {"Content-Type": "application/x-ndjson"}


def test_a_spilled_body_is_read_back_by_the_decoder_of_its_name():
    enc = encoder(compress=True)
    body, _raw = enc.body(enc.units([item(record()), item(record(n=2))]))
    assert "elasticsearch" in ENCODER_NAMES
    assert decoder_named("elasticsearch", True).events_of(body) == enc.events_of(body)


def test_batches_are_cut_at_max_bytes():
    enc = encoder()
    items = [item(record("x" * (i % 70), ())) for i in range(200)]
    units = enc.units(items)
    batches = make_batches(units, enc, 3000)
    assert sum(b.count for b in batches) == 200 and len(batches) > 1
    for b in batches:
        assert b.raw_size == len(b.body) and (b.raw_size <= 3000 or b.count == 1)
    assert [u for b in batches for u in enc.units_of(b.body)] == units


def test_the_protocol_speaks_bulk_with_an_api_key():
    es = protocol_named("elasticsearch")
    assert (es.default_path, es.auth, es.transport) == ("/_bulk", "ApiKey", "http")


# -- the answer -------------------------------------------------------------------------

D, S, R, H, X = Verdict.DELIVERED, Verdict.SPLIT, Verdict.RETRY, Verdict.HOLD, Verdict.REJECT


def created(i: int = 0) -> dict[str, Any]:
    return {
        "create": {
            "_index": ".ds-logs-logship-default-2026.11.24-000001",
            "_id": f"id-{i}",
            "_version": 1,
            "result": "created",
            "_shards": {"total": 2, "successful": 1, "failed": 0},
            "_seq_no": i,
            "_primary_term": 1,
            "status": 201,
        }
    }


def failed(status: int, kind: str, reason: str, i: int = 0, **more: Any) -> dict[str, Any]:
    error = {"type": kind, "reason": reason.replace("{id}", f"id-{i}"), **more}
    return {
        "create": {
            "_index": "logs-logship-default",
            "_id": f"id-{i}",
            "status": status,
            "error": error,
        }
    }


def conflict(i: int = 0) -> dict[str, Any]:
    return failed(
        409,
        "version_conflict_engine_exception",
        "[{id}]: version conflict, document already exists (current version [1])",
        i,
    )


def busy(i: int = 0) -> dict[str, Any]:
    return failed(
        429,
        "es_rejected_execution_exception",
        "rejected execution of coordinating operation [shard_detail=[logs][0]]",
        i,
    )


def unparsable(i: int = 0, value: str = "abc") -> dict[str, Any]:
    return failed(
        400,
        "mapper_parsing_exception",
        f"failed to parse field [n] of type [long] in document with id '{{id}}'. "
        f"Preview of field's value: '{value}'",
        i,
        caused_by={"type": "illegal_argument_exception", "reason": f'For input string: "{value}"'},
    )


def forbidden(i: int = 0) -> dict[str, Any]:
    return failed(
        403,
        "security_exception",
        "action [indices:data/write/bulk[s]] is unauthorized for API key id [k1] "
        "of user [ship] on indices [logs-logship-default]",
        i,
    )


def bulk(*items: dict[str, Any], status: int = 200, **headers: str) -> Answer:
    errors = any("error" in next(iter(i.values())) for i in items)
    body = json.dumps({"took": 3, "errors": errors, "items": list(items)})
    return Answer(status, retry_after=headers.get("retry_after"), body=body)


def read(answer: Answer, count: int) -> Outcome:
    outcome = BulkReader().read(answer, count)
    if outcome.parts:  # every event in exactly one group, groups noted one by one
        assert sorted(i for _v, group in outcome.parts for i in group) == list(range(count))
        assert len(outcome.notes) == len(outcome.parts)
    return outcome


def test_every_item_created_is_delivered():
    outcome = read(bulk(created(0), created(1), created(2)), 3)
    assert (outcome.verdict, outcome.parts) == (D, ())


def test_fluent_bits_answer_is_delivered():
    body = '{"errors":false,"items":[{"create":{"status":201,"result":"created"}}]}'
    assert read(Answer(200, body=body), 1).verdict is D


def test_a_409_is_an_event_indexed_before():
    outcome = read(bulk(conflict(0), created(1), conflict(2)), 3)
    assert (outcome.verdict, outcome.parts) == (D, ())


def test_errors_true_under_200_is_read_item_by_item():
    outcome = read(bulk(created(0), busy(1), created(2)), 3)
    assert outcome.verdict is R and outcome.kind == "http-429"
    assert outcome.parts == ((D, (0, 2)), (R, (1,)))
    assert outcome.reason.startswith("1 of 3 events not indexed: 1 with 429 es_rejected")


def test_a_mixed_answer_groups_the_events_by_what_became_of_them():
    items = [created(0), conflict(1), busy(2), unparsable(3), failed(503, "x", "y", 4)]
    outcome = read(bulk(*items, unparsable(5), forbidden(6)), 7)
    assert outcome.verdict is H and outcome.kind == "http-403"
    assert outcome.parts == ((D, (0, 1)), (X, (3, 5)), (R, (2, 4)), (H, (6,)))
    rejected = outcome.part(1)
    assert rejected.kind == "http-400" and rejected.status() == 400
    # One reason for both: each names its own document, which the reader leaves out.
    assert rejected.reason == (
        "400 mapper_parsing_exception: failed to parse field [n] of type [long] in document "
        "with id '[_id]'. Preview of field's value: 'abc' (caused by "
        'illegal_argument_exception: For input string: "abc")'
    )
    assert outcome.reason.startswith("5 of 7 events not indexed: 2 with 400 mapper_parsing")


def test_rejected_events_with_different_reasons_are_rejected_apart():
    outcome = read(bulk(unparsable(0, "a"), unparsable(1, "b"), unparsable(2, "a")), 3)
    assert outcome.verdict is X
    assert outcome.parts == ((X, (0, 2)), (X, (1,)))
    assert "'a'" in outcome.part(0).reason and "'b'" in outcome.part(1).reason


def test_a_batch_refused_for_one_reason_is_rejected_whole_with_it():
    outcome = read(bulk(unparsable(0), unparsable(1)), 2)
    assert (outcome.verdict, outcome.parts, outcome.kind) == (X, (), "http-400")
    assert outcome.reason.startswith("400 mapper_parsing_exception: failed to parse field [n]")


def test_many_reasons_are_grouped_by_type_past_a_bound():
    n = MAX_REJECT_GROUPS + 4
    outcome = read(bulk(*(unparsable(i, f"v{i}") for i in range(n)), created(n)), n + 1)
    assert outcome.parts == ((D, (n,)), (X, tuple(range(n))))
    assert outcome.part(1).reason.endswith(f"(and {n - 1} other reasons)")


@pytest.mark.parametrize(
    ("item", "verdict", "status"),
    [(busy, R, 429), (forbidden, H, 403), (lambda i: failed(503, "unavailable", "no", i), R, 503)],
)
def test_a_batch_whose_items_all_failed_alike_keeps_its_key(item, verdict, status):
    """No parts: the sender retries or holds the batch itself, under its own key."""
    outcome = read(bulk(item(0), item(1)), 2)
    assert (outcome.verdict, outcome.parts) == (verdict, ())
    assert outcome.status(200) == status


def test_an_index_that_does_not_exist_is_held_not_rejected():
    missing = failed(404, "index_not_found_exception", "no such index [logs-x]")
    outcome = read(bulk(missing, created(1)), 2)
    assert outcome.parts == ((D, (1,)), (H, (0,)))


def test_a_retry_after_on_a_bulk_answer_is_honoured():
    outcome = read(bulk(created(0), busy(1), retry_after="7"), 2)
    assert outcome.retry_after == 7.0


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (413, "", S),
        (
            429,
            '{"error":{"type":"circuit_breaking_exception","reason":"[parent] Data too large"}}',
            R,
        ),
        (503, "", R),
        (401, '{"error":{"type":"security_exception","reason":"missing credentials"}}', H),
        (403, "", H),
        (404, "", H),
        (
            400,
            '{"error":{"type":"illegal_argument_exception","reason":"The bulk request must be '
            'terminated by a newline [\\\\n]"},"status":400}',
            X,
        ),
        (415, "Content-Type header [text/plain] is not supported", X),
    ],
)
def test_a_status_for_the_whole_request_is_judged_as_http_judges_it(status, body, verdict):
    outcome = read(Answer(status, body=body), 5)
    assert (outcome.verdict, outcome.kind) == (verdict, f"http-{status}")
    if body.startswith('{"error"'):
        assert outcome.reason == ": ".join(json.loads(body)["error"].values())
    else:
        assert outcome.reason == body


def test_no_answer_is_retried():
    outcome = read(Answer(None, error="ConnectionError: refused", kind="refused"), 3)
    assert (outcome.verdict, outcome.kind) == (R, "refused")


@pytest.mark.parametrize(
    "body",
    [
        "",
        "OK",
        '{"acknowledged":true}',
        '{"errors":true}',  # which ones?
        '{"errors":true,"items":[{"create":{"status":201}}]}',  # fewer items than events
        '{"errors":false,"items":[{"create":{"status":201}},"?"]}',
        '{"errors":true,"items":[{"create":{"status":"201"}},{"create":{"status":201}}]}',
    ],
)
def test_a_2xx_that_does_not_say_what_became_of_each_event_is_sent_again(body):
    """Every event has its _id: what was indexed comes back as a 409 then."""
    outcome = read(Answer(200, body=body), 2)
    assert (outcome.verdict, outcome.parts, outcome.kind) == (R, (), "http-200")
    assert "not a bulk answer for 2 events" in outcome.reason


@pytest.mark.parametrize(
    "body",
    [
        "[" * 200_000,  # too deep to parse: RecursionError
        '{"errors":true,"items":' + "[" * 200_000,  # so, though it opens as an object
        '{"errors":true,"items":[{"create":{"status":' + "9" * 5000 + "}}]}",  # past int's digits
    ],
)
def test_a_2xx_that_cannot_be_read_is_sent_again_whole(body):
    """A bulk 200 may refuse items a retry would get through: it is never taken as delivered."""
    outcome = read(Answer(200, body=body), 2)
    assert (outcome.verdict, outcome.parts, outcome.kind) == (R, (), "http-200")
    assert "not a bulk answer for 2 events" in outcome.reason


def test_items_whose_values_cannot_be_shown_are_sent_again(monkeypatch):
    """What the reader does with an item's values cannot cost the batch either."""

    def overflow(*_args: Any) -> str:
        raise OverflowError("a value past what str() takes")

    monkeypatch.setattr(es, "error_text", overflow)
    outcome = read(bulk(created(0), unparsable(1)), 2)
    assert (outcome.verdict, outcome.parts) == (R, ())


@pytest.mark.parametrize("status", [400, 503])
def test_a_failure_whose_body_cannot_be_read_is_judged_by_its_status(status):
    deep = "[" * 200_000
    outcome = read(Answer(status, body=deep), 3)
    assert outcome.verdict is (X if status == 400 else R)
    assert outcome.reason == deep[:500]


def test_errors_false_is_believed_when_the_items_were_left_out():
    assert read(Answer(200, body='{"took":1,"errors":false}'), 4).verdict is D


def test_an_answer_cut_short_splits_the_batch_until_it_can_be_read():
    cut = json.dumps({"took": 3, "errors": True, "items": [conflict(i) for i in range(9)]})[:300]
    assert read(Answer(200, body=cut), 9).verdict is S
    assert read(Answer(200, body=cut), 1).verdict is R


# -- the index option ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "words"),
    [
        ("Logs-app", "it must be lowercase"),
        ("logs app", "it must not hold ' '"),
        ("logs/app", "it must not hold '/'"),
        ("logs:app", "it must not hold ':'"),
        ("_logs", "it must not start with '-', '_' or '+'"),
        ("..", "nor be '.' or '..'"),
        ("é" * 128, "it must not be longer than 255 bytes"),
    ],
)
def test_an_index_name_elasticsearch_refuses_is_refused_naming_the_option(index, words):
    with pytest.raises(ValueError, match="option 'index'") as e:
        build_options({"url": "http://h:9200", "protocol": "elasticsearch", "index": index})
    assert words in str(e.value)


@pytest.mark.parametrize("index", ["logs-app-prod", "app_logs.2026", "é" * 127])
def test_an_index_name_elasticsearch_takes_is_kept(index):
    opts = build_options({"url": "http://h:9200", "protocol": "elasticsearch", "index": index})
    assert opts.index == index
