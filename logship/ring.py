"""The bounded ring between the application's threads and the worker.

A FIFO bounded in events and in characters, with its counters and an
overflow policy. The application's side (:meth:`Ring.put`) does the least
it can: one uncontended lock, a deque append and two counters. It never
touches the network or the disk, and it waits only under
``overflow="block"``, which the user chose. The worker's side
(:meth:`Ring.take`) removes items in bulk.

The ring tells the worker when to look (a batch's worth waiting, half
full, full) through the worker's :class:`Signals`, and reads the worker's
busy flags there to decide when a logging thread should yield the GIL; the
signals are the worker's, the ring only consults them.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping
from types import CodeType, FrameType
from typing import Any, NamedTuple, TypeVar

from logship.pure.event import Origin

#: What the ring calls to write an event to the region: ``(seq, record, message,
#: exception, stack, context, extras, payload)``; it never raises.
Journal = Callable[
    [int, Any, str, str | None, str | None, Mapping[str, Any] | None, Any, Any], None
]


class Item(NamedTuple):
    """One event as the calling thread handed it over."""

    seq: int  #: the order of emission (flush uses it as a watermark)
    size: int  #: characters counted against ``capacity_bytes``
    #: The record's attributes the worker reads: an :class:`Origin`, or a
    #: record whose attributes could not all be read at the call.
    record: Origin | logging.LogRecord
    message: str  #: ``record.getMessage()``, resolved at the call
    exception: str | None  #: the traceback's text
    stack: str | None  #: ``stack_info``
    context: Mapping[str, Any] | None  #: what ``logship.bind``/``context`` bound at the call
    extras: dict[str, Any] | None  #: the ``extra=`` attributes, resolved at the call
    payload: dict[Any, Any] | None  #: a dict ``msg`` (structlog's event dict), resolved


_new = tuple.__new__
# The ring holds plain tuples in Item's order: building an Item on the
# application's thread would cost three times as much as the tuple. The
# worker's side gets Items (take, head).
_SEQ, _SIZE = 0, 1


# -- a thread that already holds the lock ------------------------------------------------

#: How far up the stack :func:`wait_unless_held` looks for a holder.
_WALK_FRAMES = 64
#: The code of each function that takes ``Ring.lock`` on an application's
#: thread (see :func:`holds_ring_lock`).
_HOLDERS: set[CodeType] = set()
F = TypeVar("F", bound=Callable[..., Any])


def holds_ring_lock(fn: F) -> F:
    """Mark ``fn`` as taking ``Ring.lock`` on an application's thread.

    A signal handler, or a ``__del__`` the garbage collector runs, may log
    from inside it, on the same thread: waiting for the lock there would
    wait forever (see :meth:`Ring.put`).
    """
    _HOLDERS.add(fn.__code__)
    return fn


def wait_unless_held(lock: threading.Lock) -> bool:
    """Take ``lock``, which another holder has; False, without it, when this thread holds it.

    Called by a function marked with :func:`holds_ring_lock` once its
    non-blocking ``acquire`` failed: usually another thread holds the lock,
    for a moment, and this one waits. A log call from a signal handler, or
    from a ``__del__`` the collector runs, lands on a thread that may itself
    be inside a holder; waiting there would deadlock the application. A
    holder's frame in this thread's stack, above the asking one (which must
    be a holder too), says so.
    """
    frame: FrameType | None = sys._getframe(1)
    asker = True  # the first holder up the stack is the function asking
    # A signal handler's log call reaches the ring in a few frames, and the
    # frame it interrupted is just above its own: a deep stack is not walked
    # whole while the thread that holds the lock waits for the GIL.
    for _ in range(_WALK_FRAMES):
        if frame is None:
            break
        if frame.f_code in _HOLDERS:
            if not asker:
                return False
            asker = False
        frame = frame.f_back
    lock.acquire()
    return True


class Signals:
    """How the ring and the worker's threads tell one another there is work. Owned by the worker."""

    __slots__ = ("pump_busy", "sender_busy", "wake")

    def __init__(self) -> None:
        #: Set to wake the pump: a batch's worth is waiting, the ring is
        #: half full or full, a caller blocks, a flush waits.
        self.wake = threading.Event()
        #: Set while a worker thread has work that needs the GIL (not while
        #: it waits): only then is yielding to it of any use.
        self.pump_busy = False
        self.sender_busy = False


