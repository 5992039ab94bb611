"""The region of ``durability="crash"``: its segment layout, its records, its mark. Pure.

With ``durability="crash"`` every event is written, inside the log call, to
a segment of the *region*: a file of the spill folder mapped ``MAP_SHARED``,
so that the kernel's page cache keeps what was written when the process is
killed. A segment is::

    magic    b"LSHR"          4 bytes
    version                   1 byte
    reserved                  3 bytes (zero)
    mark     two slots        2 x 16 bytes (see below)
    header   one frame        a msgpack map: owner, salt, endpoint, fields, ...
    record*                   one frame each
    zeros                     to the end: the space reserved when it was made

and a frame is a 4-byte big-endian length, a 4-byte big-endian CRC32 of the
payload, and the payload (the spill's frame layout, ``pure.frames``). A
record's payload is a msgpack array in :data:`RECORD_FIELDS`' order.

One thread writes a segment's records at a time, in sequence order, so a
kill can tear only the last record: its frame fails its checksum, or a
zero header is followed by bytes that are not zero. Either way it is
counted as damage and reading stops there (:func:`read_segment`).

The *mark* says which records are still unresolved (:class:`Mark`): those
from a watermark on (the ring), and those in the few batches below it that
only memory holds (waiting or in flight); every other event was delivered,
dropped, rejected or written to the spill. A batch retried for the whole of
an outage so holds back only its own records, never the region. The mark
is kept in two slots, each with a generation and a CRC32, written in turn:
a kill while one is being written leaves the other, an older mark, which
costs a resent event, never a lost one (:func:`read_mark`).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from logship.pure.event import Origin, jsonable
from logship.pure.frames import encode_frame
from logship.pure.options import CORE_FIELDS

MAGIC = b"LSHR"
VERSION = 1
FILE_HEADER = MAGIC + bytes([VERSION, 0, 0, 0])
#: A record's (and the header's) frame head: length, CRC32 of the payload.
FRAME = struct.Struct(">II")
#: A mark holds at most this many batches below its watermark (more are merged).
MAX_HELD = 16
# A slot: generation, watermark, number of held ranges, the ranges, CRC32 of all before it.
_SLOT_HEAD = struct.Struct(">QQI")
_RANGE = struct.Struct(">QQ")
_CRC = struct.Struct(">I")
SLOT_SIZE = _SLOT_HEAD.size + MAX_HELD * _RANGE.size + _CRC.size
MARK_AT = len(FILE_HEADER)
SLOTS = 2
#: Where the header frame starts.
HEADER_AT = MARK_AT + SLOTS * SLOT_SIZE
#: A segment's size, unless one record needs more.
SEGMENT_SIZE = 1024 * 1024
PAGE = 4096

#: What a record holds, in order: enough to build the event again.
RECORD_FIELDS = (
    "seq",
    "created",
    "levelname",
    "name",
    "process",
    "threadName",
    "module",
    "funcName",
    "lineno",
    "message",
    "exception",
    "stack",
    "context",
    "extras",
    "payload",
)
_N_FIELDS = len(RECORD_FIELDS)
# The record attributes a record holds (the rest come from the call).
_RECORD_ATTRS = RECORD_FIELDS[1:9]


# -- the mark ------------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    """Which events of a region are unresolved: from ``low`` on, and those in ``held``.

    ``held`` are inclusive ranges of sequence numbers below ``low``, sorted
    and apart: the batches that only memory held when the mark was taken.
    ``gen`` orders marks: a restart takes the highest it finds.
    """

    low: int = 0
    held: tuple[tuple[int, int], ...] = ()
    gen: int = 0

    def pending(self, seq: int) -> bool:
        """Whether event ``seq`` may still be unresolved."""
        return seq >= self.low or any(lo <= seq <= hi for lo, hi in self.held)

    def touches(self, start: int, stop: int) -> bool:
        """Whether any event from ``start`` to before ``stop`` may still be unresolved."""
        return stop > self.low or any(lo < stop and hi >= start for lo, hi in self.held)

    def resolved_below(self, seq: int) -> Mark:
        """This mark, with every event below ``seq`` resolved too (the next generation)."""
        held = [(max(lo, seq), hi) for lo, hi in self.held if hi >= seq]
        return make_mark(max(self.low, seq), held, self.gen + 1)

    def same_as(self, other: Mark) -> bool:
        """The same events unresolved (whatever the generation)."""
        return self.low == other.low and self.held == other.held


#: The mark of a segment with no valid slot: everything in it may be unresolved.
NOTHING_RESOLVED = Mark()


def make_mark(low: int, held: Iterable[tuple[int, int]], gen: int) -> Mark:
    """A mark from a watermark and the ranges held in memory below it.

    Ranges are clipped below ``low``, and merged when they touch; past
    :data:`MAX_HELD`, the two closest are merged into one that spans both
    (which holds back the events between them too: a resend, not a loss).
    """
    ranges = sorted((lo, min(hi, low - 1)) for lo, hi in held if lo < low and lo <= hi)
    merged: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    while len(merged) > MAX_HELD:
        i = min(range(len(merged) - 1), key=lambda k: merged[k + 1][0] - merged[k][1])
        merged[i : i + 2] = [(merged[i][0], merged[i + 1][1])]
    return Mark(low, tuple(merged), gen)


def mark_slot(mark: Mark) -> bytes:
    """The bytes of a slot holding ``mark`` (:data:`SLOT_SIZE`, whatever it holds)."""
    body = _SLOT_HEAD.pack(mark.gen, mark.low, len(mark.held))
    body += b"".join(_RANGE.pack(lo, hi) for lo, hi in mark.held)
    body = body.ljust(SLOT_SIZE - _CRC.size, b"\0")
    return body + _CRC.pack(zlib.crc32(body))


def mark_offset(slot: int) -> int:
    """Where slot ``slot`` (0 or 1) lies in a segment."""
    return MARK_AT + (slot % SLOTS) * SLOT_SIZE


def read_mark(data: bytes | Any) -> Mark:
    """The mark of the highest generation among the slots that check; :data:`NOTHING_RESOLVED`
    when none does."""
    found = []
    for slot in range(SLOTS):
        at = mark_offset(slot)
        if len(data) < at + SLOT_SIZE:
            break
        body = bytes(data[at : at + SLOT_SIZE - _CRC.size])
        if _CRC.unpack_from(data, at + SLOT_SIZE - _CRC.size)[0] != zlib.crc32(body):
            continue
        gen, low, n = _SLOT_HEAD.unpack_from(body)
        if n <= MAX_HELD:
            at = _SLOT_HEAD.size
            held = tuple(_RANGE.unpack_from(body, at + i * _RANGE.size) for i in range(n))
            found.append(Mark(low, held, gen))
    return max(found, key=lambda m: m.gen, default=NOTHING_RESOLVED)


# -- a segment -----------------------------------------------------------------------


def segment_prefix(header: Mapping[str, Any]) -> bytes:
    """A new segment's bytes before its first record: magic, empty mark slots, header."""
    return FILE_HEADER + bytes(SLOTS * SLOT_SIZE) + encode_frame({"kind": "region", **header})


