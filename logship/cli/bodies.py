"""Request bodies to events, for ``logship receive``: every encoding logship can send.

JSON (an array, one object, or newline-separated values, as Fluent Bit
takes them), NDJSON and msgpack (an array, one map, or concatenated maps),
each optionally gzipped. Anything else raises :class:`BadRequest` with a
short reason meant for the client.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from typing import Any

import msgpack

JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson"})
MSGPACK_TYPES = frozenset({"application/msgpack", "application/x-msgpack"})

#: Decompressed size past which a body is refused (413) unless the receiver is
#: given another: a few kilobytes of gzip can inflate to gigabytes.
MAX_DECODED_BYTES = 64 * 1024 * 1024
# Compressed input fed to zlib, and output asked of it, per step: what one step
# holds beyond the decoded body itself.
_STEP = 256 * 1024


class BadRequest(Exception):
    """The body cannot be accepted; ``str(error)`` is the reason sent back."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


def size_text(n: int) -> str:
    """A limit as people say it: ``64 MiB`` when it is whole MiB, else ``1500 bytes``."""
    mib, rest = divmod(n, 1024 * 1024)
    return f"{mib} MiB" if mib and not rest else f"{n} bytes"


def media_type(content_type: str | None) -> str:
    """``"Application/JSON; charset=utf-8"`` -> ``"application/json"``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def decompress(body: bytes, content_encoding: str | None, limit: int = MAX_DECODED_BYTES) -> bytes:
    """Undo ``Content-Encoding`` (none, ``identity`` or ``gzip``); 413 past ``limit`` bytes."""
    coding = (content_encoding or "").strip().lower()
    if coding in ("", "identity"):
        if len(body) > limit:
            raise BadRequest(f"body larger than the {size_text(limit)} limit", 413)
        return body
    if coding in ("gzip", "x-gzip"):
        return gunzip(body, limit)
    raise BadRequest(f"unsupported Content-Encoding {content_encoding!r}")


def gunzip(data: bytes, limit: int = MAX_DECODED_BYTES) -> bytes:
    """Decompress one or more concatenated gzip members, refusing more than ``limit`` bytes.

    Decompressed step by step, so that a bomb costs at most ``limit`` bytes
    and one step, never its full size: it is refused (413) as soon as its
    output passes ``limit``.
    """
    out = bytearray()
    view = memoryview(data)
    at = 0
    while at < len(view):
        at = _inflate_member(view, at, out, limit)
    return bytes(out)


def _inflate_member(data: memoryview, at: int, out: bytearray, limit: int) -> int:
    """Append the gzip member starting at ``data[at]`` to ``out``; return where the next starts."""
    d = zlib.decompressobj(31)
    while not d.eof:
        piece: bytes | memoryview
        if d.unconsumed_tail:
            piece = d.unconsumed_tail  # input zlib kept back to honour max_length
        elif at < len(data):
            piece, at = data[at : at + _STEP], at + _STEP
        else:
            raise BadRequest("malformed gzip body: truncated")
        try:
            out += d.decompress(piece, min(_STEP, limit - len(out) + 1))
        except zlib.error as e:
            raise BadRequest(f"malformed gzip body: {e}") from None
        if len(out) > limit:
            raise BadRequest(f"decompressed body larger than the {size_text(limit)} limit", 413)
    return min(at, len(data)) - len(d.unused_data)


def decode(
    body: bytes,
    content_type: str | None,
    content_encoding: str | None,
    max_decoded_bytes: int = MAX_DECODED_BYTES,
) -> list[Any]:
    """Return the events of a request body; raise :class:`BadRequest` when there are none.

    Every item is a ``dict``. An empty array is accepted and gives no events;
    an empty body is not, nor one that decodes to more than ``max_decoded_bytes``.
    """
    kind = media_type(content_type)
    if not kind:
        raise BadRequest("missing Content-Type")
    if kind not in JSON_TYPES and kind not in NDJSON_TYPES and kind not in MSGPACK_TYPES:
        raise BadRequest(f"unsupported Content-Type {kind!r}")
    if not body:
        raise BadRequest("no payload found")
    data = decompress(body, content_encoding, max_decoded_bytes)
    if not data or data.isspace():  # not strip(), which would copy a large body
        raise BadRequest("no payload found")
    if kind in MSGPACK_TYPES:
        return _objects(_msgpack_values(data))
    if kind in JSON_TYPES:
        try:
            return _objects([json.loads(data)])
        except json.JSONDecodeError as e:
            if not e.msg.startswith("Extra data"):
                raise BadRequest(f"malformed JSON body: {e}") from None
        except (ValueError, RecursionError) as e:  # bad UTF-8, a number past 4,300 digits
            raise BadRequest(f"malformed JSON body: {e!r}") from None
    # NDJSON, and newline-separated JSON sent as application/json.
    return _objects(_ndjson_values(data))


def _ndjson_values(data: bytes) -> list[Any]:
    lines = [line for line in data.split(b"\n") if line.strip()]
    try:
        # One C-level parse of all lines is twice as fast as one call per line;
        # the count check sends anything but one value per line the slow way.
        values = json.loads(b"[" + b",".join(lines) + b"]")
        if isinstance(values, list) and len(values) == len(lines):
            return values
    except (ValueError, RecursionError):
        pass
    values = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if line.strip():
            try:
                values.append(json.loads(line))
            except (ValueError, RecursionError) as e:
                raise BadRequest(f"malformed JSON on line {number}: {e}") from None
    return values


def _msgpack_values(data: bytes) -> list[Any]:
    try:
        return [msgpack.unpackb(data, raw=False, strict_map_key=False)]
    except msgpack.ExtraData:
        pass  # concatenated values: take them one by one below
    except Exception as e:
        raise BadRequest(f"malformed msgpack body: {e}") from None
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=len(data))
    unpacker.feed(data)
    try:
        values = list(unpacker)
    except Exception as e:
        raise BadRequest(f"malformed msgpack body: {e}") from None
    if unpacker.tell() != len(data):
        raise BadRequest("malformed msgpack body: truncated")
    return values


def _objects(values: Iterable[Any]) -> list[Any]:
    """Flatten top-level values (objects, or arrays of objects) into a list of events."""
    events: list[Any] = []
    for value in values:
        if isinstance(value, dict):
            events.append(value)
        elif isinstance(value, list):
            for item in value:
                if not isinstance(item, dict):
                    # Fluent Bit drops these silently; a development receiver says so.
                    raise BadRequest(f"an event must be an object, not {type(item).__name__}")
            events.extend(value)
        else:
            raise BadRequest(f"an event must be an object, not {type(value).__name__}")
    return events
