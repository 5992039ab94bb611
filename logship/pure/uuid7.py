"""Time-ordered UUID version 7 (RFC 9562), unique and increasing within a process.

Layout: 48 bits of Unix milliseconds, version 7, then 74 bits used as a
counter (RFC 9562 section 6.2, method 2: a monotonic random). Each new
millisecond starts the counter at a random value with its top bit clear,
which leaves 2**73 increments of headroom; within one millisecond it steps
by one. Uniqueness across processes rests on those 73 random bits.

After ``fork`` the child would inherit the parent's last millisecond and
counter and so repeat its next UUIDs; :func:`reset_after_fork` clears that
state and the lock (see ``logship.lifecycle``).
"""

from __future__ import annotations

import os
import threading

_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62
_RAND_A_MASK = (1 << 12) - 1
_RAND_B_MASK = (1 << 62) - 1
_COUNTER_BITS = 74

_lock = threading.Lock()
_last_ms = -1
_counter = 0


def _fresh_counter() -> int:
    return int.from_bytes(os.urandom(10), "big") >> (80 - _COUNTER_BITS + 1)


def uuid7_int(unix_ms: int) -> int:
    """Return the next UUIDv7 as an int, for an event made at ``unix_ms``.

    The timestamp never goes backwards within a process: an event older than
    the last one issued (threads race to the ring, clocks step back) takes
    the last millisecond and the next counter value.
    """
    global _last_ms, _counter
    with _lock:
        if unix_ms > _last_ms:
            _last_ms = unix_ms
            _counter = _fresh_counter()
        else:
            _counter += 1
            if _counter >> _COUNTER_BITS:
                # 2**73 UUIDs in one millisecond cannot happen; borrow the next one.
                _last_ms += 1
                _counter = _fresh_counter()
        ms, counter = _last_ms, _counter
    rand_a = (counter >> 62) & _RAND_A_MASK
    rand_b = counter & _RAND_B_MASK
    return (ms << 80) | _VERSION | (rand_a << 64) | _VARIANT | rand_b


def uuid7_many(unix_ms: list[int]) -> list[str]:
    """UUIDv7 strings for events made at each of ``unix_ms``, under one lock.

    Same rules as :func:`uuid7_int`; the time part of the text is formatted
    once per millisecond, since a batch's events share a few milliseconds.
    """
    global _last_ms, _counter
    out: list[str] = []
    append = out.append
    prefix_ms, prefix = -1, ""
    with _lock:
        last, counter = _last_ms, _counter
        for ms in unix_ms:
            if ms > last:
                last, counter = ms, _fresh_counter()
            else:
                counter += 1
                if counter >> _COUNTER_BITS:
                    last, counter = last + 1, _fresh_counter()
            if last != prefix_ms:
                h = f"{last:012x}"
                prefix_ms, prefix = last, f"{h[:8]}-{h[8:]}-7"
            # rand_a, variant and rand_b as 20 hex digits; bytes.hex is the fastest formatter.
            low = (((counter >> 62) & _RAND_A_MASK) << 64) | _VARIANT | (counter & _RAND_B_MASK)
            h = low.to_bytes(10, "big").hex()[1:]  # 76 bits: drop the leading zero digit
            append(f"{prefix}{h[:3]}-{h[3:7]}-{h[7:]}")
        _last_ms, _counter = last, counter
    return out


def format_uuid(value: int) -> str:
    """Format a 128-bit int in the canonical 8-4-4-4-12 form."""
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7(unix_ms: int) -> str:
    """Return the next UUIDv7 string for an event made at ``unix_ms``."""
    return format_uuid(uuid7_int(unix_ms))


def reset_after_fork() -> None:
    """Give a forked child its own lock and a fresh random counter."""
    global _lock, _last_ms, _counter
    _lock = threading.Lock()
    _last_ms = -1
    _counter = 0
