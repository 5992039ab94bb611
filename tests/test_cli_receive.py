"""``logship receive``: the Receiver class over real sockets, and the command in a subprocess."""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

import logship
from logship.cli import main
from logship.cli.receive import Receiver
from logship.cli.show import echo_line, ndjson_line, printable

from conftest import attach
from receiving import address, answer, connect, make_events, ndjson, post, request

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


# -- every encoding ---------------------------------------------------------------

EVENTS = make_events(3)


FORMS = {
    "json-array": ("application/json", json.dumps(EVENTS).encode(), EVENTS),
    "json-object": ("application/json", json.dumps(EVENTS[0]).encode(), EVENTS[:1]),
    "json-lines": ("application/json", ndjson(EVENTS), EVENTS),
    "json-charset": ("application/json; charset=utf-8", json.dumps(EVENTS).encode(), EVENTS),
    "ndjson": ("application/x-ndjson", ndjson(EVENTS), EVENTS),
    "ndjson-crlf-blank": (
        "application/x-ndjson",
        b"\r\n".join(json.dumps(e).encode() for e in EVENTS) + b"\r\n\r\n",
        EVENTS,
    ),
    "msgpack-array": ("application/msgpack", msgpack.packb(EVENTS), EVENTS),
    "x-msgpack-array": ("application/x-msgpack", msgpack.packb(EVENTS), EVENTS),
    "msgpack-map": ("application/msgpack", msgpack.packb(EVENTS[0]), EVENTS[:1]),
    "msgpack-concatenated": (
        "application/msgpack",
        b"".join(msgpack.packb(e) for e in EVENTS),
        EVENTS,
    ),
}


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("form", sorted(FORMS))
def test_decodes_every_encoding(receiver: Receiver, form: str, gzipped: bool) -> None:
    content_type, body, expected = FORMS[form]
    wire = gzip.compress(body) if gzipped else body
    status, data, headers = request(
        receiver.endpoint("/app"),
        body=wire,
        headers={
            "Content-Type": content_type,
            **({"Content-Encoding": "gzip"} if gzipped else {}),
        },
    )
    assert (status, data, headers["Content-Length"]) == (201, b"", "0")
    assert receiver.events() == expected
    n = len(expected)
    assert receiver.counts() == {
        "events": n,
        "unique": n,
        "duplicates": 0,
        "requests": 1,
        "bad_requests": 0,
        "bytes": len(wire),
    }


def test_concatenated_gzip_members(receiver: Receiver) -> None:
    body = gzip.compress(ndjson(EVENTS[:2])) + gzip.compress(ndjson(EVENTS[2:]))
    assert post(receiver.url, body, "application/x-ndjson", "gzip") == (201, b"")
    assert receiver.events() == EVENTS


def test_chunked_body(receiver: Receiver) -> None:
    conn = connect(receiver.url)
    try:
        body = json.dumps(EVENTS).encode()
        conn.request(
            "POST",
            "/chunked",
            body=iter([body[:10], body[10:]]),
            headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
            encode_chunked=True,
        )
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (201, b"")
    finally:
        conn.close()
    assert receiver.events() == EVENTS


@pytest.mark.parametrize("encoding", ["json", "ndjson", "msgpack"])
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_shiphandler_delivers_to_it(
    receiver: Receiver, make_handler: Any, encoding: str, compress: bool
) -> None:
    handler = make_handler(receiver.endpoint("/app"), encoding=encoding, compress=compress)
    log = attach(handler, "app.receive")
    for i in range(20):
        log.info("line %d\nsecond line", i, extra={"i": i})
    try:
        int("not a number")
    except ValueError:
        log.exception("it failed")
    assert handler.flush(10)
    assert receiver.wait_for(21, 10)
    events = receiver.events()
    assert [e["message"] for e in events[:20]] == [f"line {i}\nsecond line" for i in range(20)]
    assert [e["i"] for e in events[:20]] == list(range(20))
    assert "ValueError: invalid literal" in events[20]["exception"]
    counts = receiver.counts()
    assert counts["unique"] == 21 and counts["bad_requests"] == 0
    keys = receiver.idempotency_keys()
    assert len(keys) == counts["requests"] and all(keys)


# -- refusals ---------------------------------------------------------------------

_MAP = msgpack.packb(EVENTS[0])

