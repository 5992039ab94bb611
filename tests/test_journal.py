"""The region's pure parts (``durability="crash"``), from tables: records as the writer
packs them, the mark and its two slots, torn records, which segments may go, what a
restart replays, and uuids that a restart makes again. No threads, no files."""

from __future__ import annotations

import logging
import mmap
import uuid
from types import MappingProxyType
from typing import Any

import msgpack
import pytest

from logship.journal import JournalWriter
from logship.pure import journal as jr
from logship.pure import uuid7
from logship.pure.event import EventBuilder
from logship.pure.eventjson import JsonEventWriter
from logship.pure.journal import Mark, make_mark
from logship.ring import Item

HEADER = {"owner": "abcd1234.1.2.deadbeef", "salt": bytes(range(10)), "fields": {"svc": "a"}}


class Segment:
    """An anonymous mapping in place of a file: what the writer sees of a segment."""

    def __init__(self, size: int = 64 * 1024, header: dict[str, Any] = HEADER) -> None:
        self.prefix = jr.segment_prefix(header)
        self.map = mmap.mmap(-1, size)
        self.map.write(self.prefix)
        self.first_seq = 0

    def data(self) -> bytes:
        return self.map[:]


class Ring:
    journal: Any = None


def writer_on(seg: Segment) -> JournalWriter[Segment]:
    w: JournalWriter[Segment] = JournalWriter(Ring(), lambda room: Segment(), lambda: None, 8)
    w.install(seg, 0)
    return w


def record(msg: str = "user %s did %s", args: tuple[Any, ...] = (1, "x")) -> logging.LogRecord:
    return logging.LogRecord("app", logging.INFO, "/srv/app.py", 42, msg, args, None, func="f")


def write(w: JournalWriter[Segment], seq: int, **kw: Any) -> None:
    rec = kw.pop("rec", None) or record()
    args = {
        "message": rec.getMessage(),
        "exception": None,
        "stack": None,
        "context": None,
        "extras": None,
        "payload": None,
        **kw,
    }
    w.append(seq, rec, **args)


# -- records ---------------------------------------------------------------------------------


def test_a_record_reads_back_with_everything_the_event_needs():
    seg = Segment()
    w = writer_on(seg)
    rec = record()
    ctx = MappingProxyType({"request_id": "r-1"})  # bound context is a read-only mapping
    write(w, 7, rec=rec, exception="Traceback…", context=ctx, extras={"n": [1, 2]})
    found = jr.read_segment(seg.data())
    assert found.corrupt == 0 and found.header is not None
    assert found.header["owner"] == HEADER["owner"]
    (r,) = found.records
    assert r.seq == 7 and r.message == "user 1 did x" and r.exception == "Traceback…"
    assert r.context == {"request_id": "r-1"} and r.extras == {"n": [1, 2]}
    view = r.record
    assert (view.created, view.levelname, view.name, view.lineno) == (
        rec.created,
        "INFO",
        "app",
        42,
    )
    assert (view.process, view.threadName, view.module, view.funcName) == (
        rec.process,
        rec.threadName,
        "app",
        "f",
    )


class Loud(str):
    def __str__(self) -> str:
        return "never called"


@pytest.mark.parametrize(
    ("extras", "expected"),
    [
        ({"big": 2**70}, {"big": str(2**70)}),  # msgpack holds 64 bits
        ({"s": "\ud800"}, {"s": "\\ud800"}),  # nor a lone surrogate
        ({"sub": Loud("plain")}, {"sub": "plain"}),  # a str subclass: its plain value
        ({"t": (1, 2)}, {"t": [1, 2]}),
        # Anything else (only a record attribute a filter set can be): its type, not its
        # repr, which would run the application's code inside the ring's lock.
        ({"odd": {1, 2}}, {"odd": "<set>"}),
        ({"odd": Loud}, {"odd": "<type>"}),
    ],
)
def test_values_msgpack_refuses_are_packed_as_the_encoders_write_them(extras, expected):
    seg = Segment()
    write(writer_on(seg), 1, extras=extras)
    (r,) = jr.read_segment(seg.data()).records
    assert r.extras == expected


