"""The pure pieces: UUIDv7, the retry policy, the spill frame format. No network."""

from __future__ import annotations

import email.utils
import itertools
import json
import os
import select
import threading
import time
import uuid
import warnings
import zlib

import pytest

from logship.pure import frames, uuid7
from logship.pure.encoding import gzip_compress
from logship.pure.protocols.registry import ENCODER_NAMES, decoder_named
from logship.pure.retry import RETRY_AFTER_CAP, Backoff, Verdict, classify, parse_retry_after

# -- uuid7 ---------------------------------------------------------------------------------------


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def embedded_ms(u: str) -> int:
    return int(uuid.UUID(u).hex[:12], 16)


def test_uuid7_version_variant_and_format():
    u = uuid7.uuid7(now_ms())
    parsed = uuid.UUID(u)
    assert str(parsed) == u  # canonical, lower case 8-4-4-4-12
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_uuid7_embeds_the_given_millisecond():
    ms = now_ms() + 5  # ahead of anything issued so far in this process
    assert embedded_ms(uuid7.uuid7(ms)) == ms
    assert embedded_ms(uuid7.uuid7(ms + 1)) == ms + 1


def test_uuid7_never_goes_backwards_when_the_clock_does():
    ms = now_ms() + 10
    first, earlier, same = (
        uuid.UUID(uuid7.uuid7(t)).int for t in (ms, ms - 5000, ms)
    )  # the middle one: a clock step back, or a slower thread
    assert first < earlier < same
    # The late event takes the last millisecond issued, not its own earlier one.
    assert earlier >> 80 == first >> 80 >= ms


def test_uuid7_strictly_increasing_and_unique_across_four_threads():
    per_thread = 10_000
    results: list[list[int]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def run(k: int) -> None:
        out = results[k]
        start.wait()
        for _ in range(per_thread):
            out.append(uuid.UUID(uuid7.uuid7(now_ms())).int)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for out in results:
        assert len(out) == per_thread
        assert all(a < b for a, b in itertools.pairwise(out)), "not increasing in a thread"
    everything = [u for out in results for u in out]
    assert len(set(everything)) == 4 * per_thread
    for u in everything[::997]:
        parsed = uuid.UUID(int=u)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


@pytest.mark.parametrize("later", [0, 1], ids=["same-ms", "next-ms"])
def test_uuid7_after_fork_the_child_does_not_repeat_the_parent(later: int) -> None:
    """``next-ms``: each side draws a fresh counter, from random bytes the parent had fetched."""
    ms = now_ms() + 20
    uuid7.uuid7(ms)  # the state both sides would continue from
    r, w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(r)
            os.write(w, json.dumps([uuid7.uuid7(ms + later) for _ in range(5)]).encode())
        finally:
            os._exit(0)
    os.close(w)
    parent_next = [uuid7.uuid7(ms + later) for _ in range(5)]
    data = b""
    deadline = time.monotonic() + 10
    while True:
        ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, "the child did not answer"
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    _, wstatus = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wstatus) == 0
    child_next = json.loads(data)
    assert len(child_next) == 5
    assert not set(child_next) & set(parent_next)
    assert all(uuid.UUID(u).version == 7 for u in child_next)


# -- retry.classify ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (201, Verdict.DELIVERED),
        (202, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (299, Verdict.DELIVERED),
        (413, Verdict.SPLIT),
        (408, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (504, Verdict.RETRY),
        (599, Verdict.RETRY),
        (401, Verdict.HOLD),
        (403, Verdict.HOLD),
        (404, Verdict.HOLD),
        (400, Verdict.REJECT),
        (405, Verdict.REJECT),
        (409, Verdict.REJECT),
        (410, Verdict.REJECT),
        (415, Verdict.REJECT),
        (422, Verdict.REJECT),
        (499, Verdict.REJECT),
    ],
)
def test_classify_follows_spec_section_4(status, verdict):
    assert classify(status) is verdict


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_classify_holds_redirects_rather_than_losing_the_post(status):
    # Not named by SPEC: a redirect is neither delivery nor a reason to drop logs.
    assert classify(status) is Verdict.HOLD


@pytest.mark.parametrize("status", [100, 101, 199])
def test_classify_never_counts_an_informational_status_as_delivered(status):
    assert classify(status) is not Verdict.DELIVERED
    assert classify(status) is not Verdict.REJECT


# -- retry.parse_retry_after ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("120", 120.0), ("0", 0.0), (" 7 ", 7.0), ("1.5", 1.5), ("-5", 0.0), ("-0.1", 0.0)],
)
def test_parse_retry_after_seconds(value, seconds):
    assert parse_retry_after(value) == seconds


