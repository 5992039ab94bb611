"""``protocol="otlp"`` from tables: events to OTLP JSON bodies and back, and answers. No network.

The expected values come from the OTLP specification (JSON encoding: 64-bit
integers as decimal strings, ids as hex, enums as integers; which statuses
are retried; ``partialSuccess``), from the OpenTelemetry Python SDK's
``std_to_otel`` table and its ``severityText`` names, and from the semantic
conventions' attribute names.
"""

from __future__ import annotations

import base64
import builtins
import gzip
import itertools
import json
import logging
import random
import sys
from typing import Any

import pytest

from logship.pure.event import EventBuilder
from logship.pure.protocols import Answer, Verdict
from logship.pure.protocols import otlp as o
from logship.pure.protocols.registry import decoder_named, protocol_named
from logship.pure.snapshot import extras_of
from logship.ring import Item

OBSERVED = 1_800_000_000_000_000_000
STAMP = "2026-11-24T10:00:00.123456Z"
STAMP_NANOS = 1_795_514_400_123_456_000


def encoder(fields: dict[str, Any] | None = None, compress: bool = False, **environ: str):
    builder = EventBuilder(fields or {})
    return o.OtlpEncoder(compress, builder, environ=environ, clock=lambda: OBSERVED), builder


def event(**fields: Any) -> dict[str, Any]:
    base = {
        "timestamp": STAMP,
        "level": "INFO",
        "logger": "app",
        "message": "hello",
        "hostname": "web-1",
        "uuid": "01937a2e-0000-7000-8000-000000000001",
        "kernel_version": "6.8.0-45-generic",
        "pid": 1234,
        "thread": "MainThread",
        "module": "views",
        "func": "index",
        "line": 42,
    }
    return {**base, **fields}


def log_record(e: dict[str, Any], observed: int = OBSERVED) -> tuple[Any, Any, dict[str, Any]]:
    """The scope, resource key and log record (parsed) the writer makes of ``e``."""
    scope, resource, text = o.RecordWriter().write(e, observed)
    record: dict[str, Any] = json.loads(text)
    return scope, resource, record


def attributes(record: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: a["value"] for a in record["attributes"]}


def body_of(enc: o.OtlpEncoder, events: list[dict[str, Any]]) -> dict[str, Any]:
    body, raw_size = enc.body([enc.unit(e) for e in events])
    raw = gzip.decompress(body) if enc.compress else body
    assert len(raw) == raw_size
    doc: dict[str, Any] = json.loads(raw)
    return doc


# -- severity: the SDK's std_to_otel and severityText ----------------------------------------

# std_to_otel for levels 10 to 53, as the OpenTelemetry Python SDK lists them.
SDK_SEVERITIES = [5, 6, 7, *[8] * 7, 9, 10, 11, *[12] * 7, 13, 14, 15, *[16] * 7]
SDK_SEVERITIES += [17, 18, 19, *[20] * 7, 21, 22, 23, 24]


def test_severity_numbers_are_the_sdks():
    assert [o.severity_number(n) for n in range(10, 54)] == SDK_SEVERITIES
    assert [o.severity_number(n) for n in (0, 1, 9)] == [0, 0, 0]  # below DEBUG: unspecified
    assert [o.severity_number(n) for n in (54, 60, 1000)] == [24, 24, 24]


