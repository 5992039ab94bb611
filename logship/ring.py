"""The bounded ring between the application's threads and the worker.

The application's side (:meth:`Ring.put`) does the least it can: one
uncontended lock, a deque append and two counters. It never touches the
network or the disk, and it waits only under ``overflow="block"``, which the
user chose. The worker's side (:meth:`Ring.take`) removes items in bulk.

An item is a tuple ``(seq, size, record, message, exception, stack,
context)``: ``seq`` numbers events in the order they were emitted (flush
uses it as a watermark), ``size`` is the characters counted against
``capacity_bytes``, and ``context`` is the immutable mapping bound with
``logship.bind``/``logship.context`` at the call (``None`` when nothing is).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

Item = tuple[
    int, int, logging.LogRecord, str, "str | None", "str | None", "Mapping[str, Any] | None"
]

# How long a blocked caller sleeps between checks that the handler is still
# open; it is woken earlier whenever the worker takes items.
_BLOCK_SLICE = 0.1

# Pacing yields on one call in this many (a power of two): often enough that
# a woken worker gets the GIL within a fraction of a millisecond, rarely
# enough that the yield's cost (a system call) is spread thin.
_PACE_EVERY = 32


class Ring:
    """A FIFO bounded in events and in characters, with an overflow policy."""

    __slots__ = (
        "_blocked",
        "block",
        "capacity",
        "capacity_bytes",
        "chars",
        "closed",
        "drop_newest",
        "dropped",
        "emitted",
        "half",
        "items",
        "limit",
        "lock",
        "not_full",
        "pace",
        "pump_busy",
        "sender_busy",
        "truncated",
        "wake",
        "wake_at",
    )

    def __init__(
        self, capacity: int, capacity_bytes: int, overflow: str, wake_at: int, pace: bool = False
    ) -> None:
        self.capacity = capacity
        #: ``capacity`` while open, 0 once closed: one comparison on the fast
        #: path covers both "full" and "closed".
        self.limit = capacity
        self.capacity_bytes = capacity_bytes
        # "spill" drops the oldest only when the worker could not move them to
        # disk in time; the worker drains early so that this is the exception.
        self.drop_newest = overflow == "drop_newest"
        self.block = overflow == "block"
        self.wake_at = max(1, min(wake_at, capacity))
        # Half full is where the worker starts moving events to the spill when
        # the sender cannot take them: it must hear of it then, not a
        # flush_interval later, or the ring overflows meanwhile.
        self.half = max(1, capacity // 2)
        #: Ask callers to yield the GIL now and then while a batch waits (see put).
        self.pace = pace
        #: Set by the worker threads while they have work that needs the GIL
        #: (not while they wait): only then is yielding to them of any use.
        self.pump_busy = False
        self.sender_busy = False
        self.lock = threading.Lock()
        self.not_full = threading.Condition(self.lock)
        #: Set to wake the worker: a batch's worth is waiting, or a caller blocks.
        self.wake = threading.Event()
        self.items: deque[Item] = deque()
        self.chars = 0
        self.emitted = 0  # also the next sequence number
        self.dropped = 0
        self.truncated = 0  # events cut to fit capacity_bytes (still shipped)
        self.closed = False
        self._blocked = 0

    def put(
        self,
        record: logging.LogRecord,
        message: str,
        exception: str | None,
        stack: str | None,
        size: int,
        context: Mapping[str, Any] | None = None,
    ) -> bool:
        """Append one event, applying the overflow policy; never raises.

        Returns True when the caller should yield the GIL once: ``pace`` is
        on, the ring holds at least ``wake_at`` events (the worker has been
        woken for a batch it has not taken), this is one call in
        ``_PACE_EVERY``, and a worker thread is busy or the ring is half full
        (where the pump starts spilling); while the endpoint is down and the
        worker waits, yielding would only cost the caller. A thread logging
        in a tight loop otherwise holds the GIL for whole 5 ms switch
        intervals while the woken worker waits:
        the ring grows until a burst is spilled or dropped, its records live
        long enough to reach the old garbage-collector generation, and exit
        has more left to drain.
        """
        # acquire/release rather than `with`: half the cost on the hot path.
        lock = self.lock
        lock.acquire()
        try:
            seq = self.emitted
            self.emitted = seq + 1
            items = self.items
            n = len(items)
            if n >= self.limit or self.chars + size > self.capacity_bytes:
                if not self.wake.is_set():  # set() costs 20x more than asking
                    self.wake.set()  # full: the worker must drain or spill now
                if self.closed or not self._make_room(size):
                    self.dropped += 1
                    return False
                n = len(items)
            items.append((seq, size, record, message, exception, stack, context))
            self.chars += size
        finally:
            lock.release()
        n += 1
        if n == self.wake_at or n == self.half:
            self.wake.set()
        return (
            self.pace
            and n >= self.wake_at
            and not seq % _PACE_EVERY
            and (self.pump_busy or self.sender_busy or n >= self.half)
        )

    def _make_room(self, size: int) -> bool:
        """Called with the lock held and the ring full; True when ``size`` now fits."""
        items = self.items
        if self.block:
            self._blocked += 1
            try:
                while not self.closed and (
                    len(items) >= self.capacity
                    or (items and self.chars + size > self.capacity_bytes)
                ):
                    self.wake.set()
                    self.not_full.wait(_BLOCK_SLICE)
            finally:
                self._blocked -= 1
            return not self.closed
        if self.drop_newest:
            return False
        while items and (len(items) >= self.capacity or self.chars + size > self.capacity_bytes):
            self.chars -= items.popleft()[1]
            self.dropped += 1
        return True

    def take(self, limit: int) -> list[Item]:
        """Remove and return up to ``limit`` of the oldest items (worker side)."""
        with self.lock:
            items = self.items
            n = min(limit, len(items))
            if not n:
                return []
            pop = items.popleft
            out = [pop() for _ in range(n)]
            self.chars -= sum(item[1] for item in out)
            if self._blocked:
                self.not_full.notify_all()
            return out

    def low_seq(self) -> int:
        """The oldest sequence number still in the ring (``emitted`` when empty).

        Call with ``lock`` held.
        """
        return self.items[0][0] if self.items else self.emitted

    def close(self) -> None:
        """Refuse further events (they are counted as dropped) and release blocked callers."""
        with self.lock:
            self.closed = True
            self.limit = 0
            self.not_full.notify_all()
        self.wake.set()

    def snapshot(self) -> dict[str, Any]:
        """Counters owned by the ring. Call with ``lock`` held."""
        return {
            "emitted": self.emitted,
            "ring_dropped": self.dropped,
            "ring_len": len(self.items),
            "truncated": self.truncated,
        }