def test_an_odd_record_attribute_runs_no_code_of_its_own_in_the_region():
    class Watched:
        def __repr__(self) -> str:
            raise AssertionError("repr called inside the ring's lock")

        __str__ = __repr__

    seg = Segment()
    rec = record()
    rec.funcName = Watched()  # type: ignore[assignment]
    write(writer_on(seg), 2, rec=rec)
    (r,) = jr.read_segment(seg.data()).records
    assert r.seq == 2 and r.record.funcName == "<Watched>"


def test_a_record_whose_attributes_cannot_be_read_is_still_written():
    class Hostile(logging.LogRecord):
        def __getattribute__(self, name: str) -> Any:
            if name == "levelname":
                raise RuntimeError("no")
            return super().__getattribute__(name)

    seg = Segment()
    rec = Hostile("app", logging.INFO, "/srv/app.py", 1, "m", None, None)
    write(writer_on(seg), 3, rec=rec, message="m")
    (r,) = jr.read_segment(seg.data()).records
    assert r.seq == 3 and r.message == "m" and r.record.levelname is None


@pytest.mark.parametrize(
    "payload",
    [
        None,
        {"seq": 1},
        [1, 2, 3],
        [-1, 0.0, "INFO", "a", 1, "t", "m", "f", 1, "msg", None, None, None, None, None],
        [1, 0.0, "INFO", "a", 1, "t", "m", "f", 1, b"bytes", None, None, None, None, None],
        [1, 0.0, "INFO", "a", 1, "t", "m", "f", 1, "msg", 5, None, None, None, None],
        [1, 0.0, "INFO", "a", 1, "t", "m", "f", 1, "msg", None, None, [], None, None],
    ],
)
def test_a_frame_that_is_not_a_record_is_refused(payload):
    assert jr.read_record(payload) is None


def test_a_valid_record_shape():
    row = [1, 0.0, "INFO", "a", 1, "t", "m", "f", 1, "msg", None, "stack", {}, {"k": 1}, None]
    r = jr.read_record(row)
    assert r is not None and r.stack == "stack" and r.extras == {"k": 1}


# -- torn and damaged segments ----------------------------------------------------------------


def segment_with(n: int) -> tuple[Segment, list[int]]:
    """A segment of ``n`` records (seq 0..n-1) and where each record starts."""
    seg = Segment()
    w = writer_on(seg)
    starts = []
    for i in range(n):
        starts.append(seg.map.tell())
        write(w, i)
    return seg, starts


@pytest.mark.parametrize("written", [4, 6, 8, 9, 20, -1])
def test_a_record_torn_by_a_kill_is_detected_and_the_rest_read(written):
    """The kill stopped the copy of the last record after ``written`` bytes of it.

    (Its first bytes are its length's high bytes, zero: had only those been
    copied, nothing would show, and nothing would be lost either.)
    """
    seg, starts = segment_with(5)
    data = bytearray(seg.data())
    last, end = starts[-1], seg.map.tell()
    cut = last + (written if written >= 0 else end - last - 1)
    data[cut:end] = bytes(end - cut)
    found = jr.read_segment(bytes(data))
    assert [r.seq for r in found.records] == [0, 1, 2, 3]
    assert found.corrupt == 1


def test_a_record_whose_head_was_not_written_yet_is_torn_too():
    """memcpy may store the end of a record before its start."""
    seg, starts = segment_with(3)
    data = bytearray(seg.data())
    data[starts[-1] : starts[-1] + 8] = bytes(8)
    found = jr.read_segment(bytes(data))
    assert [r.seq for r in found.records] == [0, 1] and found.corrupt == 1


def test_a_clean_end_is_no_damage():
    seg, _ = segment_with(3)
    found = jr.read_segment(seg.data())
    assert [r.seq for r in found.records] == [0, 1, 2] and found.corrupt == 0