@pytest.mark.parametrize(
    ("level", "number", "text"),
    [
        ("DEBUG", 5, "DEBUG"),
        ("INFO", 9, "INFO"),
        ("WARNING", 13, "WARN"),
        ("ERROR", 17, "ERROR"),
        ("CRITICAL", 21, "FATAL"),
        ("Level 15", 8, "Level 15"),
        ("NOT A LEVEL", 0, "NOT A LEVEL"),
    ],
)
def test_a_level_name_maps_as_the_sdk_maps_its_record(level, number, text):
    enc, _b = encoder()
    record = body_of(enc, [event(level=level)])["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert (record["severityNumber"], record["severityText"]) == (number, text)


def test_a_custom_level_registered_with_logging_is_found_by_its_name():
    logging.addLevelName(25, "NOTICE")
    assert o.level_number("NOTICE") == 25
    assert o.severity_number(25) == 12


def test_the_records_own_levelno_wins_over_its_name():
    enc, _b = encoder()
    rec = logging.LogRecord("app", 25, __file__, 1, "x", (), None)
    rec.levelname = "odd"
    (unit,) = enc.units([Item(0, 1, rec, "x", None, None, None, None, None)])
    record = json.loads(unit.partition(b"\n")[2])
    assert (record["severityNumber"], record["severityText"]) == (12, "odd")


@pytest.mark.parametrize(
    ("text", "number", "level"),
    [("WARN", 13, "WARNING"), ("FATAL", 21, "CRITICAL"), ("INFO", 9, "INFO"), (None, 17, "ERROR")],
)
def test_severity_reads_back_as_the_stdlib_level(text, number, level):
    assert o.level_name(text, number) == level


# -- values: typed AnyValue --------------------------------------------------------------------


class Unrepresentable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text", {"stringValue": "text"}),
        (True, {"boolValue": True}),
        (42, {"intValue": "42"}),
        (-(2**63), {"intValue": str(-(2**63))}),
        (2**63, {"stringValue": str(2**63)}),  # beyond int64
        (1.5, {"doubleValue": 1.5}),
        (float("nan"), {"stringValue": "nan"}),
        (float("-inf"), {"stringValue": "-inf"}),
        (None, {}),
        ([1, "a"], {"arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "a"}]}}),
        ((), {"arrayValue": {"values": []}}),
        ({"k": False}, {"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": False}}]}}),
        ({1: "a"}, {"kvlistValue": {"values": [{"key": "1", "value": {"stringValue": "a"}}]}}),
        (b"\x00\xff", {"stringValue": "b'\\x00\\xff'"}),  # never bytesValue
        (Unrepresentable(), {"stringValue": "<unrepresentable Unrepresentable>"}),
        (logging.INFO, {"intValue": "20"}),
    ],
)
def test_values_are_typed_anyvalues(value, expected):
    assert o.any_value(value) == expected


def test_a_self_containing_value_is_cut_at_a_fixed_depth():
    loop: list[Any] = []
    loop.append(loop)
    value = o.any_value(loop)
    depth = 0
    while "arrayValue" in value:
        value = value["arrayValue"]["values"][0]
        depth += 1
    assert value == {"stringValue": "<too deep>"} and depth == 32


def test_values_read_back():
    for value in ("s", True, 7, 2.5, None, [1, ["x"]], {"a": {"b": 1}}):
        assert o.plain_value(o.any_value(value)) == value
    assert o.plain_value({"intValue": 7}) == 7  # a number where a string is usual


def test_a_lone_surrogate_is_escaped_as_protobuf_strings_are_utf8():
    enc, _b = encoder()
    doc = body_of(enc, [event(message="a\ud800b \U0001f600", other="\udcff")])
    record = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert record["body"] == {"stringValue": "a\\ud800b \U0001f600"}
    assert attributes(record)["other"] == {"stringValue": "\\udcff"}


# -- exceptions: exception.* from the traceback's text --------------------------------------------


def traceback_of(error: BaseException) -> str:
    import traceback

    try:
        raise error
    except BaseException as e:
        return "".join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip("\n")


class AppError(Exception):
    pass


def chained() -> str:
    import traceback

    try:
        try:
            raise KeyError("k")
        except KeyError as e:
            raise RuntimeError("wrapped") from e
    except RuntimeError as e:
        return "".join(traceback.format_exception(type(e), e, e.__traceback__))


