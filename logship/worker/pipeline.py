"""State the two worker threads share: batches in flight, counters, the flush watermark.

The pump thread turns ring items into sealed batches and queues them here
(or spills them); the sender thread takes them, delivers them and resolves
them. Every batch of this handler not yet resolved is *outstanding* and
remembers the lowest sequence number it holds, so ``flush`` can tell when
everything emitted before it is done; a spilled batch stays outstanding
until it is replayed. Batches adopted from another process's spill are
outstanding too, but never hold a flush back.

Lock order, everywhere: ``Pipeline.lock`` before ``Ring.lock``.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from logship.ring import Ring

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

_batch_ids = itertools.count(1)


def new_key() -> str:
    """A fresh Idempotency-Key for a batch."""
    return uuid.uuid4().hex


@dataclass(eq=False)
class Origin:
    """Where a replayed batch lies on disk; acknowledged once all its parts resolve."""

    file_id: str
    offset: int
    parts: int = 1  # a 413 split makes more parts of the same frame


@dataclass(eq=False)
class Batch:
    """A sealed group of events sent as one request, under one Idempotency-Key.

    Only the encoded (and maybe compressed) body is kept: the events are
    decoded again in the rare cases that need them (a 413 split, a dead letter).
    """

    body: bytes
    count: int
    encoding: str
    gzipped: bool
    key: str = field(default_factory=new_key)
    id: int = field(default_factory=lambda: next(_batch_ids))
    raw_size: int = 0  # encoded bytes before compression
    origin: Origin | None = None  # set when read back from the spill
    on_disk: bool = False  # a copy was spilled (at close) while it was in flight

    def __len__(self) -> int:
        return self.count


class Pipeline:
    """Queues, counters and the flush watermark, behind one lock."""

    def __init__(self, ring: Ring, max_ready: int) -> None:
        self.ring = ring
        self.lock = threading.Lock()
        #: Notified whenever a batch is queued or resolved, and on stop.
        self.changed = threading.Condition(self.lock)
        self.ready: deque[Batch] = deque()
        self.max_ready = max_ready
        self.outstanding: dict[int, int] = {}  # batch id -> lowest seq it holds
        self.in_memory = 0  # events taken from the ring, neither resolved nor spilled
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.acks: deque[Origin] = deque()  # replayed frames to acknowledge on disk
        self.in_flight: Batch | None = None  # the batch the sender is sending
        self.flush_target = -1  # highest seq a flush waits for
        self.draining = False  # closing: send everything now, ignore flush_interval
        self.stopping = False  # stop the threads at the next chance
        self.healthy: bool | None = None  # the last request's outcome; None before any
        self.spill_bytes = 0
        self.spill_refused: str | None = None  # why the spill folder is not used, if it is not
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.last_error_kind: str | None = None  # e.g. "dns", "tls-expired", "http-401"
        self.last_error_time: float | None = None

    # -- pump side -----------------------------------------------------------

    def take(self, limit: int, open_id: int) -> list[Any]:
        """Move up to ``limit`` items from the ring into the open batch ``open_id``.

        Both locks are held, so the items are never in neither place and the
        flush watermark cannot skip them.
        """
        with self.lock:
            items = self.ring.take(limit)
            if items:
                self.outstanding.setdefault(open_id, items[0][0])
                self.in_memory += len(items)
            return items

    def register(self, batches: list[Batch], open_id: int) -> None:
        """Sealed ``batches`` replace the open batch ``open_id`` in the outstanding set."""
        with self.lock:
            low = self.outstanding.pop(open_id, None)
            for b in batches:
                self.outstanding[b.id] = low if low is not None else ADOPTED_SEQ

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
            if batch.id in self.outstanding and not batch.on_disk:
                batch.on_disk = True
                self.in_memory -= batch.count
                self.counters["spilled"] += batch.count

    def adopt(self, batch: Batch) -> None:
        """Take over a batch spilled by another handler or process."""
        with self.lock:
            self.counters["adopted"] += batch.count
            self.outstanding[batch.id] = ADOPTED_SEQ

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
        self.ring.wake.set()  # room for the pump
        return batch

    def replace(self, old: Batch, new: list[Batch]) -> bool:
        """Swap ``old`` for ``new`` in the outstanding set (a 413 split).

        False when ``old`` was already resolved (close took it over).
        """
        with self.lock:
            low = self.outstanding.pop(old.id, None)
            if low is None:
                return False
            for b in new:
                self.outstanding[b.id] = low
            if old.origin is not None:
                old.origin.parts += len(new) - 1
            return True

    def resolve(self, batch: Batch, counter: str) -> bool:
        """Mark ``batch`` finished, adding its events to ``counter``.

        Returns False, counting nothing, when the batch was resolved already;
        a request that outlived ``close`` must not count its events twice.
        """
        with self.lock:
            if self.in_flight is batch:
                self.in_flight = None
            if self.outstanding.pop(batch.id, None) is None:
                return False
            n = batch.count
            self.counters[counter] += n
            if batch.origin is not None:
                if counter == "shipped":
                    self.counters["replayed"] += n
                batch.origin.parts -= 1
                if batch.origin.parts == 0:
                    self.acks.append(batch.origin)
                    self.ring.wake.set()
            elif not batch.on_disk:
                self.in_memory -= n
            if counter == "shipped":
                self.last_success = time.time()
                self.healthy = True
            self.changed.notify_all()
            return True

    def failed(self, error: str, kind: str) -> None:
        """A request got no 2xx: note it for ``stats()`` and pause replay."""
        with self.lock:
            self.last_error = error
            self.last_error_kind = kind
            self.last_error_time = time.time()
            self.healthy = False

    def count(self, counter: str, n: int = 1) -> None:
        """Add ``n`` to a counter that does not move events between states."""
        with self.lock:
            self.counters[counter] += n

    # -- either side ---------------------------------------------------------

    def watermark(self) -> int:
        """Every event with a sequence number below this is resolved. Call with lock held."""
        with self.ring.lock:
            low = self.ring.low_seq()
        if self.outstanding:
            low = min(low, min(self.outstanding.values()))
        return low

    def wait_for(self, target: int, deadline: float) -> bool:
        """Block until every event up to ``target`` is resolved, or ``deadline`` passes."""
        with self.lock:
            if target > self.flush_target:
                self.flush_target = target
            self.ring.wake.set()
            while self.watermark() <= target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.changed.wait(min(remaining, 0.05))
            return True

    def flush_wanted(self) -> bool:
        """Whether a flush or close is waiting on the open batch. Call with lock held."""
        return self.draining or self.flush_target >= self.watermark()

    def abandon(self) -> int:
        """Give up on every event still in memory, counting them as dropped.

        Used by ``close`` once its deadline has passed; returns how many.
        Spilled events stay pending: they are on disk for the next process.
        """
        with self.lock, self.ring.lock:
            n = self.in_memory + len(self.ring.items)
            self.ring.items.clear()
            self.ring.chars = 0
            self.ready.clear()
            self.outstanding.clear()
            self.in_memory = 0
            self.counters["dropped"] += n
            self.changed.notify_all()
            return n

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of every counter, for ``stats()``."""
        with self.lock, self.ring.lock:
            ring = self.ring.snapshot()
            c = dict(self.counters)
            last_success, last_error = self.last_success, self.last_error
            last_kind, last_error_time = self.last_error_kind, self.last_error_time
            in_memory, spill_bytes = self.in_memory, self.spill_bytes
            spill_refused = self.spill_refused
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
            "last_success": last_success,
            "last_error": last_error,
            "last_error_kind": last_kind,
            "last_error_time": last_error_time,
        }
        out["pending"] = out["emitted"] + out["adopted"] - out["shipped"] - dropped - c["rejected"]
        return out
