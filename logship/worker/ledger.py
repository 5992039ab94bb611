"""The accounting of one handler's events, and the hand-off of batches from pump to sender.

Every event is in exactly one place: the ring, the pump's open batch, a
sealed batch in memory (waiting or in flight), the spill, or resolved
(shipped, dropped or rejected). The ledger counts the moves; ``stats()``
reads it. Every batch not yet resolved is *outstanding* and remembers the
lowest sequence number it holds, so ``flush`` can tell when everything
emitted before it is done; a spilled batch stays outstanding until it is
replayed or delivered. Batches adopted from another process's spill are
outstanding too, but never hold a flush back.

For ``durability="crash"`` it also knows which batches only memory holds
(:attr:`Ledger.volatile`), and so :meth:`Ledger.durable_mark`: below it,
every event is resolved or on disk in the spill, and the region may forget it.

Who writes what: the pump takes from the ring, seals, queues, spills and
acknowledges replayed frames; the sender takes queued batches and resolves
them; ``close`` stops both and gives up on what memory still holds. Each
goes through a method here, under :attr:`Ledger.lock`.

Lock order, everywhere: ``Ledger.lock`` before ``Ring.lock``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from logship.pure.batching import Batch, Origin
from logship.pure.endpoints import EndpointSet
from logship.ring import Item, Ring, holds_ring_lock, wait_unless_held

COUNTERS = (
    "shipped",
    "dropped",
    "rejected",
    "spilled",
    "replayed",
    "retries",
    "corrupt",
    "adopted",
)

#: The "lowest sequence number" of an adopted batch: it never holds a flush back.
ADOPTED_SEQ = 1 << 62


class Health:
    """What the endpoint's last answers say. Written by the sender, read by anyone."""

    def __init__(self) -> None:
        #: The last request's outcome: True after a 2xx, False after a failure; None before any.
        self.healthy: bool | None = None
        #: The last failure got no answer at all (refused, reset, timed out, DNS, TLS):
        #: nothing is listening, as far as anyone can tell.
        self.unreachable = False
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.last_error_kind: str | None = None  # e.g. "dns", "tls-expired", "http-401"
        self.last_error_time: float | None = None
        #: When the server's certificate expires (Unix time), as last read (https only).
        self.cert_expiry: float | None = None

    def succeeded(self) -> None:
        self.healthy, self.unreachable = True, False
        self.last_success = time.time()

    def failed(self, error: str, kind: str, *, answered: bool, answering: bool = False) -> None:
        """A request got no 2xx; ``answered``: the server answered at all.

        Replay pauses until the next 2xx, unless the endpoint is
        ``answering`` (it rejected one batch for good, and takes the rest).
        """
        self.last_error, self.last_error_kind = error, kind
        self.last_error_time = time.time()
        if not answering:
            self.healthy = False
            self.unreachable = not answered

    @property
    def down(self) -> bool:
        """Whether the last attempt failed and nothing succeeded since."""
        return self.healthy is False