def test_exception_parts_of_tracebacks():
    assert o.exception_parts(traceback_of(ValueError("bad value"))) == ("ValueError", "bad value")
    assert o.exception_parts(traceback_of(KeyboardInterrupt())) == ("KeyboardInterrupt", None)
    assert o.exception_parts(traceback_of(AppError("one\ntwo"))) == (
        f"{__name__}.AppError",
        "one\ntwo",
    )
    assert o.exception_parts(chained()) == ("RuntimeError", "wrapped")
    try:
        compile("x = (", "f.py", "exec")
    except SyntaxError as e:
        text = traceback_of(e)
    assert o.exception_parts(text)[0] == "SyntaxError"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups are Python 3.11+")
def test_exception_parts_of_an_exception_group():
    group = getattr(builtins, "ExceptionGroup")  # noqa: B009 (not a name on Python 3.10)
    text = traceback_of(group("eg", [ValueError("a"), TypeError("b")]))
    assert o.exception_parts(text) == ("ExceptionGroup", "eg (2 sub-exceptions)")


def test_text_that_is_no_traceback_gives_its_last_line_as_the_message():
    assert o.exception_parts("something\nwent wrong  \n") == (None, "went wrong")
    assert o.exception_parts("ValueError: no traceback") == ("ValueError", "no traceback")
    assert o.exception_parts("") == (None, None)


def test_an_events_exception_becomes_the_exception_attributes():
    enc, _b = encoder()
    text = traceback_of(ValueError("bad value"))
    doc = body_of(enc, [event(exception=text, stack="Stack (most recent call last):\n  x")])
    attrs = attributes(doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0])
    assert attrs["exception.type"] == {"stringValue": "ValueError"}
    assert attrs["exception.message"] == {"stringValue": "bad value"}
    assert attrs["exception.stacktrace"] == {"stringValue": text}
    assert attrs["code.stacktrace"] == {"stringValue": "Stack (most recent call last):\n  x"}


# -- one event, field by field ------------------------------------------------------------------


def test_an_event_maps_field_by_field():
    e = event(
        service="billing",
        env="prod",
        count=3,
        ratio=0.5,
        ok=True,
        tags=["a"],
        nested={"k": None},
        trace_id="5B8EFFF798038103D269B633813FC60C",
        span_id="eee19b7ec3c1b174",
    )
    scope, resource, record = log_record(e)
    assert scope == "app"
    assert resource == ("web-1", "6.8.0-45-generic", "billing")
    assert record == {
        "timeUnixNano": str(STAMP_NANOS),
        "observedTimeUnixNano": str(OBSERVED),
        "severityNumber": 9,
        "severityText": "INFO",
        "body": {"stringValue": "hello"},
        "attributes": [
            {"key": "log.record.uid", "value": {"stringValue": e["uuid"]}},
            {"key": "process.pid", "value": {"intValue": "1234"}},
            {"key": "thread.name", "value": {"stringValue": "MainThread"}},
            {"key": "code.function.name", "value": {"stringValue": "views.index"}},
            {"key": "code.line.number", "value": {"intValue": "42"}},
            {"key": "env", "value": {"stringValue": "prod"}},
            {"key": "count", "value": {"intValue": "3"}},
            {"key": "ratio", "value": {"doubleValue": 0.5}},
            {"key": "ok", "value": {"boolValue": True}},
            {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}]}}},
            {"key": "nested", "value": {"kvlistValue": {"values": [{"key": "k", "value": {}}]}}},
        ],
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("trace_id", "5b8efff798038103d269b633813fc60"),  # 31 digits
        ("trace_id", "0" * 32),  # all zero: no trace
        ("span_id", "eee19b7ec3c1b17z"),  # not hex
        ("span_id", 123),
    ],
)
def test_ids_of_another_form_stay_attributes(field, value):
    _s, _r, record = log_record(event(**{field: value}), 0)
    assert "traceId" not in record and "spanId" not in record
    assert attributes(record)[field] == o.any_value(value)


def test_a_field_named_like_a_derived_attribute_is_kept_under_extra():
    _s, _r, record = log_record(event(**{"log.record.uid": "mine", "x": 1}), 0)
    attrs = attributes(record)
    assert attrs["log.record.uid"] == {"stringValue": event()["uuid"]}
    assert attrs["extra_log.record.uid"] == {"stringValue": "mine"}


