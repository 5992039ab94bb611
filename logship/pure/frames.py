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
Resynchronising takes time linear in the file's size, however the damage was
made (see :func:`iter_frames`).

A frame that reads back is still not trusted: :func:`read_batch` checks every
field of a spilled batch, and a frame that fails counts as damaged.
"""

from __future__ import annotations

import functools
import re
import struct
import zlib
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import msgpack

from logship.pure.encoding import has_nonstring_keys
from logship.pure.event import jsonable, safe_repr
from logship.pure.options import HEADER_NAME
from logship.pure.protocols.registry import ENCODER_NAMES
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
#: Beside it, a sealed batch's event count in the clear: the size cap can count
#: what it deletes from a file whose key this process does not hold.
CLEAR_COUNT = "n"

#: Bounds of what a spilled batch may hold (see :func:`read_batch`).
MAX_KEY = 200
MAX_EVENTS = 2**31 - 1


def encode_frame(
    payload: dict[str, Any],
    sealer: Sealer | None = None,
    file_id: str = "",
    count: int | None = None,
) -> bytes:
    """One frame holding ``payload`` as msgpack.

    With ``sealer``, as ``{"sealed": ...}`` bound to the file ``file_id``,
    with ``count`` (the batch's events) beside it in the clear when given.
    """
    try:
        if has_nonstring_keys(payload):
            raise TypeError("a mapping key is not a string")
        data: bytes = msgpack.packb(payload, default=safe_repr, use_bin_type=True, datetime=False)
    except (TypeError, ValueError, OverflowError, RecursionError):
        data = msgpack.packb(jsonable(payload, strict=True), use_bin_type=True, datetime=False)
    if sealer is not None:
        sealed: dict[str, Any] = {SEALED: sealer.seal(data, file_id)}
        if count is not None:
            sealed[CLEAR_COUNT] = count
        data = msgpack.packb(sealed, use_bin_type=True)
    return _FRAME.pack(len(data), zlib.crc32(data)) + data


def open_payload(payload: dict[str, Any], sealer: Sealer | None, file_id: str) -> dict[str, Any]:
    """The payload of a frame of the file ``file_id``, opened when it is sealed.

    Raises ``WrongKey`` for a sealed frame that ``sealer`` cannot open (or
    when there is no sealer, or it was sealed for another file), and
    ``ValueError`` for a sealed frame whose plaintext is not a map.
    """
    blob = payload.get(SEALED)
    if blob is None:
        return payload
    if sealer is None or not isinstance(blob, bytes):
        raise WrongKey
    inner = msgpack.unpackb(sealer.open(blob, file_id), raw=False, strict_map_key=False)
    if not isinstance(inner, dict):
        raise ValueError("a sealed frame that does not hold a map")
    return inner


def key_problem(header: dict[str, Any], sealer: Sealer | None) -> str | None:
    """Why frames under a file's ``header`` cannot be opened with ``sealer``; None when they can."""
    key_id = header.get("key_id")
    if key_id is None:
        return None
    shown = "".join(c for c in str(key_id)[:64] if c.isalnum())  # from a file: never raw
    if sealer is None:
        return f"it is encrypted (key id {shown}): set spill_key or LOGSHIP_SPILL_KEY"
    if sealer.key_id != key_id:
        return f"it was encrypted with another spill_key (key id {shown}, ours {sealer.key_id})"
    return None


def clear_count(payload: dict[str, Any]) -> int | None:
    """The event count a sealed frame shows in the clear; None when it shows none."""
    n = payload.get(CLEAR_COUNT)
    return n if type(n) is int and 0 <= n <= MAX_EVENTS else None


@dataclass(frozen=True)
class SpilledBatch:
    """A batch read back from a spill frame, every field checked."""

    key: str  # the Idempotency-Key it was, and will be, sent under
    n: int  # its events
    enc: str  # one of ENCODER_NAMES
    gz: bool
    body: bytes
    bid: int | None  # the batch id of the handler that wrote it


def read_batch(payload: Any) -> SpilledBatch | None:
    """The batch a frame's (opened) map holds, or None unless every field is as written.

    A key is an HTTP token of at most :data:`MAX_KEY` characters (a key with a
    line break would be refused by every request, and retried for ever); a
    count a non-negative int; an encoding and a compression flag from the
    known set; a body bytes, bounded by the frame.
    """
    if not isinstance(payload, dict):
        return None
    key, n, enc, gz, body, bid = (
        payload.get(name) for name in ("key", "n", "enc", "gz", "body", "bid")
    )
    if not (isinstance(key, str) and len(key) <= MAX_KEY and HEADER_NAME.fullmatch(key)):
        return None
    if not (type(n) is int and 0 <= n <= MAX_EVENTS):
        return None
    if enc not in ENCODER_NAMES or not isinstance(gz, bool):
        return None
    if not (isinstance(body, bytes) and len(body) <= MAX_FRAME):
        return None
    return SpilledBatch(key, n, enc, gz, body, bid if type(bid) is int else None)


@dataclass
class ReadResult:
    """What :func:`read_frames` found in one file."""

    frames: list[dict[str, Any]]
    corrupt: int  # damaged regions skipped
    version_ok: bool


# Resynchronising. Checking a candidate frame costs its length (a checksum,
# maybe a decode), so a file crafted with a plausible frame start at every
# byte would cost time quadratic in its size. Candidates are found by a
# regular expression (in C), must look like a frame start (a length that
# fits, a msgpack map marker where the payload starts) and be followed by
# another plausible frame start or the end; and the bytes spent on
# candidates that prove not to be frames may not exceed a base plus a few
# per byte of the file read so far. A damaged file written by logship never
# comes near that bound; a crafted one is read in linear time, and a frame
# it hides past the bound is skipped like damage.
RESYNC_BASE_WORK = 1 << 20
RESYNC_WORK_PER_BYTE = 4
_MAP_MARKERS = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])