def test_a_frame_that_checks_but_holds_no_record_is_skipped_and_counted():
    seg, _ = segment_with(2)
    junk = msgpack.packb({"not": "a record"})
    import zlib

    seg.map.write(jr.FRAME.pack(len(junk), zlib.crc32(junk)) + junk)
    write(writer_on_at(seg), 2)
    found = jr.read_segment(seg.data())
    assert [r.seq for r in found.records] == [0, 1, 2] and found.corrupt == 1


def writer_on_at(seg: Segment) -> JournalWriter[Segment]:
    w: JournalWriter[Segment] = JournalWriter(Ring(), lambda room: Segment(), lambda: None, 8)
    w.install(seg, 0)  # writes on from where the mapping stands
    return w


@pytest.mark.parametrize(
    "data",
    [b"LSHR", b"NOPE" + bytes(600), b"LSHR\x02\x00\x00\x00" + bytes(600), b"\x00L" + bytes(600)],
)
def test_what_is_not_a_segment_is_counted_once(data):
    found = jr.read_segment(data)
    assert found.header is None and found.records == [] and found.corrupt == 1


@pytest.mark.parametrize("data", [b"", bytes(4096), bytes(jr.SEGMENT_SIZE)])
def test_a_spare_the_process_died_making_is_no_damage(data):
    """Created, or reserved, but its header not yet written: no event was ever in it."""
    found = jr.read_segment(data)
    assert found.header is None and found.records == [] and found.corrupt == 0


def test_random_damage_never_raises():
    import random

    rng = random.Random(3)
    seg, _ = segment_with(20)
    base = seg.data()
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        jr.read_segment(bytes(data[: rng.randrange(len(data) + 1)]))


# -- segments fill and move on ----------------------------------------------------------------


def test_a_full_segment_moves_on_to_the_spare_without_losing_a_record():
    first, spare = Segment(size=4096), Segment(size=64 * 1024)
    woken = []
    w: JournalWriter[Segment] = JournalWriter(Ring(), lambda room: Segment(), woken.append, 8)
    w.wake = lambda: woken.append(1)
    w.install(first, 0)
    w.spare = spare
    for i in range(100):
        write(w, i)
    assert w.segments == [first, spare] and spare.first_seq > 0 and w.spare is None
    seqs = [r.seq for s in (first, spare) for r in jr.read_segment(s.data()).records]
    assert seqs == list(range(100)) and woken


def test_a_record_larger_than_a_segment_gets_one_of_its_own():
    made: list[int] = []

    def make(room: int) -> Segment:
        made.append(room)
        return Segment(size=room + 4096)

    first = Segment(size=4096)
    w: JournalWriter[Segment] = JournalWriter(Ring(), make, lambda: None, 8)
    w.install(first, 0)
    write(w, 0, message="x" * 10_000)
    assert len(made) == 1 and made[0] > 10_000
    (r,) = jr.read_segment(w.segments[-1].data()).records
    assert r.message == "x" * 10_000


def test_when_no_segment_can_be_made_the_region_turns_off_and_counts():
    ring = Ring()

    def refuse(room: int) -> Segment:
        raise OSError(28, "No space left on device")

    w: JournalWriter[Segment] = JournalWriter(ring, refuse, lambda: None, 8)  # type: ignore[arg-type]
    w.install(Segment(size=4096), 0)
    assert ring.journal == w.append
    for i in range(60):
        if ring.journal is not None:
            write(w, i)
    assert ring.journal is None and isinstance(w.error, OSError)
    first_missed = w.off_since
    assert first_missed is not None
    assert w.not_durable(60) == 60 - first_missed
    w.install(Segment(), 60)  # the worker made one: on again
    assert ring.journal == w.append and w.not_durable(80) == 60 - first_missed


def test_a_stuck_worker_cannot_grow_the_region_past_its_bound():
    ring = Ring()
    w: JournalWriter[Segment] = JournalWriter(ring, lambda room: Segment(4096), lambda: None, 2)
    w.install(Segment(size=4096), 0)
    i = 0
    while ring.journal is not None and i < 1000:
        write(w, i)
        i += 1
    assert len(w.segments) == 2 and ring.journal is None and "region is full" in str(w.error)