@pytest.mark.parametrize("stamp", ["yesterday", "1969-12-31T23:59:59.000000Z", 17])
def test_a_timestamp_that_is_no_unix_time_stays_an_attribute(stamp):
    _s, _r, record = log_record(event(timestamp=stamp))
    assert "timeUnixNano" not in record
    assert attributes(record)["timestamp"] == o.any_value(stamp)


def test_timestamps_to_nanoseconds_and_back():
    clock = o.Clock()
    assert clock.nanos(STAMP) == STAMP_NANOS
    assert clock.nanos("2026-11-24T10:00:00.000001Z") == STAMP_NANOS - 123_455_000
    assert clock.nanos("2026-11-24T11:00:00+01:00") == STAMP_NANOS - 123_456_000
    assert clock.nanos("2026-13-24T10:00:00.000000Z") is None
    assert o.Clock.stamp(STAMP_NANOS) == STAMP


def test_a_fallback_event_still_maps():
    builder = EventBuilder({})
    fallback = builder.fallback("msg", RuntimeError("x"))
    _s, _r, record = log_record(fallback, 0)
    assert record["severityNumber"] == 17
    assert attributes(record)["build_error"] == {"stringValue": "RuntimeError('x')"}


# -- the resource --------------------------------------------------------------------------------


def resource_of(doc: dict[str, Any], i: int = 0) -> dict[str, Any]:
    return {a["key"]: a["value"] for a in doc["resourceLogs"][i]["resource"]["attributes"]}


def test_the_resource_names_the_service_host_and_os():
    enc, _b = encoder({"service": "billing"})
    resource = resource_of(body_of(enc, [event(service="billing")]))
    assert resource == {
        "service.name": {"stringValue": "billing"},
        "host.name": {"stringValue": "web-1"},
        "os.type": {"stringValue": o.os_type(__import__("platform").system())},
        "os.version": {"stringValue": "6.8.0-45-generic"},
    }


@pytest.mark.parametrize(
    ("environ", "executable", "name"),
    [
        ({"OTEL_SERVICE_NAME": "checkout"}, "/usr/bin/python3", "checkout"),
        ({"OTEL_SERVICE_NAME": " "}, "/usr/bin/python3", "unknown_service:python3"),
        ({}, "/usr/bin/python3", "unknown_service:python3"),
        ({}, "", "unknown_service"),
    ],
)
def test_the_default_service_name(environ, executable, name):
    assert o.default_service_name(environ, executable) == name


def test_fields_service_wins_over_otel_service_name():
    enc, _b = encoder({"service": "billing"}, OTEL_SERVICE_NAME="checkout")
    assert resource_of(body_of(enc, [event(service="billing")]))["service.name"] == {
        "stringValue": "billing"
    }
    enc, _b = encoder(OTEL_SERVICE_NAME="checkout")
    doc = body_of(enc, [event()])
    assert resource_of(doc)["service.name"] == {"stringValue": "checkout"}


def test_a_service_that_is_no_string_stays_an_attribute():
    enc, _b = encoder(OTEL_SERVICE_NAME="checkout")
    doc = body_of(enc, [event(service=7)])
    assert resource_of(doc)["service.name"] == {"stringValue": "checkout"}
    record = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert attributes(record)["service"] == {"intValue": "7"}


@pytest.mark.parametrize(
    ("system", "name"), [("Linux", "linux"), ("Darwin", "darwin"), ("SunOS", "solaris")]
)
def test_os_type(system, name):
    assert o.os_type(system) == name


# -- bodies: one resource, a scope per logger ----------------------------------------------------


