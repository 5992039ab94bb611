"""``protocol="splunk"`` without a network: the HEC envelope from tables, and HEC's answers.

Facts from Splunk's documentation ("Format events for HTTP Event Collector",
"Troubleshoot HTTP Event Collector"): envelopes are JSON objects one after
another; ``time`` is epoch seconds with a fraction; ``index`` must be one the
token allows; error answers carry ``code`` and, for a request read event by
event, ``invalid-event-number`` (the zero-based event it stopped at; the events
before it were taken).
"""

from __future__ import annotations

import gzip
import json
import logging
from typing import Any

import pytest

from logship.pure.event import EventBuilder
from logship.pure.options import build_options
from logship.pure.protocols import Answer, Outcome, Verdict
from logship.pure.protocols.registry import decoder_named, protocol_named
from logship.pure.protocols.splunk import HecReader, SplunkEncoder, hec_error
from logship.ring import Item

STAMP = "2025-11-24T16:00:00.123456Z"  # 1764000000.123456


def event(**fields: Any) -> dict[str, Any]:
    base = {
        "timestamp": STAMP,
        "level": "INFO",
        "logger": "app.billing",
        "message": "paid",
        "hostname": "web-1",
        "uuid": "0190b0d2-0000-7000-8000-000000000001",
    }
    return {**base, **fields}


def envelopes(raw: bytes) -> list[dict[str, Any]]:
    """Concatenated JSON objects, read as HEC reads them: one after another."""
    decoder, text, at, out = json.JSONDecoder(), raw.decode(), 0, []
    while at < len(text):
        obj, at = decoder.raw_decode(text, at)
        out.append(obj)
    return out


def test_the_envelope_carries_time_host_source_sourcetype_and_the_event():
    unit = SplunkEncoder(False).unit(event())
    (env,) = envelopes(unit)
    assert list(env) == ["time", "host", "source", "sourcetype", "event"]  # no index: the token's
    assert unit.startswith(b'{"time":1764000000.123456,')  # seconds with all six digits
    assert env["host"] == "web-1"
    assert env["source"] == "app.billing"  # the logger's name
    assert env["sourcetype"] == "_json"
    assert env["event"] == event()  # the whole event, its fields unchanged


def test_the_options_set_source_sourcetype_and_index():
    enc = SplunkEncoder(False, source="billing", sourcetype="app:json", index="payments")
    (env,) = envelopes(enc.unit(event()))
    assert (env["source"], env["sourcetype"], env["index"]) == ("billing", "app:json", "payments")


@pytest.mark.parametrize(
    "stamp, text",
    [
        ("1970-01-01T00:00:00.000001Z", b'"time":0.000001,'),
        ("2025-11-24T16:00:00.000000Z", b'"time":1764000000.000000,'),
        ("2025-11-24T17:00:00.5+01:00", b'"time":1764000000.500000,'),  # another encoder's form
    ],
)
def test_time_is_epoch_seconds_with_microseconds(stamp, text):
    assert text in SplunkEncoder(False).unit(event(timestamp=stamp))


@pytest.mark.parametrize("stamp", ["yesterday", None, 17, "2025-11-24T16:00:00"])
def test_an_event_without_a_usable_time_goes_without_one(stamp):
    # HEC then stamps it with the time it arrives: better than a wrong time
    (env,) = envelopes(SplunkEncoder(False).unit(event(timestamp=stamp)))
    assert "time" not in env and env["event"]["timestamp"] == stamp


def test_odd_values_are_carried_never_raised():
    odd = event(hostname="hôte", logger="app", ratio=float("nan"), obj=object(), text="\ud800")
    (env,) = envelopes(SplunkEncoder(False).unit(odd))
    assert env["host"] == "hôte"
    assert env["event"]["ratio"] == "nan" and env["event"]["obj"].startswith("<object")
    assert env["event"]["text"] == "\ud800"