def test_parse_retry_after_http_date():
    now = 1_800_000_000.0
    value = email.utils.formatdate(now + 30, usegmt=True)  # "Fri, 15 Jan 2027 08:00:30 GMT"
    assert parse_retry_after(value, now=now) == pytest.approx(30.0)
    past = email.utils.formatdate(now - 3600, usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0  # never negative


@pytest.mark.parametrize(
    "value",
    [None, "", "   ", "soon", "12 seconds", "Wed, 99 Foo 2015 99:99:99 GMT", "nan", "0x10"],
)
def test_parse_retry_after_garbage_is_none(value):
    assert parse_retry_after(value) is None


#: Retry-After values no server should send: each must mean the normal back-off.
UNREADABLE_RETRY_AFTER = [
    "Mon, 1 Jan 99999999999999999999 00:00:00 GMT",  # datetime raises OverflowError
    "Mon, 1 Jan 10000 00:00:00 GMT",  # past datetime's last year
    "Mon, 1 Jan 2030 00:00:00 -0000",  # no time zone
    "inf",
    "-inf",
    "Infinity",
    "NaN",
    "1e999",  # a float past its range: infinity
    "9" * 400,
]


@pytest.mark.parametrize("value", UNREADABLE_RETRY_AFTER)
def test_parse_retry_after_unreadable_is_none(value):
    assert parse_retry_after(value) is None


@pytest.mark.parametrize("value", [*UNREADABLE_RETRY_AFTER, "-5", "-1e300"])
def test_an_unreadable_or_negative_retry_after_leaves_the_back_off_as_it_is(value):
    b = Backoff(ceiling=2.0, base=0.5)
    for attempt in (0, 3, 10):
        assert b.after(attempt, parse_retry_after(value)) <= b.delay(attempt, lambda: 1.0)


def test_a_date_far_ahead_is_capped_like_any_long_wait():
    now = 1_800_000_000.0
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now=now) > 2.5e11
    b = Backoff(ceiling=60.0)
    assert b.after(0, parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT")) == RETRY_AFTER_CAP


def test_an_absurd_retry_after_is_capped():
    b = Backoff(ceiling=60.0)
    assert b.after(0, parse_retry_after("86400")) == RETRY_AFTER_CAP
    assert b.after(0, 3.0) == 3.0
    assert b.after(0, None) <= 0.5


# -- retry.Backoff -------------------------------------------------------------------------------


def test_backoff_grows_exponentially_up_to_the_ceiling():
    b = Backoff(ceiling=60.0, base=0.5)
    highs = [b.delay(a, rand=lambda: 1.0) for a in range(12)]
    lows = [b.delay(a, rand=lambda: 0.0) for a in range(12)]
    for a in range(6):  # 0.5, 1, 2, 4, 8, 16: below the ceiling, doubling
        assert highs[a] == pytest.approx(0.5 * 2**a)
        assert lows[a] == pytest.approx(0.5 * 2**a / 2)
        assert highs[a + 1] == pytest.approx(2 * highs[a])
    assert highs[-1] == pytest.approx(60.0) and lows[-1] == pytest.approx(30.0)


@pytest.mark.parametrize("ceiling", [0.2, 1.0, 60.0, 300.0])
def test_backoff_stays_within_half_cap_and_cap_and_never_exceeds_the_ceiling(ceiling):
    b = Backoff(ceiling=ceiling)
    for attempt in [*range(40), 62, 63, 64, 1000, 10**6]:
        cap = min(ceiling, b.base * 2.0 ** min(attempt, 62))
        for _ in range(20):
            d = b.delay(attempt)
            assert cap / 2 <= d <= cap <= ceiling
        assert b.delay(attempt, rand=lambda: 0.999999) <= ceiling


# -- frames ----------------------------------------------------------------------------------------


HEADER = {"kind": "spill", "url": "http://127.0.0.1/app", "pid": 1}
PAYLOADS = [{"key": f"k{i}", "events": [{"i": i, "message": "m" * (i * 7)}]} for i in range(6)]


def spill_file(payloads=PAYLOADS) -> bytes:
    return (
        frames.FILE_HEADER
        + frames.encode_frame(HEADER)
        + b"".join(frames.encode_frame(p) for p in payloads)
    )


def frame_offsets(data: bytes) -> list[int]:
    return [pos for pos, payload in frames.iter_frames(data) if payload is not None]


def test_frames_round_trip():
    result = frames.read_frames(spill_file())
    assert result.version_ok and result.corrupt == 0
    assert result.frames == [HEADER, *PAYLOADS]


def test_frames_header_only_and_values_msgpack_cannot_hold():
    assert frames.read_frames(frames.FILE_HEADER) == frames.ReadResult([], 0, True)
    odd = {"big": 2**70, "set": {1}, "obj": object()}
    (payload,) = frames.read_frames(frames.FILE_HEADER + frames.encode_frame(odd)).frames
    assert payload["big"] == str(2**70)


def test_frames_a_payload_with_a_tuple_key_reads_back():
    payload = {"key": "k", "events": [{"message": "m", "odd": {(1, 2): "tuple"}}]}
    result = frames.read_frames(frames.FILE_HEADER + frames.encode_frame(payload))
    assert result.corrupt == 0
    assert len(result.frames) == 1
    assert list(result.frames[0]["events"][0]["odd"].values()) == ["tuple"]


@pytest.mark.parametrize("cut", [1, 3, 8, 12])
def test_frames_torn_tail_is_detected_and_counted(cut):
    data = spill_file()
    result = frames.read_frames(data[:-cut])
    assert result.version_ok and result.corrupt == 1
    assert result.frames == [HEADER, *PAYLOADS[:-1]]


def test_frames_torn_in_the_next_frames_header_is_detected():
    data = spill_file() + frames.encode_frame({"key": "last"})[:5]
    result = frames.read_frames(data)
    assert result.corrupt == 1 and result.frames == [HEADER, *PAYLOADS]


@pytest.mark.parametrize("where", ["length", "crc", "payload"])
def test_frames_flipped_byte_costs_that_frame_only(where):
    data = bytearray(spill_file())
    victim = frame_offsets(bytes(data))[3]  # the third payload frame (PAYLOADS[2])
    offset = {"length": 1, "crc": 5, "payload": frames.FRAME_OVERHEAD + 4}[where]
    data[victim + offset] ^= 0x5A
    result = frames.read_frames(bytes(data))
    assert result.version_ok and result.corrupt == 1
    assert result.frames == [HEADER, *PAYLOADS[:2], *PAYLOADS[3:]]


def test_frames_a_frame_whose_checksum_matches_but_is_not_msgpack_is_skipped():
    junk = b"\xc1\xc1\xc1"  # never valid msgpack
    bad = frames._FRAME.pack(len(junk), zlib.crc32(junk)) + junk
    good = frames.encode_frame(PAYLOADS[0])
    result = frames.read_frames(frames.FILE_HEADER + bad + good)
    assert result.corrupt == 1 and result.frames == [PAYLOADS[0]]


def test_frames_zero_length_file():
    result = frames.read_frames(b"")
    assert result.frames == [] and result.corrupt == 1 and not result.version_ok


@pytest.mark.parametrize(
    "head",
    [b"NOPE\x01\x00\x00\x00", b"LSHP\x02\x00\x00\x00", b"LSHP\x00\x00\x00\x00", b"LSH"],
)
def test_frames_wrong_magic_or_version(head):
    data = head + spill_file()[len(frames.FILE_HEADER) :]
    result = frames.read_frames(data)
    assert result.frames == [] and result.corrupt == 1 and not result.version_ok


def test_frames_random_garbage_never_raises():
    import random

    rng = random.Random(7)
    base = spill_file()
    for _ in range(200):
        data = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(frames.FILE_HEADER), len(data))] = rng.randrange(256)
        result = frames.read_frames(bytes(data[: rng.randrange(len(data) + 1)]))
        assert result.corrupt >= 0
        for payload in result.frames:
            assert isinstance(payload, dict)


