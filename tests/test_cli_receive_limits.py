"""``logship receive`` against senders that are broken or hostile, over real sockets.

Each test sends what the trouble really looks like on the wire and waits on
the answer with a deadline.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import socket
import sys
import threading

import pytest
from procs import Proc, child_env
from receiving import answer, head, post, send_raw

from logship.cli.bodies import BadRequest
from logship.cli.receive import Receiver
from logship.cli.wire import read_chunked

MiB = 1024 * 1024
RECEIVE = [sys.executable, "-m", "logship", "receive", "--port", "0"]
LISTENING = r"logship receive: listening on (http://127\.0\.0\.1:\d+)"
linux_only = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads /proc")


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