def test_a_body_is_the_envelopes_one_after_another_and_reads_back_exactly():
    enc = SplunkEncoder(True)
    units = [enc.unit(event(message=f"m{i}", uuid=str(i))) for i in range(3)]
    body, raw_size = enc.body(units)
    raw = gzip.decompress(body)
    assert raw == b"".join(units) and raw_size == len(raw)
    assert [e["event"]["message"] for e in envelopes(raw)] == ["m0", "m1", "m2"]
    assert enc.units_of(body) == units  # the same bytes, in order: per-event answers index them
    assert [e["message"] for e in enc.events_of(body)] == ["m0", "m1", "m2"]
    assert enc.headers() == {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    assert SplunkEncoder(False).headers() == {"Content-Type": "application/json"}


def test_units_of_keeps_the_envelopes_of_other_options_as_they_were():
    spilled = SplunkEncoder(False, index="old").unit(event())
    assert SplunkEncoder(False, index="new").units_of(spilled) == [spilled]


def test_the_decoder_registered_for_spilled_batches_reads_them():
    enc = SplunkEncoder(True, index="main")
    body, _ = enc.body([enc.unit(event())])
    assert decoder_named("splunk", True).events_of(body) == [event()]


def test_events_of_a_bare_string_event_makes_it_the_message():
    body = b'{"event":"plain text"} {"event":{"a":1}}\n'
    assert SplunkEncoder(False).events_of(body) == [{"message": "plain text"}, {"a": 1}]


def test_ring_items_are_built_into_envelopes():
    builder = EventBuilder({"service": "billing"})
    record = logging.LogRecord("app", logging.WARNING, __file__, 7, "low %d", (3,), None)
    item = Item(0, 5, record, "low 3", None, None, None, None, None)
    (env,) = envelopes(SplunkEncoder(False, builder).units([item])[0])
    assert env["source"] == "app" and env["host"] == builder.hostname
    assert env["event"]["message"] == "low 3" and env["event"]["service"] == "billing"
    ts = env["event"]["timestamp"]
    assert f"{env['time']:.6f}".split(".")[1] == ts[20:26]  # the same microseconds


def test_the_protocol_takes_its_options():
    opts = build_options(
        {"url": "http://h:8088", "protocol": "splunk", "index": "ix", "source": "s"}
    )
    proto = protocol_named("splunk")
    assert (proto.default_path, proto.auth, proto.transport) == (
        "/services/collector/event",
        "Splunk",
        "http",
    )
    (env,) = envelopes(proto.encoder(opts, None).unit(event()))
    assert (env["index"], env["source"], env["sourcetype"]) == ("ix", "s", "_json")


@pytest.mark.parametrize("option", ["labels", "tag"])
def test_options_of_other_protocols_are_refused(option):
    value = ["level"] if option == "labels" else "t"
    with pytest.raises(ValueError, match=f"'{option}' \\(it is for protocol"):
        build_options({"url": "http://h:8088", "protocol": "splunk", option: value})


# -- answers ---------------------------------------------------------------------------


def hec(status: int, body: dict[str, Any] | str = "", retry_after: str | None = None) -> Answer:
    text = body if isinstance(body, str) else json.dumps(body)
    return Answer(status, retry_after=retry_after, body=text)


BAD = {"text": "Invalid data format", "code": 6}
BUSY = {"text": "Server is busy", "code": 9}
D, J, R, H, S = Verdict.DELIVERED, Verdict.REJECT, Verdict.RETRY, Verdict.HOLD, Verdict.SPLIT


@pytest.mark.parametrize(
    "answer, verdict",
    [
        (hec(200, {"text": "Success", "code": 0}), D),
        (hec(401, {"text": "Token is required", "code": 2}), H),
        (hec(401, {"text": "Invalid authorization", "code": 3}), H),
        (hec(403, {"text": "Invalid token", "code": 4}), H),
        (hec(403, {"text": "Token disabled", "code": 1}), H),
        (hec(400, {"text": "No data", "code": 5}), J),
        (hec(400, {"text": "Data channel is missing", "code": 10}), J),
        (hec(400, BAD), J),  # no event number: the whole request was refused
        (hec(500, {"text": "Internal server error", "code": 8}), R),
        (hec(503, BUSY), R),
        (hec(413, "Content body too large"), S),
        (hec(404, "not found"), H),
        (Answer(None, error="refused", kind="refused"), R),
    ],
)
def test_a_status_decides_for_the_whole_batch(answer, verdict):
    outcome = HecReader().read(answer, 5)
    assert outcome.verdict is verdict and outcome.parts == ()


def test_busy_honours_retry_after():
    outcome = HecReader().read(hec(503, BUSY, retry_after="7"), 3)
    assert outcome.verdict is R and outcome.retry_after == 7.0 and outcome.kind == "http-503"


def parts(outcome: Outcome) -> list[tuple[Verdict, tuple[int, ...]]]:
    return list(outcome.parts)


def test_invalid_event_number_takes_those_before_rejects_it_and_resends_the_rest():
    outcome = HecReader().read(hec(400, {**BAD, "invalid-event-number": 2}), 5)
    assert parts(outcome) == [(D, (0, 1)), (J, (2,)), (R, (3, 4))]
    assert outcome.verdict is R  # the rest waits out a back-off
    assert outcome.kind == "http-400" and "Invalid data format" in outcome.reason


@pytest.mark.parametrize(
    "number, count, expected",
    [
        (0, 3, [(J, (0,)), (R, (1, 2))]),
        (2, 3, [(D, (0, 1)), (J, (2,))]),
        (0, 1, []),  # the one event: the status's verdict (reject) for the batch
        (3, 3, []),  # out of range: not an event of this batch
        (-1, 3, []),
    ],
)
def test_invalid_event_number_at_the_edges(number, count, expected):
    outcome = HecReader().read(hec(400, {**BAD, "invalid-event-number": number}), count)
    assert parts(outcome) == expected
    if not expected:
        assert outcome.verdict is J


def test_an_incorrect_index_rejects_every_event_from_it_on():
    # every event of a batch names the same index: none after N would pass either
    body = {"text": "Incorrect index", "code": 7, "invalid-event-number": 1}
    assert parts(HecReader().read(hec(400, body), 4)) == [(D, (0,)), (J, (1, 2, 3))]
    body["invalid-event-number"] = 0
    outcome = HecReader().read(hec(400, body), 4)
    assert outcome.verdict is J and outcome.parts == ()  # one request, not one per event


def test_busy_part_way_takes_those_before_and_retries_the_rest():
    outcome = HecReader().read(hec(503, {**BUSY, "invalid-event-number": 2}, "3"), 4)
    assert parts(outcome) == [(D, (0, 1)), (R, (2, 3))]
    assert outcome.retry_after == 3.0
    outcome = HecReader().read(hec(503, {**BUSY, "invalid-event-number": 0}), 4)
    assert outcome.verdict is R and outcome.parts == ()


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not json",
        "[1]",
        '{"code": "6", "invalid-event-number": "1"}',
        '{"code":6}',
        "[" * 200_000,  # too deep to parse: RecursionError
        '{"code":6,"invalid-event-number":' + "[" * 200_000,
        '{"code":6,"invalid-event-number":' + "9" * 5000 + "}",  # past int's digit limit
    ],
)
@pytest.mark.parametrize(("status", "verdict"), [(400, J), (503, R)])
def test_answers_without_a_usable_event_number_are_judged_by_status(body, status, verdict):
    outcome = HecReader().read(Answer(status, body=body), 3)
    assert outcome.verdict is verdict and outcome.parts == ()


def test_hec_error_reads_code_and_event_number():
    assert hec_error('{"text":"x","code":6,"invalid-event-number":4}') == (6, 4)
    assert hec_error('{"code":true,"invalid-event-number":1.5}') == (None, None)
    assert hec_error("<html>") == (None, None)
