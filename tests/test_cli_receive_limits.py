"""``logship receive`` against senders that are broken or hostile, over real sockets.

Chunk framing, decompression bombs, requests that stop half-way, more
connections than it serves, a token checked before the body is read, and
where the token comes from. Each test sends what the trouble really looks
like on the wire and waits on the answer with a deadline.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import signal
import socket
import sys
import threading
from typing import Any

import pytest

from logship.cli import main
from logship.cli.bodies import BadRequest
from logship.cli.receive import Receiver
from logship.cli.wire import read_chunked

from conftest import require_within
from procs import Proc, child_env
from receiving import answer, head, make_events, post, send_raw, wait_readable

MiB = 1024 * 1024
EVENTS = make_events(3)
BODY = json.dumps(EVENTS).encode()
RECEIVE = [sys.executable, "-m", "logship", "receive", "--port", "0"]
LISTENING = r"logship receive: listening on (http://127\.0\.0\.1:\d+)"
SUMMARY = (
    r"received \d+ events \(\d+ unique, \d+ duplicates among the last \d+ uuids\)"
    r" in \d+ requests, \d+ refused"
)
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
linux_only = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads /proc")


def refused_lines(text: str, status: int) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"refused {status} ")]


# -- chunked bodies ---------------------------------------------------------------------


@pytest.mark.parametrize("size", ["-1", "+5", "0x5", "1_0", " 5", "5 5", "", "g"])
def test_a_chunk_size_is_hex_digits_only(size: str) -> None:
    with Receiver() as r:
        # The sender then sends nothing more and keeps the connection open: the
        # answer must come from the size line alone (int("-1", 16) made the
        # receiver read to the end of the stream, and "+5" wait for 5 bytes).
        sock = send_raw(r.url, head(chunked=True) + size.encode() + b"\r\n")
        try:
            resp = answer(sock)
        finally:
            sock.close()
        counts = r.counts()
    assert resp.status == 400 and resp.getheader("Connection") == "close"
    assert counts["bad_requests"] == 1 and counts["requests"] == 0


def test_a_negative_chunk_is_refused_while_the_sender_streams() -> None:
    refusals = io.StringIO()
    with Receiver(refusals=refusals) as r:
        sock = send_raw(r.url, head(chunked=True) + b"-1\r\n")
        try:
            sender = threading.Thread(target=stream_until_refused, args=(sock,))
            sender.start()
            resp = answer(sock)
            sender.join(10)
        finally:
            sock.close()
        counts = r.counts()
    assert resp.status == 400
    assert refusals.getvalue().endswith(": malformed chunk size '-1': hex digits expected\n")
    assert counts["bytes"] == 0 and counts["bad_requests"] == 1


def stream_until_refused(sock: socket.socket) -> None:
    """Send data until the receiver closes the connection (at most 64 MiB)."""
    block = b"x" * 65536
    try:
        for _ in range(1024):
            sock.sendall(block)
    except OSError:
        pass  # refused and closed: what the test expects


def test_an_oversized_chunk_is_413_at_once() -> None:
    with Receiver() as r:
        sock = send_raw(r.url, head(chunked=True) + b"7fffffffffffffffffff\r\n")
        try:
            resp = answer(sock)
        finally:
            sock.close()
    assert resp.status == 413 and resp.getheader("Connection") == "close"


@pytest.mark.parametrize(
    "lengths", [["+5"], ["5_0"], ["-1"], ["1e3"], ["0x5"], ["5, 5"], ["2", "3"]]
)
def test_a_content_length_is_one_number_of_digits(lengths: list[str]) -> None:
    with Receiver() as r:
        # int() takes "+5" and "5_0": the receiver then waited for bytes never sent.
        sock = send_raw(r.url, head(extra="".join(f"Content-Length: {n}\r\n" for n in lengths)))
        try:
            resp = answer(sock)
        finally:
            sock.close()
    assert resp.status == 400 and resp.getheader("Connection") == "close"


def chunked(data: bytes, limit: int = MiB) -> bytes:
    return read_chunked(io.BufferedReader(io.BytesIO(data)), limit)  # type: ignore[arg-type]


def test_read_chunked_takes_extensions_and_trailers() -> None:
    data = b"5;name=value\r\nhello\r\n6 ; x\r\n world\r\n0\r\nExpires: never\r\n\r\n"
    assert chunked(data) == b"hello world"
    assert chunked(b"A\n0123456789\n0\n\n") == b"0123456789"  # bare LF, upper-case hex


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (b"2\r\nabc\r\n0\r\n\r\n", 400, "a chunk is longer than its size"),
        (b"5\r\nab", 400, "truncated request body: a chunk ended early"),
        (b"5\r\nhello\r\n", 400, "truncated request body: no complete chunk size line"),
        (b"0" * 5000 + b"5\r\nhello\r\n0\r\n\r\n", 400, "chunk size line over 4096 bytes"),
        (b"5\r\nhello\r\n0\r\n" + b"X-Trailer: y\r\n" * 10, 400, "no complete trailer line"),
        (
            b"400\r\n" + b"x" * 1024 + b"\r\n0\r\n\r\n",
            413,
            "chunked body over the 1024 bytes limit",
        ),
        # One byte of data per chunk, with long extensions: the framing counts too.
        ((b"1;" + b"e" * 60 + b"\r\nx\r\n") * 20 + b"0\r\n\r\n", 413, "over the 1024 bytes"),
        (b"0\r\n" + b"X-Long: " + b"t" * 2000 + b"\r\n\r\n", 413, "over the 1024 bytes"),
    ],
)
def test_read_chunked_refuses(data: bytes, status: int, reason: str) -> None:
    limit = 1024 if status == 413 else MiB
    with pytest.raises(BadRequest) as refused:
        chunked(data, limit)
    assert refused.value.status == status and reason in str(refused.value)


# -- decompression -------------------------------------------------------------------------


def gzip_bomb(mib: int) -> bytes:
    """One event padded with ``mib`` MiB of spaces: about a kilobyte of gzip per MiB."""
    spaces = gzip.compress(b" " * MiB)
    return gzip.compress(b'[{"uuid": "bomb"}') + spaces * mib + gzip.compress(b"]")


def test_a_gzip_bomb_is_refused_at_the_default_cap() -> None:
    body = gzip_bomb(100)  # 100 MiB from about 100 KB
    with Receiver() as r:
        answered = post(r.url, body, encoding="gzip")
        counts = r.counts()
    assert answered == (413, b"decompressed body larger than the 64 MiB limit\n")
    assert counts["bad_requests"] == 1 and counts["events"] == 0


def test_the_decoded_size_cap_is_configurable() -> None:
    with Receiver(max_decoded_bytes=MiB) as r:
        assert post(r.url, gzip_bomb(1), encoding="gzip") == (
            413,
            b"decompressed body larger than the 1 MiB limit\n",
        )
        assert post(r.url, gzip.compress(BODY), encoding="gzip") == (201, b"")
        # Not compressed, the body is its own decoded size.
        assert post(r.url, BODY + b" " * MiB) == (413, b"body larger than the 1 MiB limit\n")
        assert r.counts()["unique"] == 3
    for bad in (0, -1, 2.5, None):
        with pytest.raises(ValueError, match="max_decoded_bytes must be a positive whole number"):
            Receiver(max_decoded_bytes=bad)  # type: ignore[arg-type]


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        match = re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.M)
    assert match
    return int(match[1]) / 1024


@linux_only
def test_a_gzip_bomb_costs_the_command_no_more_than_its_cap() -> None:
    with Proc([*RECEIVE, "--quiet"], env=child_env()) as p:
        url = p.wait_for(LISTENING)[1]
        before = peak_rss_mib(p.pid)
        answered = post(url + "/app", gzip_bomb(500), encoding="gzip")
        grew = peak_rss_mib(p.pid) - before
    # The 64 MiB of output the cap allows, and little more; not the 500 MiB the
    # bomb holds (decompressing it whole took more than 1 GiB).
    assert grew < 128, f"the receiver's peak memory grew by {grew:.0f} MiB"
    assert answered[0] == 413


# -- slow and many connections --------------------------------------------------------------


def connection_threads() -> int:
    return sum(t.name == "logship-receive-connection" for t in threading.enumerate())


def test_connections_beyond_the_bound_are_refused_at_once() -> None:
    baseline = threading.active_count()
    with Receiver() as r:  # 32 connections at once, by default
        # Requests that stop half-way: each holds its connection's thread.
        socks = [send_raw(r.url, head(length=100) + b'{"a"') for _ in range(300)]
        try:
            refused = wait_readable(socks, 300 - 32)
            threads = threading.active_count() - baseline
            answers = [answer(s) for s in refused]
            counts = r.counts()
        finally:
            for s in socks:
                s.close()
    assert threads <= 32 + 1, f"{threads} threads for 300 half-sent requests"  # +1: serving
    assert [(a.status, a.getheader("Retry-After")) for a in answers] == [(503, "1")] * 268
    assert counts["bad_requests"] == 268


def test_a_connection_refused_as_busy_is_reported() -> None:
    refusals = io.StringIO()
    with Receiver(max_connections=1, refusals=refusals) as r:
        held = send_raw(r.url, head(length=100))
        try:
            require_within(lambda: connection_threads() == 1, what="the first connection's thread")
            busy = send_raw(r.url, head(length=len(BODY)) + BODY)
            try:
                resp = answer(busy)
            finally:
                busy.close()
        finally:
            held.close()
    assert (resp.status, resp.getheader("Connection")) == (503, "close")
    assert re.fullmatch(
        r"refused 503 connection from 127\.0\.0\.1:\d+: busy: already serving max_connections=1",
        refusals.getvalue().splitlines()[0],
    )


def test_a_read_timeout_ends_requests_that_stop_half_way() -> None:
    refusals = io.StringIO()
    halves = [
        head(length=100) + b'{"a"',  # the body stops
        head(chunked=True) + b"10\r\nabc",  # a chunk stops
        b"POST /app HTTP/1.1\r\nHost: test\r\nContent-Le",  # the headers stop
    ]
    baseline = threading.active_count()
    with Receiver(read_timeout=0.5, refusals=refusals) as r:
        socks = [send_raw(r.url, data) for data in halves * 4]
        idle = send_raw(r.url, b"")
        try:
            answers = [answer(s) for s in wait_readable(socks, len(socks))]
            # An idle connection is closed without a word: it asked nothing.
            wait_readable([idle], 1)
            assert idle.recv(1) == b""
        finally:
            for s in [*socks, idle]:
                s.close()
        require_within(
            lambda: threading.active_count() <= baseline + 1, what="the connections' threads to end"
        )
        counts = r.counts()
    assert [(a.status, a.getheader("Connection")) for a in answers] == [(408, "close")] * 12
    lines = refused_lines(refusals.getvalue(), 408)
    assert len(lines) == 12 and counts["bad_requests"] == 12
    assert any(line.endswith(": the body stopped coming for 0.5 s") for line in lines)
    assert any(line.endswith(": no complete headers within 0.5 s") for line in lines)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("read_timeout", 0, "read_timeout must be a positive number of seconds"),
        ("read_timeout", float("nan"), "read_timeout must be a positive number of seconds"),
        ("read_timeout", "5", "read_timeout must be a number of seconds"),
        ("max_connections", 0, "max_connections must be a positive whole number"),
        ("max_connections", 1.5, "max_connections must be a positive whole number"),
    ],
)
def test_limits_are_checked(option: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Receiver(**{option: value})


def tasks(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


@linux_only
@posix_only
def test_command_bounds_its_threads_and_times_out_half_sent_requests() -> None:
    args = ["--quiet", "--max-connections", "4", "--read-timeout", "3", "--max-decoded-mib", "1"]
    with Proc([*RECEIVE, *args], env=child_env()) as p:
        url = p.wait_for(LISTENING)[1]
        base = tasks(p.pid)
        socks = [send_raw(url, head(length=100) + b'{"a"') for _ in range(20)]
        try:
            busy = wait_readable(socks, 16)
            held = tasks(p.pid)
            statuses = [answer(s).status for s in busy]
            rest = [s for s in socks if s not in busy]
            timed_out = [answer(s).status for s in wait_readable(rest, 4)]
        finally:
            for s in socks:
                s.close()
        require_within(lambda: tasks(p.pid) == base, what="the connections' threads to end")
        assert post(url, gzip_bomb(1), encoding="gzip")[0] == 413
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0, p.describe()
    assert held <= base + 4, f"{held - base} threads for 20 half-sent requests"
    assert statuses == [503] * 16 and timed_out == [408] * 4
    assert len(refused_lines(p.stderr, 503)) == 16 and len(refused_lines(p.stderr, 408)) == 4
    assert refused_lines(p.stderr, 413)[0].endswith("decompressed body larger than the 1 MiB limit")
    assert p.stdout.splitlines()[-1] == (
        "received 0 events (0 unique, 0 duplicates among the last 100000 uuids)"
        " in 0 requests, 21 refused"
    )


# -- the token, before the body ---------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic czNjcmV0"])
def test_a_wrong_token_is_refused_before_the_body_is_read(authorization: str | None) -> None:
    extra = f"Authorization: {authorization}\r\n" if authorization else ""
    with Receiver(token="s3cret") as r:
        # 10 MiB announced, none sent: the answer cannot wait for them.
        sock = send_raw(r.url, head(length=10 * MiB, extra=extra))
        try:
            resp = answer(sock, timeout=5)
            # The unread body is still on the wire: the connection ends.
            wait_readable([sock], 1)
            assert sock.recv(1) == b""
        finally:
            sock.close()
        counts = r.counts()
    assert resp.status == 401 and resp.getheader("Connection") == "close"
    assert resp.getheader("WWW-Authenticate") == "Bearer"
    assert counts["bad_requests"] == 1 and counts["bytes"] == 0


def test_a_refused_body_sent_at_once_does_not_hide_the_answer() -> None:
    # Closing a socket with unread data resets it, and a client still sending
    # its body then fails on the reset instead of reading the 401 (every time,
    # for this size, when the receiver closes at once).
    body = b" " * (4 * MiB)
    with Receiver(token="s3cret") as r:
        for _ in range(10):
            assert post(r.url, body)[0] == 401


def read_interim(sock: socket.socket) -> bytes:
    """The head of a 1xx answer, up to its blank line."""
    data = b""
    sock.settimeout(10)
    while not data.endswith(b"\r\n\r\n"):
        piece = sock.recv(1)
        assert piece, data
        data += piece
    return data


def test_expect_100_continue_is_answered_from_the_headers() -> None:
    expect = "Expect: 100-continue\r\n"
    with Receiver(token="s3cret") as r:
        for extra, length, status in [
            (expect + "Authorization: Bearer nope\r\n", len(BODY), 401),
            (expect + "Authorization: Bearer s3cret\r\n", 100 * MiB, 413),
        ]:
            sock = send_raw(r.url, head(length=length, extra=extra))
            try:
                # The final answer, not "100 Continue": the body is never sent.
                assert answer(sock).status == status
            finally:
                sock.close()
        sock = send_raw(
            r.url, head(length=len(BODY), extra=expect + "Authorization: Bearer s3cret\r\n")
        )
        try:
            assert read_interim(sock).startswith(b"HTTP/1.1 100 Continue\r\n")
            sock.sendall(BODY)
            assert answer(sock).status == 201
        finally:
            sock.close()
        assert r.counts()["unique"] == 3


# -- where the command's token comes from ---------------------------------------------------------


def served_token(p: Proc, token: str) -> None:
    """The receiver in ``p`` refuses no token and takes ``token``; then it is stopped."""
    url = p.wait_for(LISTENING)[1]
    assert post(url, BODY)[0] == 401
    assert post(url, BODY, Authorization=f"Bearer {token}") == (201, b"")
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 0, p.describe()
    assert re.search(SUMMARY, p.stdout), p.describe()
    assert token not in p.stdout + p.stderr


@posix_only
def test_token_from_the_environment() -> None:
    with Proc([*RECEIVE, "--quiet"], env=child_env(LOGSHIP_RECEIVE_TOKEN="env-9c1d2e\n")) as p:
        served_token(p, "env-9c1d2e")


@posix_only
def test_token_from_a_file_before_the_environment(tmp_path: Any) -> None:
    path = tmp_path / "token"
    path.write_text("file-5d0e7a\n")
    env = child_env(LOGSHIP_RECEIVE_TOKEN="env-not-this-one")
    with Proc([*RECEIVE, "--quiet", "--token-file", str(path)], env=env) as p:
        served_token(p, "file-5d0e7a")


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (
            ["--token-file", "{missing}"],
            None,
            "--token-file {missing}: cannot read it: No such file",
        ),
        (["--token-file", "{empty}"], None, "--token-file {empty}: the token is empty"),
        (["--token", "  "], None, "--token: the token is empty"),
        (
            [],
            "caf\u00e9-\u20ac-Zq9",
            "LOGSHIP_RECEIVE_TOKEN: the token has characters an HTTP header cannot carry",
        ),
        (["--token", "a\nb-Zq9"], None, "--token: the token has a control character"),
        ([], "a\x01b-Zq9", "LOGSHIP_RECEIVE_TOKEN: the token has a control character"),
        (["--token", "a\tb-Zq9"], None, "--token: the token has a control character"),
    ],
)
def test_a_token_that_cannot_work_is_a_usage_error(
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: str | None,
    message: str,
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    names = {"missing": str(tmp_path / "missing"), "empty": str(empty)}
    if env is None:
        monkeypatch.delenv("LOGSHIP_RECEIVE_TOKEN", raising=False)
    else:
        monkeypatch.setenv("LOGSHIP_RECEIVE_TOKEN", env)
    assert main(["receive", "--port", "0", *(a.format(**names) for a in argv)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"logship receive: error: {message.format(**names)}"), err
    assert out == "" and "Zq9" not in err


def test_token_options_exclude_each_other_and_help_says_why(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["receive", "--token", "a", "--token-file", "b"])
    assert exit.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        main(["receive", "--help"])
    assert exit.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--token shows in the process list (ps)" in text
    assert "LOGSHIP_RECEIVE_TOKEN" in text and "--token-file F" in text
    for option in ("--max-decoded-mib N", "--read-timeout S", "--max-connections N"):
        assert option in text
    assert "--dedupe-window N" in text


@pytest.mark.parametrize("framing", ["Content-Length: {n}", "Transfer-Encoding: chunked"])
def test_a_body_after_a_get_is_never_read_as_a_request(framing: str) -> None:
    events = json.dumps(make_events(1)).encode()
    smuggled = head(length=len(events)) + events
    if "chunked" in framing:
        smuggled = b"%x\r\n%s\r\n0\r\n\r\n" % (len(smuggled), smuggled)
    framing = framing.format(n=len(smuggled))
    get = f"GET /_logship/stats HTTP/1.1\r\nHost: test\r\n{framing}\r\n\r\n".encode()
    with Receiver() as r:
        sock = send_raw(r.url, get + smuggled)
        try:
            resp = answer(sock)
            assert (resp.status, resp.getheader("Connection")) == (200, "close")
            assert sock.recv(1024) == b""  # closed: the POST inside the body got no answer
        finally:
            sock.close()
        assert r.counts()["events"] == 0


def test_a_get_with_an_empty_length_keeps_its_connection() -> None:
    get = b"GET /_logship/stats HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n"
    with Receiver() as r:
        sock = send_raw(r.url, get)
        try:
            resp = answer(sock)
            assert (resp.status, resp.getheader("Connection")) == (200, None)
            sock.sendall(get)  # the same connection serves the next request
            assert answer(sock).status == 200
        finally:
            sock.close()


def test_a_get_that_expects_100_continue_gets_its_answer_instead() -> None:
    get = (
        b"GET /_logship/stats HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    with Receiver() as r:
        sock = send_raw(r.url, get)
        try:
            first = sock.makefile("rb").readline()  # http.client would skip a 100
            assert first.startswith(b"HTTP/1.1 200 "), first
        finally:
            sock.close()
