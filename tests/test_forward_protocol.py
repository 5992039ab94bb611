"""``protocol="forward"``'s pure pieces, from tables: the encoder and its decoder, the
message around a body, the size limits, the shared_key handshake's messages, what each
answer means, and the options. No network.

Facts from the forward protocol v1 specification, and from Fluent Bit's and Fluentd's
forward inputs: an entry is ``[time, record]``, EventTime is extension type 0 with
big-endian seconds and nanoseconds, a PackedForward message is ``[tag, entries, option]``,
and the digests are ``hex(sha512(salt + hostname + nonce + shared_key))``.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import struct
import time

import msgpack
import pytest

import logship
from logship.pure.event import EventBuilder
from logship.pure.options import build_options
from logship.pure.protocols import Answer, Verdict
from logship.pure.protocols import forward as fw
from logship.pure.protocols.registry import ENCODER_NAMES, decoder_named, protocol_named
from logship.ring import Item


def event(i: int = 0, **extra: object) -> dict[str, object]:
    return {
        "timestamp": "2026-11-24T10:00:00.123456Z",
        "level": "INFO",
        "message": f"event {i}",
        "uuid": f"u-{i}",
        **extra,
    }


def unpack_all(raw: bytes) -> list[object]:
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(raw)
    return list(unpacker)


# -- the encoder -------------------------------------------------------------------------


def test_an_entry_is_an_array_of_an_event_time_and_the_event():
    unit = fw.ForwardEncoder(True).unit(event(1))
    (entry,) = unpack_all(unit)
    when, record = entry
    assert isinstance(when, msgpack.ExtType) and when.code == 0  # not msgpack's Timestamp (-1)
    assert struct.unpack(">II", when.data) == (1795514400, 123_456_000)
    assert record == event(1)


@pytest.mark.parametrize(
    "stamp, seconds, nanos",
    [
        ("1970-01-01T00:00:00.000000Z", 0, 0),
        ("2026-11-24T10:00:00.000001Z", 1795514400, 1000),
        ("2026-11-24T10:00:59.999999Z", 1795514459, 999_999_000),
        ("2106-02-07T06:28:15.000000Z", 0xFFFFFFFF, 0),  # the last second EventTime holds
    ],
)
def test_the_event_time_is_the_events_timestamp_to_the_microsecond(stamp, seconds, nanos):
    assert fw.ForwardEncoder(True).event_time(stamp) == (seconds, nanos)


@pytest.mark.parametrize(
    "stamp",
    [
        None,
        17,
        "",
        "yesterday",
        "2026-11-24T10:00:00Z",
        "2026-13-24T10:00:00.123456Z",
        "2026-11-24T10:00:00.12345xZ",
        "2106-02-07T06:28:16.000000Z",
    ],
)
def test_an_unreadable_timestamp_takes_the_current_time_never_an_error(stamp):
    before = int(time.time())
    seconds, nanos = fw.ForwardEncoder(True).event_time(stamp)
    assert before <= seconds <= before + 5 and 0 <= nanos < 1_000_000_000


@pytest.mark.parametrize("compress", [True, False])
def test_a_body_is_the_entries_stream_and_reads_back_entry_for_entry(compress):
    enc = fw.ForwardEncoder(compress)
    units = [enc.unit(event(i, nested={"a": [1, 2]}, blob=b"\x00\xff")) for i in range(3)]
    body, raw_size = enc.body(units)
    raw = gzip.decompress(body) if compress else body
    assert raw == b"".join(units) and raw_size == len(raw)
    assert enc.units_of(body) == units  # byte for byte: a split resends the same entries
    assert enc.events_of(body) == [
        event(i, nested={"a": [1, 2]}, blob=b"\x00\xff") for i in range(3)
    ]
    assert enc.headers() == ({"Content-Encoding": "gzip"} if compress else {})


def test_values_msgpack_cannot_carry_are_replaced_not_raised():
    enc = fw.ForwardEncoder(False)
    odd = event(0, huge=2**70, cycle=None, keys={(1, 2): "tuple key"}, nan=float("nan"))
    (entry,) = unpack_all(enc.unit(odd))
    record = entry[1]
    assert record["huge"] == repr(2**70)
    assert record["message"] == "event 0"


def test_ring_items_become_entries_through_the_event_builder():
    record = logging.LogRecord("app", logging.INFO, __file__, 7, "hi %s", ("ada",), None)
    item = Item(0, 6, record, "hi ada", None, None, None, {"request_id": "r-1"}, None)
    enc = fw.ForwardEncoder(True, EventBuilder({"service": "billing"}))
    (unit,) = enc.units([item])
    ((when, rec),) = unpack_all(unit)
    assert rec["message"] == "hi ada" and rec["service"] == "billing" and rec["request_id"] == "r-1"
    seconds, nanos = struct.unpack(">II", when.data)
    assert abs(seconds + nanos / 1e9 - record.created) < 1e-6


def test_the_decoder_is_found_by_the_name_a_spilled_batch_records():
    assert "forward" in ENCODER_NAMES
    for compress in (True, False):
        units = [fw.ForwardEncoder(compress).unit(event(i)) for i in range(2)]
        body, _ = fw.ForwardEncoder(compress).body(units)
        assert decoder_named("forward", compress).events_of(body) == [event(0), event(1)]


@pytest.mark.parametrize(
    "body",
    [b"\x93\x01", msgpack.packb([1, 2, 3]) + msgpack.packb({"not": "an entry"})],
)
def test_a_body_that_is_no_entries_stream_raises_for_the_caller_to_count(body):
    # The pump counts such a spilled batch as corrupt; a dead letter says it was not written.
    enc = fw.ForwardEncoder(False)
    with pytest.raises(ValueError):
        enc.events_of(body)


# -- the message, and its limits -----------------------------------------------------------


@pytest.mark.parametrize("compressed", [True, False])
def test_the_message_is_packed_forward_with_the_chunk_and_size(compressed):
    body = b"\x1f\x8b entries"
    msg = msgpack.unpackb(fw.message("app.web", body, "k-1.0", 42, compressed), raw=False)
    option = {"chunk": "k-1.0", "size": 42}
    if compressed:
        option["compressed"] = "gzip"
    assert msg == ["app.web", body, option]
    # The entries go as bin: the type Fluent Bit and Fluentd read PackedForward from.
    assert fw.message("t", b"x", "c", 1, False)[:5] == b"\x93\xa1t\xc4\x01"


def test_the_inflated_size_of_a_gzip_body_is_read_from_its_trailer():
    for raw in (b"", b"a" * 10, b"x" * 7_000_000):
        assert fw.inflated_size(gzip.compress(raw), True) == len(raw)
    assert fw.inflated_size(b"plain", False) == 5


@pytest.mark.parametrize(
    "message_size, entries_size, count, too_large",
    [
        (100, 200, 3, False),
        (fw.MAX_MESSAGE_BYTES, fw.MAX_MESSAGE_BYTES, 9, False),
        (fw.MAX_MESSAGE_BYTES + 1, 10, 1, True),
        (1000, fw.MAX_MESSAGE_BYTES + 1, 1, True),  # small once gzipped, too large inflated
    ],
)
def test_a_message_or_its_inflated_entries_past_the_limit_is_too_large(
    message_size, entries_size, count, too_large
):
    problem = fw.size_problem(message_size, entries_size, count)
    assert (problem is not None) is too_large
    if too_large:
        assert "buffer_max_size" in problem and "one event" in problem


# -- the handshake -------------------------------------------------------------------------

NONCE, SALT, KEY = b"\x8f\x00nonce-16-bytes", b"0123abcd", b"s3cret"


def test_the_ping_carries_the_hostname_salt_and_digest_as_fluentd_checks_them():
    msg = msgpack.unpackb(fw.ping(NONCE, SALT, b"web-1", KEY), raw=True)
    expected = hashlib.sha512(SALT + b"web-1" + NONCE + KEY).hexdigest().encode()
    assert msg == [b"PING", b"web-1", SALT, expected, b"", b""]
    # Every field a str (Fluent Bit refuses a PING with any other type).
    assert all(
        0xA0 <= b <= 0xBF or b in (0xD9, 0xDA)
        for b in _field_types(fw.ping(NONCE, SALT, b"h", KEY))
    )


def _field_types(packed: bytes) -> list[int]:
    types, unpacker = [], msgpack.Unpacker(raw=True)
    unpacker.feed(packed[1:])  # past the array header
    offset = 1
    for _ in unpacker:
        types.append(packed[offset])
        offset = 1 + unpacker.tell()
    return types


def pong(accepted: object, reason: bytes, host: bytes, key: bytes = KEY) -> list[object]:
    return [
        b"PONG",
        accepted,
        reason,
        host,
        hashlib.sha512(SALT + host + NONCE + key).hexdigest().encode(),
    ]


@pytest.mark.parametrize(
    "msg, kind",
    [
        (pong(True, b"", b"fluentd"), None),
        (pong(False, b"shared_key mismatch", b""), "shared-key"),
        (pong(False, b"username/password mismatch", b""), "shared-key"),
        (pong(True, b"", b"fluentd", key=b"another"), "shared-key"),  # no proof of our key
        (pong(1, b"", b"fluentd"), "shared-key"),
        ([b"PONG", True], "not-forward"),
        ({b"ack": b"x"}, "not-forward"),
    ],
)
def test_what_a_pong_says(msg, kind):
    problem = fw.pong_problem(msg, NONCE, SALT, KEY)
    assert (problem and problem[0]) == kind


def test_a_refusing_pong_is_quoted():
    problem = fw.pong_problem(pong(False, b"shared_key mismatch", b""), NONCE, SALT, KEY)
    assert problem == ("shared-key", "the server refused the shared key (shared_key mismatch)")


@pytest.mark.parametrize(
    "msg, nonce",
    [
        ([b"HELO", {b"nonce": NONCE, b"auth": b"", b"keepalive": True}], NONCE),
        ((b"HELO", {b"nonce": NONCE}), NONCE),
        ([b"HELO", {b"auth": b""}], None),
        ([b"HELO"], None),
        ([b"PONG", {b"nonce": NONCE}], None),
        ({b"ack": b"x"}, None),
    ],
)
def test_the_nonce_of_a_helo(msg, nonce):
    assert fw.helo_nonce(msg) == nonce
    assert fw.is_helo(msg) is (isinstance(msg, (list, tuple)) and msg[0] == b"HELO")


# -- answers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, verdict, kind",
    [
        (Answer(None, headers={"ack": "k1"}), Verdict.DELIVERED, ""),
        (
            Answer(None, error="no ack of chunk k1 within 10 s", kind="no-ack"),
            Verdict.RETRY,
            "no-ack",
        ),
        (Answer(None, error="refused", kind="refused"), Verdict.RETRY, "refused"),
        (
            Answer(None, error="certificate verify failed", kind="tls-untrusted"),
            Verdict.RETRY,
            "tls-untrusted",
        ),
        (Answer(None, error="timed out", kind="timeout"), Verdict.RETRY, "timeout"),
        (
            Answer(None, error="closed after the PING", kind="shared-key"),
            Verdict.HOLD,
            "shared-key",
        ),
        (
            Answer(None, error="one event of 7000000 bytes", kind="too-large"),
            Verdict.SPLIT,
            "too-large",
        ),
        (Answer(None, error="answered 21", kind="not-forward"), Verdict.RETRY, "not-forward"),
        (Answer(None), Verdict.RETRY, "no-ack"),
        (Answer(None, error="an ack and an error", headers={"ack": "k1"}), Verdict.RETRY, "no-ack"),
    ],
)
def test_what_each_answer_means(answer, verdict, kind):
    outcome = fw.AckReader().read(answer, 5)
    assert (outcome.verdict, outcome.kind, outcome.parts) == (verdict, kind, ())
    if verdict is not Verdict.DELIVERED:
        assert outcome.reason


def test_the_protocol_is_registered_with_the_stream_transport():
    protocol = protocol_named("forward")
    assert (protocol.transport, protocol.default_path, protocol.auth) == ("stream", "", "")
    opts = build_options({"url": "tcp://127.0.0.1:24224", "protocol": "forward", "compress": False})
    assert protocol.encoder(opts, None).compress is False


# -- options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["tcp://127.0.0.1:24224", "tls://logs.internal:24224", "unix:///run/fluent.sock"]
)
def test_forward_takes_tcp_tls_and_unix_urls_and_a_tag(url):
    opts = build_options({"url": url, "protocol": "forward", "tag": "app.web"})
    assert opts.tag == "app.web"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"url": "https://h:24224"}, "tcp:// or tls:// or unix://"),
        ({"url": "tcp://h"}, "needs a port"),
        ({"url": "tcp://h:24224", "batch_max_bytes": 5 * 2**20}, "takes at most 4194304"),
        ({"url": "tcp://h:24224", "headers": {"X-A": "b"}}, "no option 'headers'"),
        ({"url": "tcp://h:24224", "encoding": "ndjson"}, "no option 'encoding'"),
        ({"url": "tcp://h:24224", "tag": ""}, "'tag' must not be empty"),
    ],
)
def test_forward_refuses_what_it_cannot_send_naming_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        build_options({"protocol": "forward", **options})


def test_tag_is_refused_for_another_protocol_and_the_cap_is_forwards_alone():
    with pytest.raises(ValueError, match="'tag' \\(it is for protocol 'forward'\\)"):
        logship.ShipHandler(url="http://127.0.0.1:9/app", tag="x")
    assert build_options({"url": "http://h/app", "batch_max_bytes": 8 * 2**20}).batch_max_bytes