def segment_size(prefix: int, record: int) -> int:
    """The size of a segment whose prefix takes ``prefix`` bytes and that must hold ``record``."""
    need = prefix + record
    return max(SEGMENT_SIZE, -(-need // PAGE) * PAGE)


@dataclass(frozen=True)
class JournalRecord:
    """One record read back from a segment, its shape checked."""

    seq: int
    record: Origin
    message: str
    exception: str | None
    stack: str | None
    context: dict[str, Any] | None
    extras: dict[str, Any] | None
    payload: dict[Any, Any] | None


def read_record(payload: Any) -> JournalRecord | None:
    """The record a checked frame holds, or None when it is not one this version writes.

    The attributes logging set may be of any type (the event builder copes
    with odd ones, as it does on the live path); the sequence number, the
    texts and the three mappings must be what the writer puts there.
    """
    if not isinstance(payload, list) or len(payload) != _N_FIELDS:
        return None
    seq, message, exception, stack = payload[0], payload[9], payload[10], payload[11]
    if type(seq) is not int or seq < 0 or not isinstance(message, str):
        return None
    if not all(t is None or isinstance(t, str) for t in (exception, stack)):
        return None
    if not all(m is None or isinstance(m, dict) for m in payload[12:]):
        return None
    return JournalRecord(
        seq, Origin(payload[1], None, *payload[2:9]), message, exception, stack, *payload[12:]
    )


def fallback_fields(values: Sequence[Any]) -> list[Any]:
    """A record's fields made packable, for a record msgpack refused as it was.

    Values msgpack cannot hold (an integer over 64 bits, a lone surrogate)
    become what ``jsonable`` makes of them; a mapping field that is not a
    mapping is left out. Rare: ``extra=`` values are resolved at the call.
    """
    out = [jsonable(v, strict=True) for v in values]
    out[12:] = [v if isinstance(v, dict) else None for v in out[12:]]
    return out


def record_values(
    seq: int,
    record: Any,
    message: str,
    exception: str | None,
    stack: str | None,
    context: Any,
    extras: Any,
    payload: Any,
) -> list[Any]:
    """A record's fields read one by one, an attribute that cannot be read as None."""
    attrs = []
    for name in _RECORD_ATTRS:
        try:
            attrs.append(getattr(record, name))
        except Exception:
            attrs.append(None)
    return [seq, *attrs, message, exception, stack, context, extras, payload]


@dataclass
class Segment:
    """What :func:`read_segment` found in one segment."""

    header: dict[str, Any] | None  # None: not a segment this version reads
    mark: Mark = NOTHING_RESOLVED
    records: list[JournalRecord] = field(default_factory=list)
    corrupt: int = 0  # damaged stretches: a torn last record, a bad header


def read_segment(data: bytes) -> Segment:
    """Parse a segment's bytes; never raises.

    Reading stops at the first zero frame head (nothing was written past
    it), or at the first frame that fails its checksum; bytes that are not
    zero after where it stopped are a torn or damaged record, counted once.
    A frame that checks but holds no record is skipped and counted.
    """
    end = len(data)
    if data.count(0, 0, min(end, HEADER_AT + FRAME.size)) == min(end, HEADER_AT + FRAME.size):
        # Nothing written yet: a spare the process was making when it died (the
        # file is created, then reserved, then its header written). No event was
        # ever in it, so nothing is damaged.
        return Segment(None)
    if end < HEADER_AT + FRAME.size or data[:4] != MAGIC or data[4] != VERSION:
        return Segment(None, corrupt=1)
    header, pos = _frame(data, HEADER_AT, end)
    if not isinstance(header, dict) or header.get("kind") != "region":
        return Segment(None, corrupt=1)
    out = Segment(header, read_mark(data))
    while pos + FRAME.size <= end:
        length, crc = FRAME.unpack_from(data, pos)
        if length == 0 and crc == 0:
            break
        payload, after = _frame(data, pos, end)
        if after == 0:
            break
        record = read_record(payload)
        if record is None:
            out.corrupt += 1
        else:
            out.records.append(record)
        pos = after
    if data.count(0, pos, end) != end - pos:
        out.corrupt += 1  # a record torn by the kill, or damage
    return out


def _frame(data: bytes, pos: int, end: int) -> tuple[Any, int]:
    """``(payload, next position)`` of the frame at ``pos``; ``(None, 0)`` when it fails.

    A frame whose checksum holds but whose payload is not msgpack yields
    ``(None, next position)``: its neighbours are intact.
    """
    if pos + FRAME.size > end:
        return None, 0
    length, crc = FRAME.unpack_from(data, pos)
    start = pos + FRAME.size
    if length > end - start:
        return None, 0
    body = data[start : start + length]
    if zlib.crc32(body) != crc:
        return None, 0
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=False), start + length
    except Exception:
        return None, start + length


# -- what a restart replays ------------------------------------------------------------------


@dataclass
class Region:
    """The segments of one handler's region, as found after its process died."""

    header: dict[str, Any]
    mark: Mark = NOTHING_RESOLVED
    records: list[JournalRecord] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # of its segments


def region_key(header: Mapping[str, Any]) -> tuple[str, bytes]:
    """What identifies a region across its segments: its owner and salt."""
    owner, salt = header.get("owner"), header.get("salt")
    return (owner if isinstance(owner, str) else "", salt if isinstance(salt, bytes) else b"")


def regions_of(segments: Iterable[tuple[str, Segment]]) -> list[Region]:
    """The regions that segments (each with its path) belong to, with the records to replay.

    A region's mark is the latest any of its segments holds (the keeper
    writes it to every segment it keeps); records it says are resolved are
    left out; a sequence number seen twice is replayed once; the rest are in
    sequence order. A segment that is not one (no header) belongs to none.
    """
    found: dict[tuple[str, bytes], tuple[Region, dict[int, JournalRecord]]] = {}
    for path, seg in segments:
        if seg.header is None:
            continue
        key = region_key(seg.header)
        region, records = found.setdefault(key, (Region(seg.header), {}))
        if seg.mark.gen > region.mark.gen:
            region.mark = seg.mark
        region.paths.append(path)
        for r in seg.records:
            records.setdefault(r.seq, r)
    out = []
    for region, records in found.values():
        region.records = [records[s] for s in sorted(records) if region.mark.pending(s)]
        out.append(region)
    return out


def deletable(first_seqs: Sequence[int], mark: Mark) -> list[int]:
    """Which of a region's segments hold only resolved records, by index.

    ``first_seqs``: the first sequence number each segment was opened with,
    oldest first; the last one is being written and is never deletable.
    Segment ``i`` holds sequence numbers from ``first_seqs[i]`` to before
    ``first_seqs[i + 1]``.
    """
    return [
        i for i in range(len(first_seqs) - 1) if not mark.touches(first_seqs[i], first_seqs[i + 1])
    ]


def salt_of(header: Mapping[str, Any]) -> int | None:
    """The uuid salt a region's header records (see ``uuid7.uuid7_derived``)."""
    salt = header.get("salt")
    return int.from_bytes(salt, "big") if isinstance(salt, bytes) and len(salt) == 10 else None


def fields_of(header: Mapping[str, Any]) -> dict[str, Any]:
    """The ``fields`` option of the handler that wrote a region, as its header records it.

    Names that are not text or that name a core field are left out (the
    header comes from a file: the same rules as the option's).
    """
    fields = header.get("fields")
    if not isinstance(fields, dict):
        return {}
    return {k: v for k, v in fields.items() if isinstance(k, str) and k not in CORE_FIELDS}


def text_of(header: Mapping[str, Any], name: str) -> str | None:
    """A text a region's header records (``host``, ``kernel``), or None."""
    value = header.get(name)
    return value if isinstance(value, str) else None
