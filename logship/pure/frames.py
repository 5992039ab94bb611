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
made, and never holds the GIL for more than a slice of it (see
:func:`iter_frames`).

A frame that reads back is still not trusted: :func:`read_batch` checks every
field of a spilled batch, its event count against what its body can hold,
and a frame that fails counts as damaged. (A CRC32 detects accidents, not
forgery: anyone who can write the file can fix up a checksum.)
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import msgpack

from logship.pure.encoding import has_nonstring_keys, inflated_bound
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
#: No encoding holds an event in fewer bytes: ``msgpack`` holds an empty one in one.
MIN_EVENT_BYTES = 1


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
    """The event count a sealed frame shows in the clear; None when it shows none.

    A count its sealed bytes could not hold, even as gzip, is none either.
    """
    n, blob = payload.get(CLEAR_COUNT), payload.get(SEALED)
    if type(n) is not int or not isinstance(blob, bytes):
        return None
    return n if 0 <= n <= _most_events(inflated_bound(len(blob))) else None


def max_events(body: bytes, gzipped: bool) -> int:
    """The most events a batch ``body`` can hold, in any encoding, without decoding it.

    A spilled count above it was not written by logship: a frame whose
    checksum was made again after its count was changed.
    """
    return _most_events(inflated_bound(len(body), body) if gzipped else len(body))


def _most_events(raw_size: int) -> int:
    return min(MAX_EVENTS, raw_size // MIN_EVENT_BYTES)


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
    count a non-negative int, no more than the body can hold (:func:`max_events`:
    a forged count would pass for that many events adopted and shipped); an
    encoding and a compression flag from the known set; a body bytes, bounded
    by the frame.
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
    if n > max_events(body, gz):
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
# byte would cost time quadratic in its size. A candidate must look like a
# frame start: a length that fits, a msgpack map marker where the payload
# starts and a string marker after it (every map logship writes is keyed by
# strings), and be followed by another plausible frame start or the end.
#
# Candidates are found one window at a time, in C: each byte is translated to
# its class bits, the three conditions are joined in one big integer, and what
# is left is found with bytes.find. That costs a few nanoseconds a byte, and
# the GIL is held for one window at a time, never for the whole file: the
# application's threads and its exit are not kept waiting by a large file.
#
# The work spent on candidates (a fixed cost for looking at one, plus the
# bytes of any checksum computed in vain) may not exceed a base plus a few per
# byte of the file read so far; past that, the search jumps ahead to where the
# allowance covers it. A damaged file written by logship never comes near that
# bound; a crafted one is read in linear time, and a frame it hides past the
# bound is skipped like damage.
RESYNC_BASE_WORK = 1 << 20
RESYNC_WORK_PER_BYTE = 4
#: What looking at one candidate costs (in Python, where the search is in C), in bytes of work.
RESYNC_CANDIDATE_WORK = 1024
#: The bytes searched for candidates in one go: well under a millisecond with the GIL held.
RESYNC_WINDOW = 64 * 1024
_MAP_MARKERS = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])
_KEY_MARKERS = frozenset([*range(0xA0, 0xC0), 0xD9, 0xDA, 0xDB])
_MAP_CLASS = 2  # a map marker's class bits: it is never a length's first byte nor a key's marker
_FIRST_BIT = bytes(b & 1 for b in range(256))


@functools.lru_cache(maxsize=32)
def _classes(first_byte_max: int) -> bytes:
    """A ``bytes.translate`` table: bit 0 for a byte a length may start with (at most
    ``first_byte_max``), bit 1 for a map marker, bit 2 for a string marker."""
    return bytes(
        (b <= first_byte_max) | (b in _MAP_MARKERS) << 1 | (b in _KEY_MARKERS) << 2
        for b in range(256)
    )


def _candidates(data: Any, start: int, stop: int, classes: bytes) -> bytes:
    """One byte per offset in ``[start, stop)``: 1 where a length may start, with a map
    marker 8 bytes on and a string marker 9 bytes on; 0 elsewhere."""
    window = data[start : stop + FRAME_OVERHEAD + 1]
    marks = window.translate(classes)
    if _MAP_CLASS not in marks:
        return b""  # no map marker at all: zeros, text, a hole in a sparse file
    bits = int.from_bytes(marks, "little")
    # Bit 8i is byte i's bit 0; shifted by 65 and by 74, bit 1 of byte i+8 and bit 2
    # of byte i+9 land on it. Only bit 0 of each byte of the result means anything.
    joined = bits & (bits >> 65) & (bits >> 74)
    return joined.to_bytes(len(window), "little")[: stop - start].translate(_FIRST_BIT)


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
    """Finds the next good frame past damage, spending bounded work on false starts.

    One per file read: every byte is searched for candidates once, however
    many damaged stretches the file has.
    """

    def __init__(self, data: Any, start: int) -> None:
        self.data, self.start, self.end = data, start, len(data)
        self.classes = _classes(min(MAX_FRAME, self.end) >> 24)
        self.work = 0  # spent on candidates: looking at them, checksums that failed
        self.hits = b""  # the window searched last, as _candidates gives it
        self.hits_at = self.searched = start  # where that window starts, and ends

    def _allowance(self, pos: int) -> int:
        return RESYNC_BASE_WORK + RESYNC_WORK_PER_BYTE * (pos - self.start)

    def _affordable(self) -> int:
        """The first offset whose allowance covers the work spent so far."""
        return self.start + -(-(self.work - RESYNC_BASE_WORK) // RESYNC_WORK_PER_BYTE)

    def _candidate(self, pos: int) -> int | None:
        """The first candidate at or after ``pos``, searching on a window at a time."""
        while True:
            if pos < self.searched:
                i = self.hits.find(1, max(0, pos - self.hits_at))
                if i >= 0:
                    return self.hits_at + i
                pos = self.searched
            if pos >= self.end:
                return None
            stop = min(self.end, pos + RESYNC_WINDOW)
            self.hits, self.hits_at, self.searched = (
                _candidates(self.data, pos, stop, self.classes),
                pos,
                stop,
            )

    def next_frame(self, pos: int) -> tuple[int, dict[str, Any], int] | None:
        """``(offset, payload, next offset)`` of the first good frame at or after ``pos``."""
        data, end = self.data, self.end
        while (q := self._candidate(pos)) is not None:
            pos = q + 1
            self.work += RESYNC_CANDIDATE_WORK
            allowance = self._allowance(q)
            if self.work > allowance:
                pos = max(pos, self._affordable())  # what lies between is skipped
                continue
            length = _FRAME.unpack_from(data, q)[0]
            after = q + FRAME_OVERHEAD + length
            if length > MAX_FRAME or after > end or not _plausible_start(data, after, end):
                continue
            if self.work + length > allowance:
                continue
            payload, spent = _frame_at(data, q, end)
            if payload is not None:
                return q, payload, spent
            self.work += spent
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