BAD = {
    "malformed-json": (b'{"a": ', "application/json", None, "malformed JSON"),
    "json-scalar": (b"42", "application/json", None, "must be an object"),
    "json-string-item": (b'["x"]', "application/json", None, "must be an object"),
    "json-mixed-items": (b'[{"a": 1}, 2]', "application/json", None, "must be an object"),
    "json-bad-utf8": (b'{"a": "\xff"}', "application/json", None, "malformed JSON"),
    "ndjson-bad-line": (b'{"a": 1}\n{nope\n', "application/x-ndjson", None, "line 2"),
    "ndjson-scalar-line": (b'{"a": 1}\n7\n', "application/x-ndjson", None, "must be an object"),
    "msgpack-garbage": (b"\xc1", "application/msgpack", None, "malformed msgpack"),
    "msgpack-truncated": (_MAP + _MAP[:-1], "application/msgpack", None, "malformed msgpack"),
    "msgpack-scalar": (msgpack.packb(7), "application/msgpack", None, "must be an object"),
    "text-plain": (b'{"a": 1}', "text/plain", None, "Content-Type"),
    "form": (b"a=1", "application/x-www-form-urlencoded", None, "Content-Type"),
    "no-content-type": (b'{"a": 1}', None, None, "missing Content-Type"),
    "empty": (b"", "application/json", None, "no payload"),
    "blank": (b" \n ", "application/x-ndjson", None, "no payload"),
    "empty-gzip": (gzip.compress(b""), "application/json", "gzip", "no payload"),
    "deflate": (b'{"a": 1}', "application/json", "deflate", "Content-Encoding"),
    "zstd": (b'{"a": 1}', "application/json", "zstd", "Content-Encoding"),
    "not-gzip": (b'{"a": 1}', "application/json", "gzip", "malformed gzip"),
    "truncated-gzip": (gzip.compress(b'{"a": 1}')[:-6], "application/json", "gzip", "gzip"),
    # Python's int() refuses more than 4,300 digits: a refusal, never a dropped connection.
    "json-huge-number": (b'{"a": ' + b"9" * 5000 + b"}", "application/json", None, "malformed"),
    "json-huge-number-in-array": (
        b'[{"a": ' + b"9" * 5000 + b"}]",
        "application/json",
        None,
        "malformed",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_refuses_bad_requests(receiver: Receiver, case: str) -> None:
    body, content_type, encoding, reason = BAD[case]
    status, data, headers = request(
        receiver.url,
        body=body,
        headers={
            **({"Content-Type": content_type} if content_type else {}),
            **({"Content-Encoding": encoding} if encoding else {}),
        },
    )
    assert status == 400
    assert headers["Content-Type"].startswith("text/plain")
    assert reason in data.decode()
    assert receiver.events() == []
    assert receiver.idempotency_keys() == []
    assert receiver.counts() == dict(
        events=0, unique=0, duplicates=0, requests=0, bad_requests=1, bytes=0
    )


def test_a_bad_request_keeps_the_connection(receiver: Receiver) -> None:
    conn = connect(receiver.url)
    try:
        answers = []
        for body in (b"{oops", json.dumps(EVENTS).encode()):
            conn.request("POST", "/app", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            answers.append(resp.status)
            sock = conn.sock
        assert answers == [400, 201]
        assert sock is conn.sock  # same connection: keep-alive survived the 400
    finally:
        conn.close()
    assert receiver.counts()["bad_requests"] == 1 and receiver.counts()["unique"] == 3


def test_too_large_a_body_is_refused_without_reading_it(receiver: Receiver) -> None:
    conn = connect(receiver.url)
    try:
        conn.putrequest("POST", "/app")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(10**12))
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 413 and resp.headers["Connection"] == "close"
        resp.read()
    finally:
        conn.close()
    assert receiver.counts()["bad_requests"] == 1


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", "Basic c2VjcmV0", "Bearer", "Bearer secret-and-more"],
)
def test_token_is_required(authorization: str | None) -> None:
    with Receiver(token="secret") as r:
        headers = {"Authorization": authorization} if authorization else {}
        body = json.dumps(EVENTS).encode()
        status, data, answer = request(
            r.url, body=body, headers={"Content-Type": "application/json", **headers}
        )
        assert status == 401 and answer["WWW-Authenticate"] == "Bearer"
        assert b"token" in data
        assert post(r.url, body, Authorization="Bearer secret") == (201, b"")
        assert post(r.url, body, Authorization="bearer secret") == (201, b"")
        counts = r.counts()
    assert counts["bad_requests"] == 1 and counts["requests"] == 2 and counts["unique"] == 3


# -- counts and what is kept ------------------------------------------------------


def test_stats_endpoint(receiver: Receiver) -> None:
    assert post(receiver.url, json.dumps(EVENTS).encode())[0] == 201
    assert post(receiver.url, b"[1]")[0] == 400
    status, data, headers = request(receiver.url + "/_logship/stats?x=1", method="GET")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(data) == receiver.counts()
    assert json.loads(data)["bad_requests"] == 1 and json.loads(data)["events"] == 3
    assert request(receiver.url + "/elsewhere", method="GET")[0] == 404


def test_duplicates_are_counted_by_uuid(receiver: Receiver) -> None:
    batch = json.dumps(EVENTS).encode()
    no_uuid = json.dumps([{"message": "anonymous"}]).encode()
    for body in (batch, batch, no_uuid, no_uuid, json.dumps(make_events(2, 2)).encode()):
        assert post(receiver.url, body)[0] == 201
    assert receiver.counts() == {
        "events": 10,
        "unique": 6,  # uuid-0..3 and the two anonymous events
        "duplicates": 4,  # uuid-0..2 again, and uuid-2 a third time
        "requests": 5,
        "bad_requests": 0,
        "bytes": 2 * len(batch) + 2 * len(no_uuid) + len(json.dumps(make_events(2, 2))),
    }
    assert len(receiver.events()) == 10


def test_idempotency_keys_in_order(receiver: Receiver) -> None:
    body = json.dumps(EVENTS).encode()
    post(receiver.url, body, Idempotency_Key="k1")
    post(receiver.url, b"nope", Idempotency_Key="k-bad")
    post(receiver.url, body)
    post(receiver.url, body, Idempotency_Key="k1")
    assert receiver.idempotency_keys() == ["k1", "", "k1"]


def test_output_appends_ndjson(tmp_path: Any) -> None:
    out = tmp_path / "events.ndjson"
    out.write_text('{"earlier": true}\n')
    packed = {"message": "from msgpack", "raw": b"\x00bytes", "uuid": "m-1"}
    with Receiver(output=str(out)) as r:
        assert post(r.url, json.dumps(EVENTS).encode())[0] == 201
        # The file is flushed per request: readable while the receiver runs.
        assert len(out.read_text().splitlines()) == 4
        assert post(r.url, msgpack.packb(packed), "application/msgpack")[0] == 201
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0] == {"earlier": True}
    assert lines[1:4] == EVENTS
    assert lines[4] == {"message": "from msgpack", "raw": "\x00bytes", "uuid": "m-1"}