class Ledger:
    """Counters, outstanding batches, the flush watermark, and the pump-to-sender queue."""

    def __init__(self, ring: Ring, max_ready: int, endpoints: EndpointSet) -> None:
        self.ring = ring
        self.lock = threading.Lock()
        #: Notified whenever a batch is queued or resolved, and on stop.
        self.changed = threading.Condition(self.lock)
        self.ready: deque[Batch] = deque()
        self.max_ready = max_ready
        self.in_flight: Batch | None = None  # the batch the sender is sending
        #: The batches the sender's delivery under way holds: the one taken, and
        #: every half of a split and part of a per-event answer since (see
        #: replace). Rebound, never changed in place; close spills what of it
        #: is outstanding.
        self.in_hand: list[Batch] = []
        self.outstanding: dict[int, int] = {}  # batch id -> lowest seq it holds
        #: Of those, the batches whose events only memory holds (none on disk):
        #: batch id -> (lowest seq, highest seq). A few: the open batch, the queue.
        self.volatile: dict[int, tuple[int, int]] = {}
        self.in_memory = 0  # events taken from the ring, neither resolved nor spilled
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.acks: deque[Origin] = deque()  # replayed frames to acknowledge on disk
        self.flush_target = -1  # highest seq a flush waits for
        self.draining = False  # closing: send everything now, ignore flush_interval
        self.stopping = False  # stop the threads at the next chance
        self.health = Health()
        self.spill_bytes = 0
        self.spill_refused: str | None = None  # why the spill folder is not used, if it is not
        #: Each endpoint's health and back-off: the sender's to change, shown by
        #: stats() from the start ("unknown" until the first attempt).
        self.endpoints = endpoints
        #: With durability="crash": how many events, of the ``emitted`` given, the
        #: region missed (``JournalWriter.not_durable``; read with the ring's lock).
        self.not_durable: Callable[[int], int] | None = None

    # -- pump side -----------------------------------------------------------

    def take(self, limit: int, open_id: int) -> list[Item]:
        """Move up to ``limit`` items from the ring into the open batch ``open_id``.

        Both locks are held, so the items are never in neither place and the
        flush watermark cannot skip them.
        """
        with self.lock:
            items = self.ring.take(limit)
            if items:
                self.outstanding.setdefault(open_id, items[0].seq)
                low = self.volatile.get(open_id, (items[0].seq, 0))[0]
                self.volatile[open_id] = (low, items[-1].seq)
                self.in_memory += len(items)
            return items

    def register(self, batches: list[Batch], open_id: int) -> None:
        """Sealed ``batches`` replace the open batch ``open_id`` in the outstanding set."""
        with self.lock:
            low = self.outstanding.pop(open_id, None)
            held = self.volatile.pop(open_id, None)
            for b in batches:
                self.outstanding[b.id] = low if low is not None else ADOPTED_SEQ
                if held is not None:
                    self.volatile[b.id] = held  # each holds part of the range: all of it, then

    def enqueue(self, batch: Batch) -> None:
        """Hand a batch to the sender."""
        with self.lock:
            self.ready.append(batch)
            self.changed.notify_all()

    def has_room(self) -> bool:
        """Whether the sender can take another batch without the pump waiting."""
        return len(self.ready) + (self.in_flight is not None) < self.max_ready

    def spilled(self, batch: Batch) -> None:
        """``batch`` was written to disk: it leaves memory but stays outstanding."""
        with self.lock:
            self.volatile.pop(batch.id, None)
            if batch.id in self.outstanding and not batch.on_disk:
                batch.on_disk = True
                self.in_memory -= batch.count
                self.counters["spilled"] += batch.count

    def adopt(self, batch: Batch) -> None:
        """Take over a batch spilled by another handler or process."""
        with self.lock:
            self.counters["adopted"] += batch.count
            self.outstanding[batch.id] = ADOPTED_SEQ

    def adopt_spilled(self, batch: Batch) -> None:
        """A batch built from a dead process's region, now in this handler's spill."""
        with self.lock:
            self.counters["adopted"] += batch.count
            self.counters["spilled"] += batch.count
            self.outstanding[batch.id] = ADOPTED_SEQ
            batch.on_disk = True

    def adopt_and_drop(self, n: int) -> None:
        """Another owner's spilled events deleted for the size cap: adopted, then dropped."""
        with self.lock:
            self.counters["adopted"] += n
            self.counters["dropped"] += n

    def lose_spilled(self, frames: list[tuple[int, int]]) -> None:
        """This handler's spilled batches ``(id, events)`` deleted for the size cap."""
        with self.lock:
            for bid, n in frames:
                if self.outstanding.pop(bid, None) is not None:
                    self.counters["dropped"] += n
            self.changed.notify_all()

    def is_outstanding(self, batch_id: int) -> bool:
        with self.lock:
            return batch_id in self.outstanding

    def pop_acks(self) -> list[Origin]:
        """Replayed frames delivered since the last call."""
        with self.lock:
            acks = list(self.acks)
            self.acks.clear()
            return acks

    def leftovers(self) -> list[Batch]:
        """At close: what the sender holds (the batch in flight, the halves of a split it
        has yet to send) and the waiting batches, oldest first, off the queue."""
        with self.lock:
            held = [b for b in self.in_hand if b.id in self.outstanding]
            if self.in_flight is not None and all(b is not self.in_flight for b in held):
                held.insert(0, self.in_flight)
            out = held + list(self.ready)
            self.ready.clear()
            return out

    # -- sender side ---------------------------------------------------------

    def next_ready(self, timeout: float) -> Batch | None:
        """The oldest queued batch, waiting up to ``timeout``; None on stop or time-out."""
        with self.lock:
            if not self.ready and not self.stopping:
                self.changed.wait(timeout)
            if self.stopping or not self.ready:
                return None
            batch = self.ready.popleft()
            self.in_flight = batch
            return batch

    def replace(self, old: Batch, new: list[Batch]) -> bool:
        """Swap ``old`` for ``new`` in the outstanding set (a split, or per-event answers),
        and in what the sender holds.

        False when ``old`` was already resolved (close gave up on it).
        """
        with self.lock:
            low = self.outstanding.pop(old.id, None)
            if low is None:
                return False
            held = self.volatile.pop(old.id, None)
            for b in new:
                self.outstanding[b.id] = low
                b.on_disk = old.on_disk
                if held is not None:
                    self.volatile[b.id] = held
            if old.origin is not None:
                old.origin.parts += len(new) - 1
            if self.in_flight is old:
                self.in_flight = new[0] if new else None
            # Under the lock, with the swap: close (leftovers) sees the parts of a
            # split the sender holds, never neither the batch nor its parts.
            # Only what is still outstanding is kept: a batch whose items are
            # refused 429 again and again is replaced on every attempt.
            kept = [b for b in self.in_hand if b is not old and b.id in self.outstanding]
            self.in_hand = kept + new
            return True

    def resolve(self, batch: Batch, counter: str, rejected: int = 0) -> bool:
        """Mark ``batch`` finished, adding its events to ``counter``.

        ``rejected`` of them go to ``rejected`` instead: a server that took the
        batch but refused that many of its events without saying which.
        Returns False, counting nothing, when the batch was resolved already;
        a request that outlived ``close`` must not count its events twice.
        A batch that ``close`` spilled while it was in flight and that is
        delivered after all is counted once, as shipped (its copy on disk is
        the caller's to forget).
        """
        with self.lock:
            if self.in_flight is batch:
                self.in_flight = None
            self.volatile.pop(batch.id, None)
            if self.outstanding.pop(batch.id, None) is None:
                return False
            n = batch.count
            self.counters[counter] += n - rejected
            self.counters["rejected"] += rejected
            if batch.origin is not None:
                if counter == "shipped":
                    self.counters["replayed"] += n - rejected
                batch.origin.parts -= 1
                if batch.origin.parts == 0:
                    self.acks.append(batch.origin)
            elif not batch.on_disk:
                self.in_memory -= n
            if counter == "shipped":
                self.health.succeeded()
            self.changed.notify_all()
            return True

    def count(self, counter: str, n: int = 1) -> None:
        """Add ``n`` to a counter that does not move events between states."""
        with self.lock:
            self.counters[counter] += n

    def failed(self, error: str, kind: str, *, answered: bool, answering: bool = False) -> None:
        """A request got no 2xx: note it for ``stats()`` (see :meth:`Health.failed`)."""
        with self.lock:
            self.health.failed(error, kind, answered=answered, answering=answering)

    # -- either side ---------------------------------------------------------

    @holds_ring_lock
    def watermark(self) -> int:
        """Every event with a sequence number below this is resolved. Call with lock held."""
        with self.ring.lock:
            low = self.ring.low_seq()
        if self.outstanding:
            low = min(low, min(self.outstanding.values()))
        return low

    @holds_ring_lock
    def durable_mark(self) -> tuple[int, list[tuple[int, int]]]:
        """What only memory holds: the ring's lowest sequence number, and the ranges of the
        batches below it that are not on disk.

        Every other event is resolved or in the spill: the region may forget
        it (``durability="crash"``, see ``pure.journal.Mark``).
        """
        with self.lock, self.ring.lock:
            return self.ring.low_seq(), list(self.volatile.values())

    def wait_for(
        self,
        target: int,
        deadline: float,
        wake: threading.Event,
        give_up: Callable[[], bool] | None = None,
    ) -> bool:
        """Block until every event up to ``target`` is resolved, or ``deadline`` passes.

        Also returns (False) as soon as ``give_up()`` is true; it is asked
        with the lock held, at least every 50 ms.
        """
        with self.lock:
            if target > self.flush_target:
                self.flush_target = target
            wake.set()
            while self.watermark() <= target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (give_up is not None and give_up()):
                    return False
                self.changed.wait(min(remaining, 0.05))
            return True

    def flush_wanted(self) -> bool:
        """Whether a flush or close is waiting on the open batch. Call with lock held."""
        return self.draining or self.flush_target >= self.watermark()

    @holds_ring_lock
    def abandon(self) -> int:
        """Give up on every event still in memory, counting them as dropped.

        Used by ``close`` once its deadline has passed; returns how many.
        Spilled events stay pending, and outstanding: they are on disk for
        the next process, or delivered yet by a request still running.
        """
        with self.lock, self.ring.lock:
            n = self.in_memory + self.ring.clear()
            self.ready.clear()
            for bid in [bid for bid, low in self.outstanding.items() if low != ADOPTED_SEQ]:
                del self.outstanding[bid]
            self.volatile.clear()
            self.in_memory = 0
            self.counters["dropped"] += n
            self.changed.notify_all()
            return n

    @holds_ring_lock
    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of every counter, for ``stats()``.

        Called from a signal handler that interrupted this thread inside a
        holder of either lock, it reads without that lock rather than wait
        for itself (see ``ring.wait_unless_held``).
        """
        held = []
        for lock in (self.lock, self.ring.lock):
            if lock.acquire(False) or wait_unless_held(lock):
                held.append(lock)
        try:
            ring = self.ring.snapshot()
            c = dict(self.counters)
            h = self.health
            last = (h.last_success, h.last_error, h.last_error_kind, h.last_error_time)
            cert_expiry = h.cert_expiry
            endpoints = self.endpoints.views()
            in_memory, spill_bytes = self.in_memory, self.spill_bytes
            spill_refused = self.spill_refused
            missed = self.not_durable(self.ring.emitted) if self.not_durable else 0
        finally:
            for lock in reversed(held):
                lock.release()
        dropped = c["dropped"] + ring["ring_dropped"]
        out: dict[str, Any] = {
            "emitted": ring["emitted"],
            "adopted": c["adopted"],
            "shipped": c["shipped"],
            "dropped": dropped,
            "rejected": c["rejected"],
            "spilled": c["spilled"],
            "replayed": c["replayed"],
            "retries": c["retries"],
            "corrupt": c["corrupt"],
            "truncated": ring["truncated"],
            "queued": ring["ring_len"] + in_memory,
            "spill_bytes": spill_bytes,
            "spill_refused": spill_refused,
            "not_durable": missed,
            "last_success": last[0],
            "last_error": last[1],
            "last_error_kind": last[2],
            "last_error_time": last[3],
            "cert_expiry": cert_expiry,
            "endpoints": endpoints,
        }
        out["pending"] = out["emitted"] + out["adopted"] - out["shipped"] - dropped - c["rejected"]
        return out