def test_a_body_groups_records_by_resource_then_logger():
    enc, _b = encoder({"service": "billing"})
    events = [
        event(logger="app", message="1", service="billing"),
        event(logger="app.db", message="2", service="billing"),
        event(logger="app", message="3", service="billing"),
        event(logger="app", message="4", service="other"),
    ]
    doc = body_of(enc, events)
    assert list(doc) == ["resourceLogs"]
    first, second = doc["resourceLogs"]
    assert resource_of(doc, 0)["service.name"] == {"stringValue": "billing"}
    assert resource_of(doc, 1)["service.name"] == {"stringValue": "other"}
    assert [
        (s["scope"], [r["body"]["stringValue"] for r in s["logRecords"]])
        for s in first["scopeLogs"]
    ] == [
        ({"name": "app"}, ["1", "3"]),
        ({"name": "app.db"}, ["2"]),
    ]
    assert [s["scope"]["name"] for s in second["scopeLogs"]] == ["app"]


def test_headers_and_gzip():
    enc, _b = encoder(compress=True)
    assert enc.headers() == {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    assert body_of(enc, [event()])["resourceLogs"]
    plain, _b = encoder(compress=False)
    assert plain.headers() == {"Content-Type": "application/json"}


def test_units_and_events_read_back_from_a_body():
    enc, _b = encoder({"service": "billing"}, compress=True)
    events = [
        event(logger="a", service="billing", x=1),
        event(logger="b", service="billing", trace_id="ab" * 16, span_id="cd" * 8),
        event(logger="a", service="other", exception=traceback_of(ValueError("v"))),
    ]
    units = [enc.unit(e) for e in events]
    body, _raw = enc.body(units)
    again = enc.units_of(body)
    assert sorted(again) == sorted(units)
    assert enc.body(again)[1] == enc.body(units)[1]
    back = {e["logger"] + e.get("service", ""): e for e in enc.events_of(body)}
    for e in events:
        assert back[e["logger"] + e["service"]] == e
    # Another process (no builder) reads the same events back: dead letters, replay.
    assert decoder_named(o.ENCODER_NAME, True).events_of(body) == enc.events_of(body)


def test_a_default_service_name_is_not_read_back_as_a_field():
    enc, _b = encoder()
    (back,) = enc.events_of(enc.body([enc.unit(event())])[0])
    assert back == event()


def test_the_pumps_count_of_a_batch_is_never_below_its_body(tmp_path):
    rng = random.Random(7)
    enc, _b = encoder({"service": "s0"})
    for _ in range(200):
        events = [
            event(
                logger=rng.choice(["a", "bb", "a.very.long.logger.name"]),
                service=rng.choice(["s0", "s0", "s1", "s2"]),
                message="m" * rng.randrange(0, 50),
            )
            for _ in range(rng.randrange(1, 12))
        ]
        units = [enc.unit(e) for e in events]
        counted = enc.body_overhead + sum(len(u) + enc.per_event_overhead for u in units)
        assert enc.body(units)[1] <= counted


def record_item(msg: str, level: int = logging.INFO, **extra: Any) -> Item:
    logger = logging.getLogger("app.items")
    rec = logger.makeRecord(logger.name, level, __file__, 7, msg, (), None, "fn", extra)
    return Item(0, len(msg), rec, rec.getMessage(), None, None, None, extras_of(rec)[0], None)


def test_ring_items_encode_as_their_events_do():
    enc, builder = encoder({"service": "billing"})
    items = [record_item("one", x=1), record_item("two", logging.WARNING, y=[1])]
    units = enc.units(items)
    for unit, item in zip(units, items, strict=True):
        record = json.loads(unit.partition(b"\n")[2])
        uid = attributes(record)["log.record.uid"]["stringValue"]
        stamp = o.Clock.stamp(int(record["timeUnixNano"]))
        assert enc.unit(builder.build_item(item, stamp, uid)) == unit


def test_an_encoder_without_a_builder_cannot_encode_ring_items():
    with pytest.raises(RuntimeError, match="event builder"):
        o.OtlpEncoder(False).units([record_item("x")])


def test_the_registry_knows_otlp():
    protocol = protocol_named("otlp")
    assert (protocol.default_path, protocol.auth, protocol.transport) == (
        "/v1/logs",
        "Bearer",
        "http",
    )
    assert isinstance(decoder_named("otlp-json", False), o.OtlpEncoder)


def test_the_body_is_an_export_logs_service_request():
    """The protobuf message parses it (ids as hex: OTLP JSON's one deviation, undone first)."""
    pytest.importorskip("opentelemetry.proto.collector.logs.v1.logs_service_pb2")
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    enc, _b = encoder({"service": "billing"})
    e = event(
        service="billing", n=2**40, f=0.25, l=[True, None], trace_id="ab" * 16, span_id="cd" * 8
    )
    doc = body_of(enc, [e, event(logger="other", message="two", service="billing")])
    for rl in doc["resourceLogs"]:
        for sl in rl["scopeLogs"]:
            for r in sl["logRecords"]:
                for name in ("traceId", "spanId"):
                    if name in r:
                        r[name] = base64.b64encode(bytes.fromhex(r[name])).decode()
    message = json_format.ParseDict(doc, ExportLogsServiceRequest())
    scope_logs = message.resource_logs[0].scope_logs
    record = scope_logs[0].log_records[0]
    assert record.time_unix_nano == STAMP_NANOS
    assert record.observed_time_unix_nano == OBSERVED
    assert record.severity_number == 9 and record.body.string_value == "hello"
    assert record.trace_id == bytes.fromhex("ab" * 16) and record.span_id == bytes.fromhex("cd" * 8)
    values = {a.key: a.value for a in record.attributes}
    assert values["n"].int_value == 2**40 and values["f"].double_value == 0.25
    assert values["code.line.number"].int_value == 42
    assert [v.bool_value for v in values["l"].array_value.values[:1]] == [True]
    assert [s.scope.name for s in scope_logs] == ["app", "other"]


# -- answers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (201, Verdict.DELIVERED),
        (413, Verdict.SPLIT),
        *((s, Verdict.RETRY) for s in (429, 502, 503, 504)),
        *((s, Verdict.HOLD) for s in (401, 403, 404, 301, 307)),
        *((s, Verdict.REJECT) for s in (400, 408, 409, 415, 422, 500, 501, 505)),
    ],
)
def test_statuses_follow_the_otlp_specification(status, verdict):
    assert o.verdict_of(status) is verdict
    assert o.OtlpReader().read(Answer(status), 10).verdict is verdict