def test_echo_prints_one_line_per_event(receiver: Receiver) -> None:
    echo = io.StringIO()
    events = [
        {"timestamp": "T1", "level": "INFO", "logger": "app", "message": "hello"},
        {
            "timestamp": "T2",
            "level": "ERROR",
            "logger": "app.db",
            "message": "two\nlines",
            "exception": "Traceback ...",
        },
        {"message": "bare"},
    ]
    with Receiver(echo=echo) as r:
        assert post(r.url, json.dumps(events).encode())[0] == 201
    assert echo.getvalue().splitlines() == [
        "T1 INFO app: hello",
        "T2 ERROR app.db: two\\nlines [exception]",
        "- - -: bare",
    ]
    assert echo_line(events[1]).endswith(" [exception]")


def test_keep_events_false_still_counts() -> None:
    with Receiver(keep_events=False) as r:
        post(r.url, json.dumps(EVENTS).encode(), Idempotency_Key="k1")
        post(r.url, json.dumps(EVENTS).encode(), Idempotency_Key="k2")
        assert r.counts()["duplicates"] == 3
        assert r.events() == [] and r.idempotency_keys() == []  # nothing grows per request


# Each field a terminal would act on: clear the screen, colour, retitle the
# window, a line feed, a Unicode line separator, a right-to-left override.
HOSTILE = {
    "timestamp": "\x1b[2J2026",
    "level": "\x1b[31mERROR",
    "logger": "app\nFAKE 2026 INFO other: forged",
    "message": "hi\x1b]0;owned\x07 \u2028 \u202eevil\r\t\x7f\x9b",
}