# -- a spilled batch's event count: no more than its body can hold ---------------------------

ONE_EVENT = b'[{"message":"one"}]'  # 19 bytes: at most 19 events, in any encoding
GZ_ONE = gzip_compress(ONE_EVENT)  # its trailer states 19


def forged_trailer(body: bytes, size: int) -> bytes:
    """``body`` with the inflated size its gzip trailer states replaced by ``size``."""
    return body[:-4] + size.to_bytes(4, "little")


def spilled(n: object, body: bytes, gz: bool) -> dict[str, object]:
    return {"key": "k1", "bid": 1, "n": n, "enc": "json", "gz": gz, "body": body}


@pytest.mark.parametrize(
    ("n", "body", "gz", "kept"),
    [
        pytest.param(1, ONE_EVENT, False, True, id="plain-as-written"),
        pytest.param(0, ONE_EVENT, False, True, id="plain-none"),
        # One byte an event (msgpack's {}) is as few as any encoding takes.
        pytest.param(len(ONE_EVENT), ONE_EVENT, False, True, id="plain-a-byte-each"),
        pytest.param(len(ONE_EVENT) + 1, ONE_EVENT, False, False, id="plain-more-than-bytes"),
        pytest.param(2**31 - 1, ONE_EVENT, False, False, id="plain-forged"),
        pytest.param(1, GZ_ONE, True, True, id="gzip-as-written"),
        pytest.param(len(ONE_EVENT), GZ_ONE, True, True, id="gzip-a-byte-each"),
        # More than its trailer says it inflates to.
        pytest.param(len(ONE_EVENT) + 1, GZ_ONE, True, False, id="gzip-more-than-stated"),
        pytest.param(2**31 - 1, GZ_ONE, True, False, id="gzip-forged"),
        # A trailer that claims more is held to what DEFLATE can do with so few bytes.
        pytest.param(1032 * len(GZ_ONE), forged_trailer(GZ_ONE, 2**32 - 1), True, True, id="ratio"),
        pytest.param(
            1032 * len(GZ_ONE) + 1,
            forged_trailer(GZ_ONE, 2**32 - 1),
            True,
            False,
            id="forged-trailer-beyond-ratio",
        ),
        # Flagged gzip but too short to be gzip: no event fits.
        pytest.param(0, b"[]", True, True, id="not-gzip-none"),
        pytest.param(1, b"[]", True, False, id="not-gzip-one"),
    ],
)
def test_a_spilled_count_above_what_its_body_can_hold_is_damage(n, body, gz, kept):
    batch = frames.read_batch(spilled(n, body, gz))
    assert (batch is not None) is kept
    if batch is not None:
        assert batch.n == n


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("name", sorted(ENCODER_NAMES))
def test_every_batch_logship_makes_passes_its_count_bound(name, compressed):
    encoder = decoder_named(name, compressed)
    for events in ([{}] * 1000, [{"message": "m"}], [{"message": "m" * 20_000}] * 50):
        body, _raw = encoder.body([encoder.unit(e) for e in events])
        assert frames.max_events(body, compressed) >= len(events)
        batch = frames.read_batch({**spilled(len(events), body, compressed), "enc": name})
        assert batch is not None and batch.n == len(events)


