"""Time-ordered UUID version 7 (RFC 9562), unique and increasing within a process.

Layout: 48 bits of Unix milliseconds, version 7, then 74 bits used as a
counter (RFC 9562 section 6.2, method 2: a monotonic random). Each new
millisecond starts the counter at a random value with its top bit clear,
which leaves 2**73 increments of headroom; within one millisecond it steps
by one. Uniqueness across processes rests on those 73 random bits.

After ``fork`` the child would inherit the parent's last millisecond and
counter and so repeat its next UUIDs; :func:`reset_after_fork` clears that
state and the lock (see ``logship.lifecycle``).

:func:`uuid7_derived` makes the same layout from a handler's salt and an
event's sequence number instead (``durability="crash"``): the counter is the
salt plus the sequence number, so the UUID can be made again, identical, by
whoever replays the event after a crash, and a receiver that drops
duplicates by ``uuid`` drops a resent one.
"""

from __future__ import annotations

import os
import threading

_VARIANT = 0b10 << 62
_LOW_48 = (1 << 48) - 1
_COUNTER_BITS = 74
_COUNTER_MASK = (1 << _COUNTER_BITS) - 1

_lock = threading.Lock()
_last_ms = -1
_counter = 0
# Random bytes for fresh counters, fetched 64 counters at a time: at a few
# thousand events a second nearly every event starts a new millisecond, and
# one os.urandom call each (a system call that also gives up the GIL) was a
# good part of the worker's time per event. Cleared after fork, with the rest.
_POOL_COUNTERS = 64
_pool = b""
_taken = 0


def _counter_of(random: bytes) -> int:
    """A counter from 10 random bytes, its top bit clear: 2**73 steps of headroom."""
    return int.from_bytes(random, "big") >> (80 - _COUNTER_BITS + 1)


def _fresh_counter() -> int:
    """A random counter from the pool; the caller holds ``_lock``."""
    global _pool, _taken
    if _taken >= len(_pool):
        _pool, _taken = os.urandom(10 * _POOL_COUNTERS), 0
    start = _taken
    _taken = start + 10
    return _counter_of(_pool[start : start + 10])


def new_salt() -> int:
    """A random starting counter with its top bit clear: 2**73 steps of headroom."""
    return _counter_of(os.urandom(10))


def uuid7_many(unix_ms: list[int]) -> list[str]:
    """UUIDv7 strings for events made at each of ``unix_ms``, under one lock.

    The timestamp never goes backwards within a process: an event older than
    the last one issued (threads race to the ring, clocks step back) takes
    the last millisecond and the next counter value. The time part of the
    text is formatted once per millisecond, since a batch's events share a few.
    """
    global _last_ms, _counter
    out: list[str] = []
    append = out.append
    head_ms = head_bits = -1
    head = ""
    with _lock:
        last, counter = _last_ms, _counter
        for ms in unix_ms:
            if ms > last:
                last, counter = ms, _fresh_counter()
            else:
                counter += 1
                if counter >> _COUNTER_BITS:
                    # 2**73 UUIDs in one millisecond cannot happen; borrow the next one.
                    last, counter = last + 1, _fresh_counter()
            if counter >> 48 != head_bits or last != head_ms:
                head_ms, head_bits = last, counter >> 48
                head = _head(last, head_bits)
            append(f"{head}{counter & _LOW_48:012x}")
        _last_ms, _counter = last, counter
    return out


def uuid7_derived(salt: int, seqs: list[int], unix_ms: list[int]) -> list[str]:
    """UUIDv7 strings for events with sequence numbers ``seqs`` made at ``unix_ms``.

    A pure function of its arguments: the counter is ``salt + seq``. With a
    ``salt`` from :func:`new_salt` per handler, a handler's UUIDs increase
    with the sequence number within a millisecond, and two handlers' UUIDs
    meet only if their salts lie within a few billion of each other out of
    2**73.
    """
    out: list[str] = []
    head_ms = head_bits = -1
    head = ""
    for ms, seq in zip(unix_ms, seqs, strict=True):
        counter = (salt + seq) & _COUNTER_MASK
        if counter >> 48 != head_bits or ms != head_ms:
            head_ms, head_bits = ms, counter >> 48
            head = _head(ms & _LOW_48, head_bits)
        out.append(f"{head}{counter & _LOW_48:012x}")
    return out


def _head(ms: int, bits: int) -> str:
    """All but the last 12 digits: the time, rand_a, the variant and rand_b's top 14 bits.

    They change rarely within a batch, so they are formatted once per change.
    """
    t = f"{ms:012x}"
    return f"{t[:8]}-{t[8:]}-7{bits >> 14:03x}-{_VARIANT >> 48 | (bits & 0x3FFF):04x}-"


def uuid7(unix_ms: int) -> str:
    """The next UUIDv7 string for an event made at ``unix_ms``."""
    return uuid7_many([unix_ms])[0]


def reset_after_fork() -> None:
    """Give a forked child its own lock, a fresh random counter and no inherited random bytes."""
    global _lock, _last_ms, _counter, _pool, _taken
    _lock = threading.Lock()
    _last_ms = -1
    _counter = 0
    _pool, _taken = b"", 0
