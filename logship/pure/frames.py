"""The on-disk frame format shared by spill and dead-letter files. Pure: bytes only.

A file is::

    magic  b"LSHP"            4 bytes
    version                   1 byte
    reserved                  3 bytes (zero)
    frame*                    the first frame is the file's header map

and a frame is::

    length   4 bytes, big-endian, of the payload
    crc32    4 bytes, big-endian, of the payload
    payload  one msgpack map

Reading never raises for damaged data: a bad frame is reported and the
reader resynchronises on the next position whose length and checksum agree,
so a flipped byte costs that frame only and a torn tail costs the tail.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from logship.pure.encoding import has_nonstring_keys
from logship.pure.event import jsonable, safe_repr
from logship.pure.sealing import Sealer, WrongKey

MAGIC = b"LSHP"
VERSION = 1
FILE_HEADER = MAGIC + bytes([VERSION, 0, 0, 0])
_FRAME = struct.Struct(">II")
FRAME_OVERHEAD = _FRAME.size
#: No single frame is larger than this; a length beyond it marks damage.
MAX_FRAME = 256 * 1024 * 1024
#: The one key of an encrypted frame's map (see ``pure.sealing``).
SEALED = "sealed"


def encode_frame(payload: dict[str, Any], sealer: Sealer | None = None) -> bytes:
    """One frame holding ``payload`` as msgpack; with ``sealer``, as ``{"sealed": ...}``."""
    try:
        if has_nonstring_keys(payload):
            raise TypeError("a mapping key is not a string")
        data: bytes = msgpack.packb(payload, default=safe_repr, use_bin_type=True, datetime=False)
    except (TypeError, ValueError, OverflowError, RecursionError):
        data = msgpack.packb(jsonable(payload, strict=True), use_bin_type=True, datetime=False)
    if sealer is not None:
        data = msgpack.packb({SEALED: sealer.seal(data)}, use_bin_type=True)
    return _FRAME.pack(len(data), zlib.crc32(data)) + data


def open_payload(payload: dict[str, Any], sealer: Sealer | None) -> dict[str, Any]:
    """The payload of a frame, opened when it is sealed.

    Raises ``WrongKey`` for a sealed frame that ``sealer`` cannot open (or
    when there is no sealer), and ``ValueError`` for a sealed frame whose
    plaintext is not a map.
    """
    blob = payload.get(SEALED)
    if blob is None:
        return payload
    if sealer is None or not isinstance(blob, bytes):
        raise WrongKey
    inner = msgpack.unpackb(sealer.open(blob), raw=False, strict_map_key=False)
    if not isinstance(inner, dict):
        raise ValueError("a sealed frame that does not hold a map")
    return inner


@dataclass
class ReadResult:
    """What :func:`read_frames` found in one file."""

    frames: list[dict[str, Any]]
    corrupt: int  # damaged regions skipped
    version_ok: bool


def iter_frames(data: bytes, start: int = len(FILE_HEADER)) -> Iterator[tuple[int, Any]]:
    """Yield ``(offset, payload)`` for good frames, ``(offset, None)`` once per damaged stretch."""
    pos, end = start, len(data)
    damaged = False
    while pos + FRAME_OVERHEAD <= end:
        length, crc = _FRAME.unpack_from(data, pos)
        body_start = pos + FRAME_OVERHEAD
        ok = length <= MAX_FRAME and body_start + length <= end
        if ok:
            body = data[body_start : body_start + length]
            ok = zlib.crc32(body) == crc
        if ok:
            try:
                payload = msgpack.unpackb(body, raw=False, strict_map_key=False)
            except Exception:
                ok = False
        if ok and isinstance(payload, dict):
            damaged = False
            yield pos, payload
            pos = body_start + length
            continue
        if not damaged:
            damaged = True
            yield pos, None
        pos += 1  # resynchronise byte by byte; damage is rare and files are small
    if pos < end and not damaged:
        yield pos, None  # a torn tail shorter than a frame header


def read_frames(data: bytes) -> ReadResult:
    """Parse a whole file's bytes. A wrong magic or version yields no frames, one corrupt."""
    if len(data) < len(FILE_HEADER) or data[:4] != MAGIC:
        return ReadResult([], 1, False)  # zero-length and foreign files too
    if data[4] != VERSION:
        return ReadResult([], 1, False)
    frames: list[dict[str, Any]] = []
    corrupt = 0
    for _, payload in iter_frames(data):
        if payload is None:
            corrupt += 1
        else:
            frames.append(payload)
    return ReadResult(frames, corrupt, True)