@functools.lru_cache(maxsize=32)
def _candidate_pattern(first_byte_max: int) -> re.Pattern[bytes]:
    """Positions whose length's first byte is at most ``first_byte_max`` and whose payload
    starts with a map marker."""
    top = re.escape(bytes([first_byte_max]))
    return re.compile(rb"(?=[\x00-" + top + rb"][\x00-\xff]{7}[\x80-\x8f\xde\xdf])")


def _frame_at(data: Any, pos: int, end: int) -> tuple[dict[str, Any] | None, int]:
    """``(payload, where the next frame starts)`` for a good frame at ``pos``.

    ``(None, bytes spent)`` when there is none: 0 when its header alone rules
    it out, its length when its checksum or its payload did.
    """
    length, crc = _FRAME.unpack_from(data, pos)
    body_start = pos + FRAME_OVERHEAD
    if length > MAX_FRAME or body_start + length > end:
        return None, 0
    body = data[body_start : body_start + length]
    if zlib.crc32(body) != crc:
        return None, length
    try:
        payload = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception:
        return None, length
    if not isinstance(payload, dict):
        return None, length
    return payload, body_start + length


def _plausible_start(data: Any, pos: int, end: int) -> bool:
    """Whether a frame could start at ``pos`` (or the data ends there, or is cut short)."""
    if pos + FRAME_OVERHEAD >= end:
        return True  # the end, or a torn tail: nothing to hold against it
    length = _FRAME.unpack_from(data, pos)[0]
    return length <= MAX_FRAME and data[pos + FRAME_OVERHEAD] in _MAP_MARKERS


class _Resync:
    """Finds the next good frame past damage, spending bounded work on false starts."""

    def __init__(self, data: Any, start: int) -> None:
        self.data, self.start, self.end = data, start, len(data)
        self.pattern = _candidate_pattern(min(MAX_FRAME, self.end) >> 24)
        self.wasted = 0  # bytes checked for candidates that were not frames

    def next_frame(self, pos: int) -> tuple[int, dict[str, Any], int] | None:
        """``(offset, payload, next offset)`` of the first good frame at or after ``pos``."""
        data, end = self.data, self.end
        for m in self.pattern.finditer(data, pos, end):
            q = m.start()
            if q + FRAME_OVERHEAD > end:
                break
            length = _FRAME.unpack_from(data, q)[0]
            after = q + FRAME_OVERHEAD + length
            if length > MAX_FRAME or after > end or not _plausible_start(data, after, end):
                continue
            allowance = RESYNC_BASE_WORK + RESYNC_WORK_PER_BYTE * (q - self.start)
            if self.wasted + length > allowance:
                continue
            payload, spent = _frame_at(data, q, end)
            if payload is not None:
                return q, payload, spent
            self.wasted += spent
        return None


def iter_frames(data: Any, start: int = len(FILE_HEADER)) -> Generator[tuple[int, Any], None, None]:
    """Yield ``(offset, payload)`` for good frames, ``(offset, None)`` once per damaged stretch.

    ``data`` is ``bytes`` or any buffer that slices to ``bytes`` (an ``mmap``).
    """
    pos, end = start, len(data)
    resync: _Resync | None = None
    while pos + FRAME_OVERHEAD <= end:
        payload, after = _frame_at(data, pos, end)
        if payload is not None:
            yield pos, payload
            pos = after
            continue
        yield pos, None  # the start of a damaged stretch
        resync = resync or _Resync(data, start)
        found = resync.next_frame(pos + 1)
        if found is None:
            return
        pos, payload, after = found
        yield pos, payload
        pos = after
    if pos < end:
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