def test_echo_escapes_what_a_terminal_would_obey() -> None:
    echo = io.StringIO()
    odd = {"timestamp": 17, "level": None, "logger": ["a\x1b"], "message": {"k": "\x00"}}
    lone_surrogate = b'{"message": "half \\ud800 a pair", "uuid": "s-1"}'
    with Receiver(echo=echo) as r:
        assert post(r.url, json.dumps([HOSTILE, odd]).encode()) == (201, b"")
        assert post(r.url, lone_surrogate) == (201, b"")
    lines = echo.getvalue().split("\n")
    assert lines == [
        "\\x1b[2J2026 \\x1b[31mERROR app\\nFAKE 2026 INFO other: forged: "
        "hi\\x1b]0;owned\\x07 \\u2028 \\u202eevil\\r\\t\\x7f\\x9b",
        "17 None ['a\\x1b']: {'k': '\\x00'}",
        "- - -: half \\ud800 a pair",
        "",
    ]
    assert all(line.isprintable() for line in lines)
    assert printable("plain text, ünïcödé, tabs\tand\\backslashes") == (
        "plain text, ünïcödé, tabs\\tand\\backslashes"
    )


def test_a_content_length_of_many_digits_is_read_as_its_number(receiver: Receiver) -> None:
    body = b'{"message": "zeros"}'
    json_type = {"Content-Type": "application/json"}
    zeros = {**json_type, "Content-Length": "0" * 5000 + str(len(body))}
    assert request(receiver.url, body=body, headers=zeros)[0] == 201
    nines = {**json_type, "Content-Length": "9" * 5000}
    status, said, _ = request(receiver.url, headers=nines)
    assert status == 413 and b"a 5000-digit number of bytes" in said
    assert receiver.counts()["events"] == 1 and receiver.counts()["bad_requests"] == 1


def test_an_echoed_line_is_bounded_whatever_the_event_holds() -> None:
    echo = io.StringIO()
    huge = {"timestamp": "t" * 10_000, "level": "\x01" * 10_000, "message": "\x01" * 3_000_000}
    with Receiver(echo=echo) as r:
        assert post(r.url, json.dumps([huge, {"message": "next"}]).encode())[0] == 201
    first, second = echo.getvalue().splitlines()
    assert len(first) < 5_000 and first.endswith("…") and first.isprintable()
    assert second == "- - -: next"


def test_a_console_that_cannot_show_a_character_goes_on_printing() -> None:
    echo = io.TextIOWrapper(io.BytesIO(), encoding="latin-1")
    with Receiver(echo=echo) as r:
        assert post(r.url, json.dumps([{"message": "中文 é"}]).encode())[0] == 201
        assert post(r.url, json.dumps([{"message": "after"}]).encode())[0] == 201
        echo.flush()
        shown = echo.buffer.getvalue().decode("latin-1").splitlines()  # type: ignore[attr-defined]
    assert shown == ["- - -: \\u4e2d\\u6587 é", "- - -: after"]


def test_echo_marks_duplicates() -> None:
    echo = io.StringIO()
    with Receiver(echo=echo) as r:
        assert post(r.url, json.dumps(EVENTS[:2]).encode())[0] == 201
        assert post(r.url, json.dumps(EVENTS[1:] + EVENTS[2:]).encode())[0] == 201
        assert post(r.url, json.dumps([{"message": "no uuid"}] * 2).encode())[0] == 201
    assert echo.getvalue().splitlines() == [
        "2026-11-24T10:00:00.000000Z INFO test: event 0",
        "2026-11-24T10:00:00.000001Z INFO test: event 1",
        "2026-11-24T10:00:00.000001Z INFO test: event 1 [duplicate]",
        "2026-11-24T10:00:00.000002Z INFO test: event 2",
        "2026-11-24T10:00:00.000002Z INFO test: event 2 [duplicate]",
        "- - -: no uuid",
        "- - -: no uuid",
    ]


