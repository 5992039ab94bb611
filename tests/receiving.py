"""Talking to ``logship receive`` over real sockets: whole requests, and requests cut short."""

from __future__ import annotations

import http.client
import json
import selectors
import socket
import time
import urllib.parse
from typing import Any

import pytest


def make_events(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "timestamp": f"2026-11-24T10:00:00.{i:06d}Z",
            "level": "INFO",
            "logger": "test",
            "message": f"event {i}",
            "uuid": f"uuid-{i}",
        }
        for i in range(start, start + n)
    ]


def ndjson(events: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(e) + "\n" for e in events).encode()


def address(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def connect(url: str) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(*address(url), timeout=10)


def request(
    url: str,
    method: str = "POST",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, http.client.HTTPMessage]:
    """One request on a fresh connection; return status, body and headers."""
    parts = urllib.parse.urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = connect(url)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.headers
    finally:
        conn.close()


def post(
    url: str,
    body: bytes,
    content_type: str | None = "application/json",
    encoding: str | None = None,
    **headers: str,
) -> tuple[int, bytes]:
    h = {k.replace("_", "-"): v for k, v in headers.items()}
    if content_type is not None:
        h["Content-Type"] = content_type
    if encoding is not None:
        h["Content-Encoding"] = encoding
    status, data, _ = request(url, body=body, headers=h)
    return status, data


def send_raw(url: str, data: bytes) -> socket.socket:
    """A connection that has sent ``data`` and nothing more (the caller closes it)."""
    sock = socket.create_connection(address(url), timeout=10)
    sock.sendall(data)
    return sock


def head(
    path: str = "/app",
    *,
    length: int | None = None,
    chunked: bool = False,
    extra: str = "",
) -> bytes:
    """The head of a POST of JSON: request line and headers, up to the blank line."""
    lines = [f"POST {path} HTTP/1.1", "Host: test", "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    text = "\r\n".join(lines) + "\r\n" + extra
    return (text + "\r\n").encode("latin-1")


def answer(sock: socket.socket, timeout: float = 10.0) -> http.client.HTTPResponse:
    """The response waiting on ``sock`` (its body read); fails the test at the deadline."""
    sock.settimeout(timeout)
    resp = http.client.HTTPResponse(sock)
    try:
        resp.begin()
        resp.read()
    except TimeoutError:
        pytest.fail(f"no answer within {timeout} s")
    return resp


def wait_readable(socks: list[socket.socket], n: int, timeout: float = 10.0) -> list[socket.socket]:
    """Wait until ``n`` of ``socks`` have something to read (or were closed); return those."""
    ready: list[socket.socket] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        while len(ready) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"only {len(ready)} of {n} connections were answered in {timeout} s")
            for key, _ in sel.select(left):
                sel.unregister(key.fileobj)
                ready.append(key.fileobj)  # type: ignore[arg-type]
    return ready