@pytest.mark.parametrize(
    ("payload", "count"),
    [
        ({"sealed": b"x" * 40, "n": 3}, 3),
        ({"sealed": b"x" * 40, "n": 1032 * 40}, 1032 * 40),
        ({"sealed": b"x" * 40, "n": 1032 * 40 + 1}, None),  # not even gzip holds that many
        ({"sealed": b"x" * 40, "n": 2**31 - 1}, None),
        ({"sealed": b"x" * 40, "n": -1}, None),
        ({"sealed": b"x" * 40, "n": True}, None),
        ({"sealed": "text", "n": 3}, None),
        ({"sealed": b"x" * 40}, None),
    ],
)
def test_a_sealed_frames_clear_count_is_bounded_by_its_size(payload, count):
    assert frames.clear_count(payload) == count


def test_uuid7_many_matches_one_at_a_time_rules():
    ms = now_ms() + 20
    batch = uuid7.uuid7_many([ms, ms, ms - 3, ms + 1])
    assert batch == sorted(batch) and len(set(batch)) == 4
    assert [embedded_ms(u) for u in batch] == [ms, ms, ms, ms + 1]
    assert uuid7.uuid7(ms + 1) > batch[-1]


@pytest.mark.parametrize("low_bits", [48, 62])
def test_uuid7_text_follows_the_counter_across_a_carry(monkeypatch, low_bits):
    """The text is formatted in two parts; a carry out of the lower part must show."""
    ms = now_ms() + 30
    monkeypatch.setattr(uuid7, "_last_ms", ms)
    monkeypatch.setattr(uuid7, "_counter", (0x5A5 << 62) | ((1 << low_bits) - 2))
    batch = uuid7.uuid7_many([ms] * 4)
    ints = [uuid.UUID(u).int for u in batch]
    assert ints == sorted(set(ints)) and batch == sorted(batch)
    if low_bits == 48:  # within rand_b: the UUIDs are consecutive integers
        assert [i - ints[0] for i in ints] == [0, 1, 2, 3]
    for u in batch:
        parsed = uuid.UUID(u)
        assert str(parsed) == u and parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert embedded_ms(u) == ms