def test_duplicates_are_counted_among_a_recent_window() -> None:
    long_uuid = "u" * 100_000  # kept as a digest, still compared
    with Receiver(dedupe_window=3, keep_events=False) as r:
        for body in (make_events(5), make_events(1, 4), make_events(1, 0)):
            assert post(r.url, json.dumps(body).encode())[0] == 201
        # uuid-4 is among the last three (uuid-2, 3, 4); uuid-0 was forgotten.
        assert r.counts()["duplicates"] == 1 and r.counts()["unique"] == 6
        # uuid-0 came back as new: the window is now uuid-3, uuid-4, uuid-0.
        assert post(r.url, json.dumps(make_events(1, 3)).encode())[0] == 201
        assert r.counts()["duplicates"] == 2
        for _ in range(2):
            assert post(r.url, json.dumps([{"uuid": long_uuid}]).encode())[0] == 201
        # A number and its text are different uuids.
        assert post(r.url, json.dumps([{"uuid": 7}, {"uuid": "7"}]).encode())[0] == 201
        assert r.counts()["duplicates"] == 3 and r.counts()["unique"] == 9
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="dedupe_window must be a positive whole number"):
            Receiver(dedupe_window=bad)  # type: ignore[arg-type]


def strict_json(line: str) -> Any:
    """``line`` read as strict JSON: ``NaN`` and ``Infinity`` are not JSON."""

    def refuse(token: str) -> None:
        raise ValueError(f"{token} is not JSON")

    return json.loads(line, parse_constant=refuse)


def test_output_writes_nan_and_infinities_as_text(tmp_path: Any) -> None:
    out = tmp_path / "events.ndjson"
    packed = {"uuid": "f-1", "ratio": math.nan, "deep": [{"top": math.inf}], math.nan: -math.inf}
    with Receiver(output=str(out)) as r:
        # Python's JSON reader takes these tokens; the file must still be JSON.
        body = b'{"uuid": "f-2", "ratio": NaN, "limits": [Infinity, -Infinity, 1.5]}'
        assert post(r.url, body)[0] == 201
        assert post(r.url, msgpack.packb(packed), "application/msgpack")[0] == 201
    lines = [strict_json(line) for line in out.read_text().splitlines()]
    assert lines == [
        {"uuid": "f-2", "ratio": "nan", "limits": ["inf", "-inf", 1.5]},
        {"uuid": "f-1", "ratio": "nan", "deep": [{"top": "inf"}], "nan": "-inf"},
    ]


def test_output_takes_any_msgpack_map_key(tmp_path: Any) -> None:
    out = tmp_path / "events.ndjson"
    event = {
        "message": "keys",
        "uuid": "k-1",
        "nested": {b"bytes": {1: {None: {2.5: {True: {msgpack.ExtType(5, b"x"): b"\xff"}}}}}},
        b"top": "bytes key at the top",
    }
    with Receiver(output=str(out)) as r:
        status, data = post(r.url, msgpack.packb(event), "application/msgpack")
        assert (status, data) == (201, b"")
        assert post(r.url, json.dumps(EVENTS[:1]).encode())[0] == 201  # connection still fine
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert lines == [
        {
            "message": "keys",
            "uuid": "k-1",
            "nested": {
                "bytes": {
                    "1": {"null": {"2.5": {"true": {"ExtType(code=5, data=b'x')": "\ufffd"}}}}
                }
            },
            "top": "bytes key at the top",
        },
        EVENTS[0],
    ]


def test_ndjson_line_takes_any_key_and_refuses_only_what_cannot_be_written() -> None:
    assert json.loads(ndjson_line({"t": {(1, "a"): [{b"k": 1}]}})) == {
        "t": {"(1, 'a')": [{"k": 1}]}
    }
    assert json.loads(ndjson_line({"s": "\ud800"})) == {"s": "\ud800"}
    deep: Any = {b"bottom": 1}
    for _ in range(150):
        deep = {"d": deep}
    assert ndjson_line({"deep": deep}).count('"d"') == 150
    for _ in range(100):
        deep = {"d": deep}
    with pytest.raises(ValueError, match="nests deeper than 200 levels"):
        ndjson_line({"deep": deep})


