"""``protocol="loki"`` without a network: the push request from tables, and Loki's answers.

Facts from Loki's documentation ("Loki HTTP API", "Understand labels"): a
JSON push is ``{"streams": [{"stream": {labels}, "values": [[ns, line], …]}]}``
with the time a string of nanoseconds since the epoch; label names follow
Prometheus' rule ``[a-zA-Z_][a-zA-Z0-9_]*``, names starting with ``__`` are
Loki's own, and every stream needs at least one label.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import time
from typing import Any

import pytest

from logship.pure.batching import make_batches
from logship.pure.event import EventBuilder
from logship.pure.options import build_options
from logship.pure.protocols import Answer, Verdict
from logship.pure.protocols.loki import LokiEncoder, label_name, label_value
from logship.pure.protocols.registry import decoder_named, protocol_named
from logship.pure.protocols.stamps import epoch_micros
from logship.ring import Item

STAMP = "2025-11-24T16:00:00.123456Z"
NANOS = "1764000000123456000"
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def event(**fields: Any) -> dict[str, Any]:
    base = {"timestamp": STAMP, "level": "INFO", "logger": "app", "message": "m", "uuid": "u"}
    return {**base, **fields}


def push(encoder: LokiEncoder, events: list[dict[str, Any]]) -> dict[str, Any]:
    body, raw_size = encoder.body([encoder.unit(e) for e in events])
    raw = gzip.decompress(body) if encoder.compress else body
    assert raw_size == len(raw)
    request: dict[str, Any] = json.loads(raw)
    return request


def streams(request: dict[str, Any]) -> dict[tuple[tuple[str, str], ...], list[list[str]]]:
    return {tuple(sorted(s["stream"].items())): s["values"] for s in request["streams"]}


def test_one_event_is_one_stream_with_its_labels_time_and_line():
    request = push(LokiEncoder(False, labels=["level", "service"]), [event(service="billing")])
    (stream,) = request["streams"]
    assert stream["stream"] == {"level": "INFO", "service": "billing"}
    ((nanos, line),) = stream["values"]
    assert nanos == NANOS  # a string: nanoseconds do not fit a JSON number's double
    assert json.loads(line) == event(service="billing")  # the whole event, label fields too


def test_events_are_grouped_into_streams_by_their_labels():
    events = [
        event(level="INFO", uuid="1"),
        event(level="ERROR", uuid="2"),
        event(level="INFO", uuid="3"),
        event(level="ERROR", uuid="4"),
        event(level="DEBUG", uuid="5"),
    ]
    found = streams(push(LokiEncoder(False), events))
    uuids = {k: [json.loads(line)["uuid"] for _t, line in v] for k, v in found.items()}
    assert uuids == {
        (("level", "INFO"),): ["1", "3"],
        (("level", "ERROR"),): ["2", "4"],
        (("level", "DEBUG"),): ["5"],
    }


def test_values_within_a_stream_are_in_time_order():
    stamps = ["2025-11-24T16:00:02.000000Z", "2025-11-24T16:00:01.000000Z", STAMP]
    stamps.append(stamps[1])
    events = [event(timestamp=t, uuid=str(i)) for i, t in enumerate(stamps)]
    (values,) = streams(push(LokiEncoder(False), events)).values()
    times = [int(t) for t, _line in values]
    assert times == sorted(times)
    assert [json.loads(line)["uuid"] for _t, line in values] == ["2", "1", "3", "0"]  # stable


@pytest.mark.parametrize(
    "field, name",
    [
        ("level", "level"),
        ("service.name", "service_name"),
        ("http-status", "http_status"),
        ("9lives", "_9lives"),
        ("__name__", "_name__"),  # __ starts Loki's own labels
        ("ünï", "_n_"),
        ("a:b", "a_b"),
    ],
)
def test_label_names_are_made_valid_for_loki(field, name):
    assert label_name(field) == name and LABEL_NAME.fullmatch(name)


@pytest.mark.parametrize(
    "value, text",
    [
        ("prod", "prod"),
        (3, "3"),
        (2.5, "2.5"),
        (True, "true"),
        ({"a": [1]}, '{"a":[1]}'),
        ("", None),
        (None, None),
    ],
)
def test_label_values_are_strings(value, text):
    assert label_value(value) == text


def test_labels_default_to_level_and_the_keys_of_fields():
    opts = build_options(
        {"url": "http://loki:3100", "protocol": "loki", "fields": {"service": "b", "env": "p"}}
    )
    enc = protocol_named("loki").encoder(opts, None)
    (stream,) = push(enc, [event(service="b", env="p", host_id=7)])["streams"]
    assert stream["stream"] == {"level": "INFO", "service": "b", "env": "p"}


def test_labels_option_names_them_and_non_string_values_become_strings():
    opts = build_options(
        {"url": "http://loki:3100", "protocol": "loki", "labels": ["status", "ok", "region.id"]}
    )
    enc = protocol_named("loki").encoder(opts, None)
    (stream,) = push(enc, [event(status=503, ok=False, **{"region.id": "eu-1"})])["streams"]
    assert stream["stream"] == {"status": "503", "ok": "false", "region_id": "eu-1"}


def test_a_missing_or_empty_label_field_is_left_out():
    enc = LokiEncoder(False, labels=["level", "tenant", "zone"])
    (stream,) = push(enc, [event(zone="")])["streams"]
    assert stream["stream"] == {"level": "INFO"}


def test_an_event_with_none_of_the_label_fields_keeps_its_level():
    # Loki stores no stream without a label
    (stream,) = push(LokiEncoder(False, labels=["tenant"]), [event()])["streams"]
    assert stream["stream"] == {"level": "INFO"}
    (stream,) = push(LokiEncoder(False, labels=[]), [{"message": "bare"}])["streams"]
    assert stream["stream"] == {"level": "unknown"}


def test_two_fields_that_make_one_label_name_give_it_to_the_first():
    enc = LokiEncoder(False, labels=["service.name", "service_name"])
    (stream,) = push(enc, [event(**{"service.name": "a", "service_name": "b"})])["streams"]
    assert stream["stream"] == {"service_name": "a"}


@pytest.mark.parametrize(
    "stamp, nanos",
    [
        ("1970-01-01T00:00:00.000001Z", "1000"),
        ("2025-11-24T17:00:00.123456+01:00", NANOS),
    ],
)
def test_timestamps_are_nanosecond_strings(stamp, nanos):
    (stream,) = push(LokiEncoder(False), [event(timestamp=stamp)])["streams"]
    assert stream["values"][0][0] == nanos


def test_an_event_without_a_usable_time_gets_the_current_one():
    before = time.time_ns()
    (stream,) = push(LokiEncoder(False), [event(timestamp="soon")])["streams"]
    assert before <= int(stream["values"][0][0]) <= time.time_ns()


def test_odd_values_are_carried_never_raised():
    odd = event(level="WARNING", n=float("inf"), obj=object(), s="\ud800", k={(1, 2): 3})
    (stream,) = push(LokiEncoder(False), [odd])["streams"]
    line = json.loads(stream["values"][0][1])
    assert line["n"] == "inf" and line["obj"].startswith("<object") and line["s"] == "\ud800"


def test_a_body_reads_back_into_its_units_and_events():
    enc = LokiEncoder(True, labels=["level", "service"])
    events = [event(level=lvl, uuid=str(i), service="s") for i, lvl in enumerate("ABAB")]
    units = [enc.unit(e) for e in events]
    body, _ = enc.body(units)
    assert sorted(enc.units_of(body)) == sorted(units)  # the same bytes, grouped by stream
    assert sorted(e["uuid"] for e in enc.events_of(body)) == ["0", "1", "2", "3"]
    assert enc.events_of(body)[0] == events[0]
    assert enc.body(enc.units_of(body))[0] == body  # a split or a retry sends the same lines
    assert decoder_named("loki", True).events_of(body)[0] == events[0]
    assert enc.headers() == {"Content-Type": "application/json", "Content-Encoding": "gzip"}


def test_units_of_keeps_the_labels_a_spilled_body_was_sent_with():
    old = LokiEncoder(False, labels=["level", "service"])
    body, _ = old.body([old.unit(event(service="s"))])
    (unit,) = LokiEncoder(False, labels=["level"]).units_of(body)
    assert json.loads(unit)["stream"] == {"level": "INFO", "service": "s"}


def test_events_of_a_line_that_is_not_an_event_keeps_it_as_the_message():
    body = json.dumps(
        {"streams": [{"stream": {"job": "x"}, "values": [["1", "plain line"], ["2", "[1]"]]}]}
    ).encode()
    assert LokiEncoder(False).events_of(body) == [
        {"job": "x", "message": "plain line"},
        {"job": "x", "message": "[1]"},
    ]


def test_batches_never_exceed_batch_max_bytes_after_merging():
    enc = LokiEncoder(False, labels=["level"])
    units = [enc.unit(event(level="AB"[i % 2], uuid=str(i), message="x" * i)) for i in range(60)]
    for limit in (300, 1000, 5000):
        batches = make_batches(units, enc, limit)
        assert sum(b.count for b in batches) == 60
        for b in batches:
            assert b.count == 1 or len(b.body) <= limit  # merging only shrinks a body


def test_ring_items_are_built_into_streams():
    builder = EventBuilder({"service": "billing"})
    record = logging.LogRecord("app", logging.ERROR, __file__, 7, "boom %d", (1,), None)
    item = Item(0, 6, record, "boom 1", None, None, None, None, None)
    enc = protocol_named("loki").encoder(
        build_options({"url": "http://l:3100", "protocol": "loki", "fields": {"service": "x"}}),
        builder,
    )
    body, _ = enc.body(enc.units([item]))
    (stream,) = json.loads(gzip.decompress(body))["streams"]
    assert stream["stream"] == {"level": "ERROR", "service": "billing"}
    line = json.loads(stream["values"][0][1])
    assert line["message"] == "boom 1" and line["logger"] == "app"


def test_the_protocol_is_loki_push_with_a_bearer_token():
    proto = protocol_named("loki")
    assert (proto.default_path, proto.auth, proto.transport) == (
        "/loki/api/v1/push",
        "Bearer",
        "http",
    )


@pytest.mark.parametrize("option", ["index", "source", "sourcetype", "tag"])
def test_options_of_other_protocols_are_refused(option):
    with pytest.raises(ValueError, match=f"'{option}' \\(it is for protocol"):
        build_options({"url": "http://loki:3100", "protocol": "loki", option: "x"})


@pytest.mark.parametrize(
    "status, verdict",
    [
        (204, Verdict.DELIVERED),
        (400, Verdict.REJECT),  # entry too far behind, out of order: never resent
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
        (401, Verdict.HOLD),  # "no org id": the tenant header is missing
        (413, Verdict.SPLIT),
    ],
)
def test_the_status_decides(status, verdict):
    reader = protocol_named("loki").reader(None)
    outcome = reader.read(Answer(status, body="entry too far behind"), 10)
    assert outcome.verdict is verdict and outcome.parts == ()


@pytest.mark.parametrize(
    "stamp, micros",
    [
        ("2025-11-24T16:00:00.000000Z", 1764000000000000),  # logship's own form
        ("2025-11-24T17:00:00.5+01:00", 1764000000500000),  # one fraction digit (3.10 refused it)
        ("2025-11-24t16:00:00Z", 1764000000000000),  # no fraction, lowercase t
        ("2025-11-24 16:00:00.1234567-02:30", 1764009000123456),  # seven digits: cut, not rounded
        ("2025-11-24T16:00:00", None),  # no zone: no number is right
        ("2025-13-24T16:00:00Z", None),
        ("2025-11-24T16:00:00+24:00", None),
        ("yesterday", None),
    ],
)
def test_any_rfc3339_time_is_read_the_same_on_every_python(stamp, micros):
    assert epoch_micros(stamp) == micros