# -- the mark -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("low", "held", "expected"),
    [
        (10, [], ()),
        (10, [(2, 4)], ((2, 4),)),
        (10, [(2, 4), (5, 6)], ((2, 6),)),  # touching ranges are one
        (10, [(5, 6), (2, 4), (3, 3)], ((2, 6),)),
        (10, [(8, 12)], ((8, 9),)),  # clipped below the watermark
        (10, [(10, 12)], ()),  # the ring's part already
        (10, [(4, 2)], ()),  # empty
        (100, [(i * 5, i * 5 + 1) for i in range(18)], None),  # past MAX_HELD: merged
    ],
)
def test_make_mark(low, held, expected):
    mark = make_mark(low, held, 1)
    if expected is not None:
        assert mark.held == expected
    assert len(mark.held) <= jr.MAX_HELD
    for lo, hi in held:  # never fewer events pending than asked
        for seq in range(lo, hi + 1):
            assert mark.pending(seq)


MARK = Mark(100, ((10, 19), (40, 40)), 3)


@pytest.mark.parametrize(
    ("seq", "pending"),
    [
        (0, False),
        (10, True),
        (19, True),
        (20, False),
        (40, True),
        (41, False),
        (99, False),
        (100, True),
        (10**9, True),
    ],
)
def test_mark_pending(seq, pending):
    assert MARK.pending(seq) is pending


@pytest.mark.parametrize(
    ("start", "stop", "touches"),
    [
        (0, 10, False),
        (0, 11, True),
        (20, 40, False),
        (20, 41, True),
        (41, 100, False),
        (41, 101, True),
        (19, 20, True),
    ],
)
def test_mark_touches(start, stop, touches):
    assert MARK.touches(start, stop) is touches


@pytest.mark.parametrize(
    ("firsts", "gone"),
    [
        ([0], []),  # the one being written never goes
        ([0, 10, 20, 120], [0]),  # 10..19 is held, 20..119 crosses the watermark
        ([0, 5], [0]),
        ([0, 10], [0]),
        ([0, 11], []),
        ([20, 40, 41, 90, 200], [0, 2]),
    ],
)
def test_which_segments_may_go(firsts, gone):
    assert jr.deletable(firsts, MARK) == gone


def test_resolved_below_keeps_what_was_pending_above():
    m = MARK.resolved_below(15)
    assert m.gen == MARK.gen + 1
    assert [s for s in range(0, 130) if m.pending(s)] == [
        s for s in range(15, 130) if MARK.pending(s)
    ]


def slots(*marks: Mark) -> bytearray:
    data = bytearray(jr.segment_prefix(HEADER))
    for slot, m in enumerate(marks):
        at = jr.mark_offset(slot)
        data[at : at + jr.SLOT_SIZE] = jr.mark_slot(m)
    return data


def test_the_mark_of_the_highest_generation_wins():
    old, new = Mark(5, (), 1), Mark(9, ((1, 2),), 2)
    assert jr.read_mark(slots(old, new)) == new
    assert jr.read_mark(slots(new, old)) == new


@pytest.mark.parametrize("where", [0, 8, 17, jr.SLOT_SIZE - 1])
def test_a_slot_torn_by_a_kill_leaves_the_other(where):
    old, new = Mark(5, (), 1), Mark(9, ((1, 2),), 2)
    data = slots(old, new)
    data[jr.mark_offset(1) + where] ^= 0xFF
    assert jr.read_mark(data) == old


def test_no_valid_slot_means_nothing_is_resolved():
    assert jr.read_mark(jr.segment_prefix(HEADER)) == jr.NOTHING_RESOLVED
    assert all(jr.NOTHING_RESOLVED.pending(s) for s in (0, 1, 10**6))