def test_output_refuses_what_it_cannot_write_and_keeps_serving(tmp_path: Any) -> None:
    out = tmp_path / "events.ndjson"
    refusals = io.StringIO()
    too_deep = b"\x81\xa1a" + b"\x91" * 990 + b"\xc0"  # {"a": [[[...]]]}, 990 levels
    with Receiver(output=str(out), refusals=refusals) as r:
        conn = connect(r.url)
        try:
            answers = []
            for body, kind in (
                (too_deep, "application/msgpack"),
                (json.dumps(EVENTS).encode(), "application/json"),
            ):
                conn.request("POST", "/app", body=body, headers={"Content-Type": kind})
                resp = conn.getresponse()
                answers.append((resp.status, resp.read()))
        finally:
            conn.close()
        counts = r.counts()
    assert answers == [
        (400, b"an event nests deeper than 200 levels: the output file cannot take it\n"),
        (201, b""),
    ]
    assert [json.loads(line) for line in out.read_text().splitlines()] == EVENTS
    assert counts["bad_requests"] == 1 and counts["unique"] == 3
    assert re.fullmatch(
        r"refused 400 POST /app from 127\.0\.0\.1:\d+: an event nests deeper than 200 levels:"
        r" the output file cannot take it\n",
        refusals.getvalue(),
    )


def test_every_refusal_prints_one_printable_line() -> None:
    refusals = io.StringIO()
    token = "tok-7f3a9c1e"
    ok = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    with Receiver(token=token, refusals=refusals) as r:
        url = r.url
        assert post(url + "/a?api_key=k-33f1", b"[]", Authorization="Bearer guess-0b5d")[0] == 401
        assert request(url + "/b", body=b"{nope", headers=ok)[0] == 400
        assert request(url + "/c", body=b"[1]", headers={**ok, "Content-Encoding": "br"})[0] == 400
        assert request(url + "/d", body=b"[]", headers={**ok, "Content-Length": "1e3"})[0] == 400
        assert request(url + "/e", method="PUT", body=b"[]", headers=ok)[0] == 501
        sock = socket.create_connection(address(url), timeout=10)
        try:
            sock.sendall(
                b"POST /\x1b[2J\x07 HTTP/1.1\r\nContent-Length: 99999999999\r\n"
                b"Authorization: Bearer " + token.encode() + b"\r\n\r\n"
            )
            assert answer(sock).status == 413
        finally:
            sock.close()
        assert request(url + "/ok", body=b"[]", headers=ok)[0] == 201
        counts = r.counts()
    lines = refusals.getvalue().splitlines()
    client = r"from 127\.0\.0\.1:\d+"
    expected = [
        rf"refused 401 POST /a {client}: missing or wrong bearer token",
        rf"refused 400 POST /b {client}: malformed JSON body: .+",
        rf"refused 400 POST /c {client}: unsupported Content-Encoding 'br'",
        rf"refused 400 POST /d {client}: malformed Content-Length: one number of bytes expected",
        rf"refused 501 PUT /e {client}: Unsupported method \('PUT'\)",
        rf"refused 413 POST /\\x1b\[2J\\x07 {client}:"
        r" body of 99999999999 bytes is over the 64 MiB limit",
    ]
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)
    for secret in (token, "guess-0b5d", "k-33f1"):
        assert secret not in refusals.getvalue()
    assert counts["bad_requests"] == 6 and counts["requests"] == 1


# -- life ---------------------------------------------------------------------------


def test_wait_for(receiver: Receiver) -> None:
    started = time.monotonic()
    assert not receiver.wait_for(1, 0.05)
    assert time.monotonic() - started < 5
    poster = threading.Thread(target=post, args=(receiver.url, json.dumps(EVENTS).encode()))
    poster.start()
    try:
        assert receiver.wait_for(3, 10)
    finally:
        poster.join(10)
    assert receiver.wait_for(0, 0)


def test_url_and_endpoint(receiver: Receiver) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", receiver.url)
    assert receiver.endpoint() == receiver.url + "/app"
    assert receiver.endpoint("/x/y") == receiver.url + "/x/y"
    with pytest.raises(RuntimeError):
        _ = Receiver().url


def test_stop_ends_keepalive_connections_and_is_idempotent() -> None:
    r = Receiver().start()
    url = r.url
    conn = connect(url)
    try:
        conn.request("POST", "/", body=b"{}", headers={"Content-Type": "application/json"})
        assert conn.getresponse().read() == b""
        started = time.monotonic()
        r.stop()  # the idle keep-alive connection must not hold it up
        assert time.monotonic() - started < 3
        r.stop()
    finally:
        conn.close()
    with pytest.raises(OSError):
        connect(url).connect()
    Receiver().stop()  # never started: nothing to do


def test_port_in_use_is_an_oserror() -> None:
    with Receiver() as first:
        port = int(first.url.rsplit(":", 1)[1])
        with pytest.raises(OSError):
            Receiver(port=port).start()


