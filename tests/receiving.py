"""Talking to ``logship receive`` over real sockets."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from typing import Any


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