def test_a_mark_with_every_held_range_reads_back():
    m = make_mark(10**6, [(i * 10, i * 10 + 3) for i in range(jr.MAX_HELD)], 7)
    assert jr.read_mark(slots(m)) == m


# -- what a restart replays -----------------------------------------------------------------------


def test_a_restart_replays_what_the_latest_mark_leaves_in_order_once():
    other = {**HEADER, "salt": bytes(10)}
    a1, a2, b = Segment(), Segment(), Segment(header=other)
    for seg, seqs in ((a1, range(0, 6)), (a2, range(6, 12)), (b, range(0, 3))):
        w = writer_on_at(seg)
        for i in seqs:
            write(w, i)
    a1.map[jr.mark_offset(0) : jr.mark_offset(0) + jr.SLOT_SIZE] = jr.mark_slot(Mark(8, (), 1))
    a2.map[jr.mark_offset(0) : jr.mark_offset(0) + jr.SLOT_SIZE] = jr.mark_slot(
        Mark(9, ((2, 3),), 2)
    )
    found = [(f"p{i}", jr.read_segment(s.data())) for i, s in enumerate((a1, a2, b))]
    regions = jr.regions_of(found)
    by_salt = {r.header["salt"]: r for r in regions}
    a = by_salt[HEADER["salt"]]
    assert [r.seq for r in a.records] == [2, 3, 9, 10, 11] and a.paths == ["p0", "p1"]
    assert [r.seq for r in by_salt[bytes(10)].records] == [0, 1, 2]


def test_the_header_gives_back_the_handlers_facts():
    header = {**HEADER, "host": "web-1", "kernel": "6.1", "fields": {"svc": "a", "uuid": "x", 1: 2}}
    assert jr.salt_of(header) == int.from_bytes(HEADER["salt"], "big")
    assert jr.fields_of(header) == {"svc": "a"}  # core names and non-text names left out
    assert jr.text_of(header, "host") == "web-1" and jr.text_of({}, "host") is None
    assert jr.salt_of({"salt": b"short"}) is None


# -- uuids made again ----------------------------------------------------------------------------


def test_derived_uuids_are_v7_increasing_within_a_millisecond_and_repeatable():
    salt = uuid7.new_salt()
    ms = [1_700_000_000_000] * 4 + [1_700_000_000_001]
    a = uuid7.uuid7_derived(salt, [5, 6, 7, 8, 9], ms)
    assert a == uuid7.uuid7_derived(salt, [5, 6, 7, 8, 9], ms)
    assert a == sorted(a) and len(set(a)) == 5
    for u, m in zip(a, ms, strict=True):
        parsed = uuid.UUID(u)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122 and str(parsed) == u
        assert int(parsed.hex[:12], 16) == m
    assert uuid7.uuid7_derived(uuid7.new_salt(), [5], ms[:1]) != a[:1]


@pytest.mark.parametrize("carry", [(1 << 48) - 2, (1 << 62) - 2])
def test_derived_uuids_follow_the_counter_across_a_carry(carry):
    ints = [uuid.UUID(u).int for u in uuid7.uuid7_derived(carry, [0, 1, 2, 3], [1] * 4)]
    assert ints == sorted(set(ints))


def items(n: int) -> list[Item]:
    out = []
    for i in range(n):
        rec = record("ev %d", (i,))
        out.append(Item(i + 40, 1, rec, rec.getMessage(), None, None, None, {"n": i}, None))
    return out


def test_a_builder_with_a_salt_gives_each_event_the_uuid_a_restart_gives_it():
    salt, events = uuid7.new_salt(), items(3)
    builder = EventBuilder({"svc": "a"}, salt)
    built = [e["uuid"] for e in builder.build_many(events)]
    json_path = JsonEventWriter(builder, lambda e: b"{}").encode_many(events)
    rebuilt = [e["uuid"] for e in EventBuilder({}, salt).build_many(events)]
    assert built == rebuilt
    assert all(f'"uuid":"{u}"'.encode() in unit for u, unit in zip(built, json_path, strict=True))
