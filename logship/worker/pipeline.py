"""State the two worker threads share: batches in flight, counters, the flush watermark.

The pump thread turns ring items into sealed batches and queues them here;
the sender thread takes them, delivers them and resolves them. Every batch
not yet resolved is *outstanding* and remembers the lowest sequence number
it holds, so ``flush`` can tell when everything emitted before it is done.

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

_batch_ids = itertools.count(1)


def new_key() -> str:
    """A fresh Idempotency-Key for a batch."""
    return uuid.uuid4().hex


@dataclass(eq=False)
class Batch:
    """A sealed group of events sent as one request, under one Idempotency-Key."""

    events: list[dict[str, Any]]
    low_seq: int
    key: str = field(default_factory=new_key)
    id: int = field(default_factory=lambda: next(_batch_ids))
    body: bytes = b""  # encoded and, when enabled, compressed
    raw_size: int = 0  # encoded bytes before compression

    def __len__(self) -> int:
        return len(self.events)


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
        self.in_memory = 0  # events taken from the ring and not resolved
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.flush_target = -1  # highest seq a flush waits for
        self.draining = False  # closing: send everything now, ignore flush_interval
        self.stopping = False  # stop the threads at the next chance
        self.last_success: float | None = None
        self.last_error: str | None = None

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

    def queue(self, batches: list[Batch], open_id: int) -> None:
        """Hand sealed batches (made from the open batch ``open_id``) to the sender."""
        with self.lock:
            low = self.outstanding.pop(open_id, None)
            for b in batches:
                self.outstanding[b.id] = low if low is not None else b.low_seq
                self.ready.append(b)
            self.changed.notify_all()

    def has_room(self) -> bool:
        """Whether the sender can take another batch without the pump waiting."""
        return len(self.ready) < self.max_ready

    # -- sender side ---------------------------------------------------------

    def next_ready(self, timeout: float) -> Batch | None:
        """The oldest queued batch, waiting up to ``timeout``; None on stop or time-out."""
        with self.lock:
            if not self.ready and not self.stopping:
                self.changed.wait(timeout)
            if self.stopping or not self.ready:
                return None
            batch = self.ready.popleft()
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
            return True

    def resolve(self, batch: Batch, counter: str, success: bool = False) -> bool:
        """Mark ``batch`` finished, adding its events to ``counter``.

        Returns False, counting nothing, when the batch was resolved already;
        a request that outlived ``close`` must not count its events twice.
        """
        with self.lock:
            if self.outstanding.pop(batch.id, None) is None:
                return False
            n = len(batch.events)
            self.counters[counter] += n
            self.in_memory -= n
            if success:
                self.last_success = time.time()
            self.changed.notify_all()
            return True

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
            in_memory = self.in_memory
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
            "spill_bytes": 0,
            "last_success": last_success,
            "last_error": last_error,
        }
        out["pending"] = out["emitted"] + out["adopted"] - out["shipped"] - dropped - c["rejected"]
        return out