def test_retry_after_is_read():
    outcome = o.OtlpReader().read(Answer(429, retry_after="7"), 10)
    assert (outcome.verdict, outcome.retry_after, outcome.kind) == (Verdict.RETRY, 7.0, "http-429")


def test_no_answer_is_retried():
    outcome = o.OtlpReader().read(Answer(None, error="refused", kind="refused"), 3)
    assert (outcome.verdict, outcome.kind) == (Verdict.RETRY, "refused")


def test_a_failures_status_message_is_the_reason():
    body = json.dumps({"code": 3, "message": "invalid timeUnixNano", "details": []})
    assert o.OtlpReader().read(Answer(400, body=body), 1).reason == "invalid timeUnixNano"
    assert o.OtlpReader().read(Answer(400, body="plain words"), 1).reason == "plain words"


@pytest.mark.parametrize("status", [400, 503])
def test_a_failure_whose_body_cannot_be_read_is_judged_by_its_status(status):
    deep = "[" * 200_000
    outcome = o.OtlpReader().read(Answer(status, body=deep), 3)
    assert (outcome.verdict, outcome.reason) == (o.verdict_of(status), deep)


@pytest.mark.parametrize(
    ("body", "count", "verdict", "rejected"),
    [
        ("", 10, Verdict.DELIVERED, 0),
        ("{}", 10, Verdict.DELIVERED, 0),
        ('{"partialSuccess":{}}', 10, Verdict.DELIVERED, 0),
        (
            '{"partialSuccess":{"rejectedLogRecords":"3","errorMessage":"too old"}}',
            10,
            Verdict.DELIVERED,
            3,
        ),
        ('{"partialSuccess":{"rejectedLogRecords":3}}', 10, Verdict.DELIVERED, 3),
        (
            '{"partialSuccess":{"rejectedLogRecords":"0","errorMessage":"a warning"}}',
            10,
            Verdict.DELIVERED,
            0,
        ),
        ('{"partialSuccess":{"rejectedLogRecords":"10"}}', 10, Verdict.REJECT, 0),
        ('{"partialSuccess":{"rejectedLogRecords":"99"}}', 10, Verdict.REJECT, 0),
        ('{"partialSuccess":{"rejectedLogRecords":"x"}}', 10, Verdict.DELIVERED, 0),
        ('{"partialSuccess":{"rejectedLogRecords":"-2"}}', 10, Verdict.DELIVERED, 0),
        ("\x0a\x00binary", 10, Verdict.DELIVERED, 0),
        # A 2xx whose count cannot be read: accepted, nothing counted rejected.
        ('{"partialSuccess":{"rejectedLogRecords":1e999}}', 10, Verdict.DELIVERED, 0),
        ('{"partialSuccess":{"rejectedLogRecords":Infinity}}', 10, Verdict.DELIVERED, 0),
        ('{"partialSuccess":{"rejectedLogRecords":-Infinity}}', 10, Verdict.DELIVERED, 0),
        ('{"partialSuccess":{"rejectedLogRecords":NaN}}', 10, Verdict.DELIVERED, 0),
        ('{"partialSuccess":{"rejectedLogRecords":2.5}}', 10, Verdict.DELIVERED, 0),
        ('{"partialSuccess":{"rejectedLogRecords":3.0}}', 10, Verdict.DELIVERED, 3),
        ('{"partialSuccess":{"rejectedLogRecords":-3.0}}', 10, Verdict.DELIVERED, 0),
        ('{"partialSuccess":{"rejectedLogRecords":true}}', 10, Verdict.DELIVERED, 0),
        ('{"partialSuccess":{"rejectedLogRecords":[3]}}', 10, Verdict.DELIVERED, 0),
        ('{"partialSuccess":{"rejectedLogRecords":{"n":3}}}', 10, Verdict.DELIVERED, 0),
        (  # more digits than int() reads
            '{"partialSuccess":{"rejectedLogRecords":"' + "9" * 5000 + '"}}',
            10,
            Verdict.DELIVERED,
            0,
        ),
        ("[" * 200_000, 10, Verdict.DELIVERED, 0),  # too deep to parse: RecursionError
        ('{"partialSuccess":' + "[" * 200_000, 10, Verdict.DELIVERED, 0),
    ],
)
def test_partial_success(body, count, verdict, rejected):
    outcome = o.OtlpReader().read(Answer(200, body=body), count)
    assert (outcome.verdict, outcome.rejected) == (verdict, rejected)
    if rejected:
        assert outcome.reason.startswith(f"partialSuccess: {rejected} of {count} log records")


def test_a_partial_successs_error_message_is_in_the_reason():
    body = '{"partialSuccess":{"rejectedLogRecords":"1","errorMessage":"record too old"}}'
    reason = o.OtlpReader().read(Answer(200, body=body), 4).reason
    assert reason == "partialSuccess: 1 of 4 log records rejected: record too old"


def test_many_events_in_one_pass():
    enc, _b = encoder()
    items = [record_item(f"m{i}") for i in range(100)]
    units = enc.units(items)
    doc = json.loads(enc.body(units)[0])
    records = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    assert [r["body"]["stringValue"] for r in records] == [f"m{i}" for i in range(100)]
    uids = [attributes(r)["log.record.uid"]["stringValue"] for r in records]
    assert len(set(uids)) == 100 and uids == sorted(uids)
    times = [int(r["timeUnixNano"]) for r in records]
    assert all(a <= b for a, b in itertools.pairwise(times))
