"""Wire encodings (SPEC section 2: ``encoding``, ``compress``) and the event schema
(SPEC section 3), checked on what a real collector on loopback receives.

Bodies are decoded here independently of the fault server's own decoder.
"""

from __future__ import annotations

import datetime
import gzip
import json
import os
import platform
import re
import socket
import sys
import threading
import time
import traceback
import uuid
from typing import Any

import msgpack
import pytest

from conftest import attach, check_identity
from faultserver import Request

CONTENT_TYPES = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "msgpack": "application/msgpack",
}

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def header(request: Request, name: str) -> str | None:
    for k, v in request.headers.items():
        if k.lower() == name.lower():
            return v
    return None


def _no_constants(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")  # NaN and Infinity are not JSON


def decode(request: Request, encoding: str, compress: bool) -> list[dict[str, Any]]:
    """Decode one request body, checking its framing for ``encoding`` and ``compress``."""
    wire = request.wire
    if compress:
        assert header(request, "Content-Encoding") == "gzip"
        assert wire[:2] == b"\x1f\x8b"  # really gzip, not just labelled so
        body = gzip.decompress(wire)
    else:
        assert header(request, "Content-Encoding") in (None, "identity")
        assert wire[:2] != b"\x1f\x8b"
        body = wire
    ctype = header(request, "Content-Type") or ""
    assert ctype.split(";")[0].strip() == CONTENT_TYPES[encoding]
    if encoding == "json":
        events = json.loads(body, parse_constant=_no_constants)
        assert isinstance(events, list)
    elif encoding == "ndjson":
        text = body.decode("utf-8")
        lines = text.split("\n")
        assert lines[-1] == ""  # every line ends with a newline
        events = [json.loads(line, parse_constant=_no_constants) for line in lines[:-1]]
    else:
        events = msgpack.unpackb(body, raw=False)
        assert isinstance(events, list)
    assert events and all(isinstance(e, dict) for e in events)
    return events


def received(server, encoding: str, compress: bool) -> list[dict[str, Any]]:
    with server.cond:
        reqs = list(server.requests)
    out: list[dict[str, Any]] = []
    for r in reqs:
        assert r.answered == 201
        out += decode(r, encoding, compress)
    return out


ENCODINGS = ["json", "ndjson", "msgpack"]
COMBINATIONS = [(e, c) for e in ENCODINGS for c in (True, False)]


@pytest.mark.parametrize(("encoding", "compress"), COMBINATIONS)
def test_encoding_and_compression_on_the_wire(server, make_handler, encoding, compress):
    h = make_handler(server.url(), encoding=encoding, compress=compress)
    log = attach(h)
    for i in range(30):
        log.info("event %d é ✓ 日本", i, extra={"i": i, "nested": {"list": [1, 2.5, None]}})
    assert h.flush(5)
    events = received(server, encoding, compress)
    assert len(events) == 30
    assert len({e["uuid"] for e in events}) == 30
    by_i = {e["i"]: e for e in events}
    assert sorted(by_i) == list(range(30))
    assert by_i[7]["message"] == "event 7 é ✓ 日本"
    assert by_i[7]["nested"] == {"list": [1, 2.5, None]}
    stats = h.stats()
    assert stats["shipped"] == 30
    check_identity(stats)


def test_every_core_field_has_the_right_shape(server, make_handler):
    h = make_handler(server.url(), fields={"service": "billing", "env": "test"})
    log = attach(h, "app.schema")
    before = time.time()
    here = sys._getframe().f_lineno
    log.warning("user %s signed in", "ada", extra={"request_id": "r-1"})
    after = time.time()
    assert h.flush(5)
    (event,) = received(server, "json", True)

    assert event["level"] == "WARNING"
    assert event["logger"] == "app.schema"
    assert event["message"] == "user ada signed in"
    assert event["hostname"] == socket.gethostname()
    assert event["kernel_version"] == platform.release()
    assert event["pid"] == os.getpid()
    assert event["thread"] == threading.current_thread().name
    assert event["module"] == "test_encodings"
    assert event["func"] == "test_every_core_field_has_the_right_shape"
    assert event["line"] == here + 1
    assert event["service"] == "billing" and event["env"] == "test"
    assert event["request_id"] == "r-1"
    assert "exception" not in event and "stack" not in event

    stamp = event["timestamp"]
    assert TIMESTAMP.match(stamp), stamp
    when = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    when = when.replace(tzinfo=datetime.timezone.utc).timestamp()
    assert before - 0.001 <= when <= after + 0.001

    u = uuid.UUID(event["uuid"])
    assert str(u) == event["uuid"]  # canonical, lower-case 8-4-4-4-12
    assert u.version == 7 and u.variant == uuid.RFC_4122
    unix_ms = u.int >> 80
    assert abs(unix_ms - when * 1000) <= 2, (unix_ms, when)


def test_uuids_are_unique_and_time_ordered(server, make_handler):
    h = make_handler(server.url(), encoding="msgpack")
    log = attach(h)
    for i in range(500):
        log.info("e", extra={"i": i})
    assert h.flush(5)
    events = received(server, "msgpack", True)
    assert len(events) == 500
    in_emission_order = [e["uuid"] for e in sorted(events, key=lambda e: e["i"])]
    assert len(set(in_emission_order)) == 500
    assert in_emission_order == sorted(in_emission_order)
    assert all(uuid.UUID(u).version == 7 for u in in_emission_order)


def _inner() -> None:
    raise ValueError("inner boom")


def _outer() -> None:
    try:
        _inner()
    except ValueError as e:
        raise RuntimeError("outer boom") from e


def test_exception_carries_the_whole_traceback(server, make_handler):
    h = make_handler(server.url())
    log = attach(h)
    try:
        _outer()
    except RuntimeError:
        expected = traceback.format_exc()
        log.exception("it failed")
    assert h.flush(5)
    (event,) = received(server, "json", True)  # a multi-line traceback stays one event
    assert event["level"] == "ERROR"
    assert event["message"] == "it failed"
    text = event["exception"]
    assert isinstance(text, str)
    assert text.rstrip("\n") == expected.rstrip("\n")
    for part in (
        "Traceback (most recent call last):",
        "in _inner",
        "ValueError: inner boom",
        "The above exception was the direct cause of the following exception:",
        "in _outer",
        "RuntimeError: outer boom",
    ):
        assert part in text


def test_stack_info_is_sent_as_stack(server, make_handler):
    h = make_handler(server.url(), encoding="ndjson")
    log = attach(h)
    log.info("where am I", stack_info=True)
    assert h.flush(5)
    (event,) = received(server, "ndjson", True)
    assert event["message"] == "where am I"
    assert event["stack"].startswith("Stack (most recent call last):")
    assert "test_stack_info_is_sent_as_stack" in event["stack"]
    assert "exception" not in event


def test_extra_never_overwrites_core_fields(server, make_handler):
    h = make_handler(server.url())
    log = attach(h, "app.collide")
    hostile = {
        "hostname": "evil-host",
        "uuid": "not-a-uuid",
        "kernel_version": "0.0-fake",
        "timestamp": "yesterday",
        "level": "FAKE",
        "logger": "fake.logger",
        "pid": -1,
        "func": "fake_func",
        "line": -1,
        "request_id": "r-9",
    }
    log.info("collide", extra=hostile)
    assert h.flush(5)
    (event,) = received(server, "json", True)
    assert event["hostname"] == socket.gethostname()
    assert uuid.UUID(event["uuid"]).version == 7
    assert event["kernel_version"] == platform.release()
    assert TIMESTAMP.match(event["timestamp"])
    assert event["level"] == "INFO"
    assert event["logger"] == "app.collide"
    assert event["pid"] == os.getpid()
    assert event["func"] == "test_extra_never_overwrites_core_fields"
    assert event["line"] > 0
    assert event["message"] == "collide"
    assert event["request_id"] == "r-9"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_multi_line_message_stays_one_event(server, make_handler, encoding):
    h = make_handler(server.url(), encoding=encoding)
    log = attach(h)
    message = "first line\nsecond line\r\n\tthird line\n"
    log.info(message)
    log.info("next")
    assert h.flush(5)
    events = received(server, encoding, True)
    assert [e["message"] for e in events] == [message, "next"]


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque 42>"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_values_the_wire_cannot_carry_are_sent_as_repr(server, make_handler, encoding):
    h = make_handler(server.url(), encoding=encoding)
    log = attach(h)
    log.info("odd values", extra={"obj": Opaque(), "huge": 2**70, "nan": float("nan")})
    log.info("plain", extra={"n": 1})
    assert h.flush(5)
    events = received(server, encoding, True)  # JSON bodies are checked for NaN tokens
    assert [e["message"] for e in events] == ["odd values", "plain"]
    odd = events[0]
    assert odd["obj"] == "<Opaque 42>"
    assert odd["huge"] in (2**70, str(2**70))
    assert odd["hostname"] == socket.gethostname()
    assert events[1]["n"] == 1
    stats = h.stats()
    assert stats["shipped"] == 2 and stats["dropped"] == 0
    check_identity(stats)


@pytest.mark.parametrize("encoding", ["json", "ndjson", "msgpack"])
def test_strings_utf8_cannot_carry_lose_nothing(server, make_handler, encoding):
    # os.fsdecode() of an undecodable file name gives a lone surrogate: common in logs.
    name = os.fsdecode(b"bad-\xff-name")
    h = make_handler(server.url(), encoding=encoding, shutdown_timeout=0.5)
    log = attach(h)
    log.info("before")
    log.info("file %s", name)
    log.info("after", extra={"path": name})
    assert h.flush(1)
    events = received(server, encoding, True)
    assert len(events) == 3 and len({e["uuid"] for e in events}) == 3
    assert events[0]["message"] == "before" and events[2]["message"] == "after"
    assert "bad-" in events[1]["message"] and "-name" in events[1]["message"]
    assert "bad-" in events[2]["path"]
    log.info("later")
    assert h.flush(1)  # nothing is wedged
    stats = h.stats()
    assert stats["shipped"] == 4 and stats["pending"] == 0 and stats["dropped"] == 0
    check_identity(stats)