# How long a blocked caller sleeps between checks that the handler is still
# open; it is woken earlier whenever the worker takes items.
_BLOCK_SLICE = 0.1

# Pacing yields on one call in this many (a power of two): often enough that
# a woken worker gets the GIL within a fraction of a millisecond, rarely
# enough that the yield's cost (a system call) is spread thin.
_PACE_MASK = 31


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
        "journal",
        "limit",
        "lock",
        "not_full",
        "pace",
        "reentered",
        "signals",
        "truncated",
        "wake_at",
    )

    def __init__(
        self,
        capacity: int,
        capacity_bytes: int,
        overflow: str,
        signals: Signals,
        wake_at: int,
        pace: bool = False,
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
        self.signals = signals
        self.wake_at = max(1, min(wake_at, capacity))
        # Half full is where the worker starts moving events to the spill when
        # the sender cannot take them: it must hear of it then, not a
        # flush_interval later, or the ring overflows meanwhile.
        self.half = max(1, capacity // 2)
        #: Ask callers to yield the GIL now and then while a batch waits (see put).
        self.pace = pace
        self.lock = threading.Lock()
        self.not_full = threading.Condition(self.lock)
        self.items: deque[tuple[Any, ...]] = deque()
        self.chars = 0
        self.emitted = 0  # also the next sequence number
        self.dropped = 0
        self.truncated = 0  # events cut to fit capacity_bytes (still shipped)
        self.closed = False
        self._blocked = 0
        #: Events logged on a thread that held the lock already (a signal
        #: handler's, a ``__del__``'s): dropped, one entry each. A deque, whose
        #: append needs no lock, as such a call cannot take it.
        self.reentered: deque[None] = deque()
        #: With ``durability="crash"``, what writes each event to the region
        #: (``logship.journal.JournalWriter.append``), called with the lock
        #: held so that records are in sequence order; None otherwise, or
        #: while the region cannot be written.
        self.journal: Journal | None = None

    @holds_ring_lock
    def put(
        self,
        record: Origin | logging.LogRecord,
        message: str,
        exception: str | None,
        stack: str | None,
        size: int,
        context: Mapping[str, Any] | None,
        extras: dict[str, Any] | None,
        payload: dict[Any, Any] | None,
    ) -> bool:
        """Append one event, applying the overflow policy; never raises.

        Returns True when the caller should yield the GIL once: ``pace`` is
        on, the ring holds at least ``wake_at`` events (the worker has been
        woken for a batch it has not taken), this is one call in 32, and a
        worker thread is busy or the ring is half full (where the pump
        starts spilling); while the endpoint is down and the worker waits,
        yielding would only cost the caller. A thread logging in a tight
        loop otherwise holds the GIL for whole 5 ms switch intervals while
        the woken worker waits: the ring grows until a burst is spilled or
        dropped, its records live long enough to reach the old
        garbage-collector generation, and exit has more left to drain.
        """
        # acquire/release rather than `with`: half the cost on the hot path.
        lock = self.lock
        if not lock.acquire(False) and not wait_unless_held(lock):
            # A log call from inside a holder of the lock, on this thread (a
            # signal handler's): dropped and counted, never a deadlock. A
            # plain lock stays: a re-entrant one would let the nested call put
            # its event in the middle of another's.
            self.reentered.append(None)
            return False
        try:
            seq = self.emitted
            self.emitted = seq + 1
            items = self.items
            n = len(items)
            if n >= self.limit or self.chars + size > self.capacity_bytes:
                wake = self.signals.wake
                if not wake.is_set():  # set() costs 20x more than asking
                    wake.set()  # full: the worker must drain or spill now
                if self.closed or not self._make_room(size):
                    self.dropped += 1
                    return False
                n = len(items)
            journal = self.journal
            if journal is not None:  # durability="crash": in the region before the call returns
                journal(seq, record, message, exception, stack, context, extras, payload)
            items.append((seq, size, record, message, exception, stack, context, extras, payload))
            self.chars += size
        finally:
            lock.release()
        n += 1
        if n == self.wake_at or n == self.half:
            self.signals.wake.set()
        if not self.pace or n < self.wake_at or n & _PACE_MASK:
            return False
        signals = self.signals
        return signals.pump_busy or signals.sender_busy or n >= self.half

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
                    self.signals.wake.set()
                    self.not_full.wait(_BLOCK_SLICE)
            finally:
                self._blocked -= 1
            return not self.closed
        if self.drop_newest:
            return False
        while items and (len(items) >= self.capacity or self.chars + size > self.capacity_bytes):
            self.chars -= items.popleft()[_SIZE]
            self.dropped += 1
        return True

    @holds_ring_lock
    def lost(self) -> None:
        """Count an event that failed before it reached the ring (emitted, then dropped)."""
        if not self.lock.acquire(False) and not wait_unless_held(self.lock):
            self.reentered.append(None)
            return
        try:
            self.emitted += 1
            self.dropped += 1
        finally:
            self.lock.release()

    @holds_ring_lock
    def note_truncated(self) -> None:
        """Count an event cut to fit ``capacity_bytes``."""
        if not self.lock.acquire(False) and not wait_unless_held(self.lock):
            return  # the event itself is counted by the put that follows
        try:
            self.truncated += 1
        finally:
            self.lock.release()

    @holds_ring_lock
    def take(self, limit: int) -> list[Item]:
        """Remove and return up to ``limit`` of the oldest items (worker side)."""
        with self.lock:
            items = self.items
            n = min(limit, len(items))
            if not n:
                return []
            pop = items.popleft
            out = [_new(Item, pop()) for _ in range(n)]
            self.chars -= sum(item.size for item in out)
            if self._blocked:
                self.not_full.notify_all()
            return out

    def head(self) -> Item | None:
        """The oldest item, without taking it (None when empty). No lock: a peek."""
        try:
            return _new(Item, self.items[0])
        except IndexError:  # empty, or emptied by a caller making room meanwhile
            return None

    def low_seq(self) -> int:
        """The oldest sequence number still in the ring (``emitted`` when empty).

        Call with ``lock`` held.
        """
        return self.items[0][_SEQ] if self.items else self.emitted

    def clear(self) -> int:
        """Drop every item (the worker gives up on them); how many. Call with ``lock`` held."""
        n = len(self.items)
        self.items.clear()
        self.chars = 0
        return n

    @holds_ring_lock
    def close(self) -> None:
        """Refuse further events (they are counted as dropped) and release blocked callers."""
        if not self.lock.acquire(False) and not wait_unless_held(self.lock):
            # A close from a signal handler, inside a holder on this thread:
            # blocked callers see it at their next check (_BLOCK_SLICE).
            self.closed, self.limit = True, 0
        else:
            try:
                self.closed = True
                self.limit = 0
                self.not_full.notify_all()
            finally:
                self.lock.release()
        self.signals.wake.set()

    def snapshot(self) -> dict[str, Any]:
        """Counters owned by the ring. Call with ``lock`` held."""
        reentered = len(self.reentered)
        return {
            "emitted": self.emitted + reentered,
            "ring_dropped": self.dropped + reentered,
            "ring_len": len(self.items),
            "truncated": self.truncated,
        }
