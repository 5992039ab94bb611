"""Wire encodings and compression: events in, request bodies out.

Each event is encoded in one call to the C encoder (the fast path). Only
when that call fails, because some value cannot be carried (NaN, a cycle, a
key that is not a string, an integer msgpack cannot hold), is the event
passed through :func:`~logship.pure.event.jsonable` and encoded again. The
common JSON event does not even get here: see :mod:`logship.pure.eventjson`.
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


def _json_event(event: Event) -> bytes:
    return _json_encode(event).encode("ascii")  # ensure_ascii: always ASCII


def _json_join(units: Sequence[bytes]) -> bytes:
    return b"[" + b",".join(units) + b"]"


def _ndjson_join(units: Sequence[bytes]) -> bytes:
    return b"\n".join(units) + b"\n"


def _msgpack_join(units: Sequence[bytes]) -> bytes:
    # An array header, then the events as packed: the same bytes as packing the list.
    header: bytes = _array_header(len(units))
    return header + b"".join(units)


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


_array_header = msgpack.Packer().pack_array_header


def _msgpack_event(event: Event) -> bytes:
    for value in event.values():
        # Core fields are scalars; only extra= and fields= values can nest.
        if isinstance(value, (dict, list, tuple)) and has_nonstring_keys(value):
            raise TypeError("a mapping key is not a string")
    body: bytes = msgpack.packb(event, default=safe_repr, use_bin_type=True, datetime=False)
    return body


class Encoding:
    """One of ``json``, ``ndjson`` or ``msgpack``: its content type and encoder.

    A body is built from events encoded one at a time (:meth:`encode_event`)
    and then joined (:meth:`join`): the pump knows each event's exact size
    before it seals a batch, and can cut batches at ``batch_max_bytes``
    without encoding anything twice.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.content_type = CONTENT_TYPES[name]
        self._encode_event: Callable[[Event], bytes] = (
            _msgpack_event if name == "msgpack" else _json_event
        )
        self.join: Callable[[Sequence[bytes]], bytes] = {
            "json": _json_join,
            "ndjson": _ndjson_join,
            "msgpack": _msgpack_join,
        }[name]
        #: What joining adds to a body, per event and once.
        self.per_event_overhead = 0 if name == "msgpack" else 1
        self.body_overhead = 5 if name == "msgpack" else 2
        self._strict = name == "msgpack"

    def encode_event(self, event: Event) -> bytes:
        """One event's bytes; values that cannot be carried are replaced, never raised."""
        try:
            return self._encode_event(event)
        except _ENCODE_ERRORS:
            return self._encode_event(jsonable(event, self._strict))

    def encode(self, events: Sequence[Event]) -> bytes:
        """A whole body for ``events``."""
        return self.join([self.encode_event(e) for e in events])

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


#: No body logship makes inflates past this: one that does is damaged or hostile.
MAX_INFLATED = 256 * 1024 * 1024


def gzip_decompress(body: bytes, limit: int = MAX_INFLATED) -> bytes:
    """Undo :func:`gzip_compress`; ``ValueError`` past ``limit`` bytes, ``zlib.error`` if damaged.

    Bounded: a small body read back from disk must not inflate without end.
    """
    inflater = zlib.decompressobj(31)
    raw = inflater.decompress(body, limit)
    if inflater.unconsumed_tail:
        raise ValueError(f"a gzip body that inflates past {limit} bytes")
    if not inflater.eof:
        raise zlib.error("a gzip body that ends early")
    return raw


#: DEFLATE never makes one byte of output stand for more than this many bytes of
#: input (zlib's technical details: "the limit is 1032:1").
MAX_DEFLATE_RATIO = 1032


def stated_size(body: bytes) -> int:
    """The size a gzip member says it inflates to; 0 when it is too short to be one.

    A member ends with that size, modulo 2**32 (RFC 1952, ``ISIZE``): no body
    logship makes comes near that (see :data:`MAX_INFLATED`).
    """
    return int.from_bytes(body[-4:], "little") if len(body) >= 18 else 0


def inflated_bound(size: int, body: bytes | None = None) -> int:
    """The most bytes ``size`` bytes of gzip that logship made can inflate to, without inflating.

    DEFLATE's ratio and :data:`MAX_INFLATED` bound it whatever the bytes are;
    given the ``body`` (a gzip member, not sealed), so does the size its
    trailer states, which is exact for every body logship makes: a trailer
    that claims more is held to the other two bounds, and one that claims
    less only lowers the bound of a body that logship did not make.
    """
    bound = min(MAX_DEFLATE_RATIO * size, MAX_INFLATED)
    return bound if body is None else min(bound, stated_size(body))
