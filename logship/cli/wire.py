"""Reading a request body off the wire, for ``logship receive``, within a byte limit.

``Content-Length`` and chunked bodies (RFC 9112 section 7.1). A chunk size
is hex digits and nothing else: ``int(text, 16)`` would also take ``-1``,
``+5``, ``0x10`` and ``1_0``, and a negative size made the reader take
everything up to the end of the stream. Every byte of a chunked body counts
against the limit, its framing included, so that a million one-byte chunks
cost no more than one large one.
"""

from __future__ import annotations

import io
import re
import socket
import time

from logship.cli.bodies import BadRequest, size_text

# A chunk-size line: hex digits, then optional extensions after ";" (ignored).
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]+)[ \t]*(?:;[^\r\n]*)?\r?\n")
# The longest chunk-size or trailer line taken; RFC 9112 sets no limit, servers do.
_MAX_LINE = 4096
# What linger() reads and drops at most, and for how long at most.
_LINGER_BYTES = 4 * 1024 * 1024
_LINGER_SECONDS = 1.0


def read_length(rfile: io.BufferedIOBase, length: int) -> bytes:
    """Exactly ``length`` bytes (the caller checked them against the limit)."""
    body = rfile.read(length)
    if len(body) < length:
        raise BadRequest(f"truncated request body: {len(body)} of {length} bytes")
    return body


def read_chunked(rfile: io.BufferedIOBase, limit: int) -> bytes:
    """The data of a chunked body; 413 once its wire bytes pass ``limit``, 400 if malformed."""
    body = bytearray()
    budget = _Budget(limit)
    while True:
        line = _line(rfile, budget, "chunk size")
        match = _CHUNK_SIZE.fullmatch(line)
        if match is None:
            shown = line[:20].rstrip(b"\r\n").decode("ascii", "backslashreplace")
            raise BadRequest(f"malformed chunk size {shown!r}: hex digits expected")
        size = int(match.group(1), 16)
        if size == 0:
            break
        budget.take(size)
        chunk = rfile.read(size)
        if len(chunk) < size:
            raise BadRequest("truncated request body: a chunk ended early")
        body += chunk
        if _line(rfile, budget, "chunk end") not in (b"\r\n", b"\n"):
            raise BadRequest("malformed chunked body: a chunk is longer than its size")
    while _line(rfile, budget, "trailer") not in (b"\r\n", b"\n"):
        pass  # trailer fields: not needed
    return bytes(body)


class _Budget:
    """Wire bytes a chunked body may still use."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def take(self, n: int) -> None:
        """Use ``n`` bytes; 413 if there are not that many left."""
        if n > self.left:
            raise BadRequest(f"chunked body over the {size_text(self.limit)} limit", 413)
        self.left -= n


def _line(rfile: io.BufferedIOBase, budget: _Budget, what: str) -> bytes:
    line = rfile.readline(min(_MAX_LINE, budget.left) + 1)
    budget.take(len(line))
    if not line.endswith(b"\n"):
        if len(line) > _MAX_LINE:
            raise BadRequest(f"malformed chunked body: {what} line over {_MAX_LINE} bytes")
        raise BadRequest(f"truncated request body: no complete {what} line")
    return line


def linger(conn: socket.socket) -> None:
    """End a connection whose request was answered before its body was read.

    Closing a socket that still has unread data makes the kernel send a
    reset, which can reach the client before it has read the answer (a 401
    or a 413 sent ahead of the body). So the answer is ended (``SHUT_WR``)
    and what the client still sends is read and dropped, for a second and a
    few MiB at most: never kept, and bounded however much is coming.
    """
    try:
        conn.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + _LINGER_SECONDS
        left = _LINGER_BYTES
        while left > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            conn.settimeout(remaining)
            data = conn.recv(min(left, 65536))
            if not data:
                return
            left -= len(data)
    except OSError:
        pass  # the client is gone already: nothing left to protect
