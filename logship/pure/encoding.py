"""Wire encodings and compression: events in, request bodies out.

A whole batch is encoded in one call to the C encoder (the fast path). Only
when that call fails, because some value cannot be carried (NaN, a cycle, a
key that is not a string, an integer msgpack cannot hold), is each event
passed through :func:`~logship.pure.event.jsonable` and encoded again.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from logship.pure.event import jsonable, safe_repr

Event = dict[str, Any]

CONTENT_TYPES = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "msgpack": "application/msgpack",
}

# Level 1 keeps most of gzip's ratio on JSON logs for a fraction of level 6's
# CPU, and the worker shares the GIL with the application.
GZIP_LEVEL = 1

# UnicodeEncodeError is a ValueError: msgpack refuses lone surrogates.
_ENCODE_ERRORS = (TypeError, ValueError, OverflowError, RecursionError)

_json_encode = json.JSONEncoder(
    separators=(",", ":"), allow_nan=False, default=safe_repr, check_circular=True
).encode


def _json_body(events: Sequence[Event]) -> bytes:
    return _json_encode(events).encode("utf-8")


def _ndjson_body(events: Sequence[Event]) -> bytes:
    return ("\n".join(map(_json_encode, events)) + "\n").encode("utf-8")


def has_nonstring_keys(value: Any, depth: int = 0) -> bool:
    """Whether a container holds a mapping key msgpack would pass through as-is.

    msgpack calls ``default`` for values only: a tuple key would become an
    array key that no receiver can decode into a map.
    """
    if depth > 32:
        return True
    if isinstance(value, dict):
        return any(
            not isinstance(k, str) or has_nonstring_keys(v, depth + 1) for k, v in value.items()
        )
    if isinstance(value, (list, tuple)):
        return any(has_nonstring_keys(v, depth + 1) for v in value)
    return False


def _msgpack_body(events: Sequence[Event]) -> bytes:
    for event in events:
        for value in event.values():
            # Core fields are scalars; only extra= and fields= values can nest.
            if isinstance(value, (dict, list, tuple)) and has_nonstring_keys(value):
                raise TypeError("a mapping key is not a string")
    body: bytes = msgpack.packb(events, default=safe_repr, use_bin_type=True, datetime=False)
    return body


class Encoding:
    """One of ``json``, ``ndjson`` or ``msgpack``: its content type and encoder."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.content_type = CONTENT_TYPES[name]
        self._encode: Callable[[Sequence[Event]], bytes] = {
            "json": _json_body,
            "ndjson": _ndjson_body,
            "msgpack": _msgpack_body,
        }[name]
        self._strict = name == "msgpack"

    def encode(self, events: list[Event]) -> bytes:
        """Encode a batch; values that cannot be carried are replaced, never raised.

        On the slow path the events are replaced in place by their cleaned
        copies, so a later split or replay does not pay for it again.
        """
        try:
            return self._encode(events)
        except _ENCODE_ERRORS:
            pass
        for i, event in enumerate(events):
            events[i] = jsonable(event, self._strict)
        return self._encode(events)

    def decode(self, body: bytes) -> list[Event]:
        """Decode a body of this encoding (uncompressed) back into events."""
        if self.name == "msgpack":
            items = msgpack.unpackb(body, raw=False, strict_map_key=False)
        elif self.name == "json":
            items = json.loads(body)
        else:
            items = [json.loads(line) for line in body.splitlines() if line.strip()]
        if isinstance(items, dict):
            items = [items]
        return list(items)


def gzip_compress(body: bytes) -> bytes:
    """Return ``body`` as a gzip member (RFC 1952), as ``Content-Encoding: gzip`` wants."""
    c = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    return c.compress(body) + c.flush()


def gzip_decompress(body: bytes) -> bytes:
    """Undo :func:`gzip_compress`."""
    return zlib.decompress(body, 31)