# -- the command ----------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert logship.__version__ in capsys.readouterr().out


def test_usage_errors() -> None:
    assert main([]) == 2
    for argv in (["nope"], ["receive", "--port", "x"], ["receive", "--port", "70000"]):
        with pytest.raises(SystemExit) as exit:
            main(argv)
        assert exit.value.code == 2


@pytest.mark.parametrize("planted", ["symlink", "fifo"])
def test_output_refuses_a_planted_link_or_fifo(
    tmp_path: Any, planted: str, capsys: pytest.CaptureFixture[str]
) -> None:
    victim, path = tmp_path / "victim", tmp_path / "events.ndjson"
    victim.write_text("kept\n")
    if planted == "symlink":
        path.symlink_to(victim)
    else:
        os.mkfifo(path)  # opened plainly, it would block before the receiver listens
    assert main(["receive", "--port", "0", "--quiet", "--output", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"cannot open {path}" in err and "not a regular file" in err, err
    assert victim.read_text() == "kept\n"


def test_command_reports_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    with Receiver() as busy:
        port = busy.url.rsplit(":", 1)[1]
        assert main(["receive", "--port", port, "--quiet"]) == 1
    assert "cannot listen" in capsys.readouterr().err


class Command:
    """``python -m logship receive`` in a subprocess, its stdout read line by line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "logship", "receive", "--port", "0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def line(self, timeout: float = 15) -> str:
        return self.lines.get(timeout=timeout)

    def finish(self, sig: int, timeout: float = 20) -> tuple[int, list[str], str]:
        """Send ``sig``; return the exit status, the remaining lines and stderr."""
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        self.reader.join(timeout)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        self.close()
        rest = []
        while not self.lines.empty():
            rest.append(self.lines.get_nowait())
        return rc, rest, err

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.reader.join(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@posix_only
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_command_echoes_then_summarises_on_signal(sig: int) -> None:
    cmd = Command()
    try:
        first = cmd.line()
        match = re.fullmatch(r"logship receive: listening on (http://127\.0\.0\.1:\d+)\n", first)
        assert match, first
        url = match.group(1)
        events = [*EVENTS, {**EVENTS[0], "exception": "Traceback"}]
        assert post(url + "/app", json.dumps(events).encode()) == (201, b"")
        assert post(url + "/app", b"bad")[0] == 400
        assert cmd.line() == "2026-11-24T10:00:00.000000Z INFO test: event 0\n"
        assert cmd.line() == "2026-11-24T10:00:00.000001Z INFO test: event 1\n"
        assert cmd.line() == "2026-11-24T10:00:00.000002Z INFO test: event 2\n"
        assert cmd.line() == (
            "2026-11-24T10:00:00.000000Z INFO test: event 0 [exception] [duplicate]\n"
        )
        rc, rest, err = cmd.finish(sig)
    finally:
        cmd.close()
    assert rc == 0, err
    assert rest == [
        "received 4 events (3 unique, 1 duplicates among the last 100000 uuids)"
        " in 1 requests, 1 refused\n"
    ]
    assert re.fullmatch(
        r"refused 400 POST /app from 127\.0\.0\.1:\d+: malformed JSON body: .*\n", err
    ), err


@posix_only
def test_command_quiet_output_and_token(tmp_path: Any) -> None:
    out = tmp_path / "events.ndjson"
    cmd = Command("--quiet", "--token", "s3cret", "--output", str(out))
    try:
        url = cmd.line().rsplit(" ", 1)[1].strip()
        body = json.dumps(EVENTS).encode()
        assert post(url, body)[0] == 401
        assert post(url, body, "application/json", "identity", Authorization="Bearer s3cret") == (
            201,
            b"",
        )
        _, data, _ = request(url + "/_logship/stats", method="GET")
        assert json.loads(data)["unique"] == 3
        assert [json.loads(line) for line in out.read_text().splitlines()] == EVENTS
        rc, rest, err = cmd.finish(signal.SIGTERM)
    finally:
        cmd.close()
    assert rc == 0, err
    assert rest == [
        "received 3 events (3 unique, 0 duplicates among the last 100000 uuids)"
        " in 1 requests, 1 refused\n"
    ]
    assert re.fullmatch(
        r"refused 401 POST / from 127\.0\.0\.1:\d+: missing or wrong bearer token\n", err
    ), err
    assert "s3cret" not in err
