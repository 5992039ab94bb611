"""This handler's region (``durability="crash"``), on the worker's side.

The application's threads write one record per event (``logship.journal``);
the pump thread keeps the region, once a cycle (:meth:`RegionKeeper.tend`):

- it writes the mark (``Ledger.durable_mark``: what only memory holds; every
  other event is resolved or in the spill) to every segment in use, so that
  a restart replays only what was still unresolved;
- it deletes the segments whose every record is resolved;
- it makes the next segment ahead (the *spare*), so that a logging thread
  never waits for one;
- when the disk refused a segment, the region is off (events are kept in
  memory only, counted in ``stats()["not_durable"]``): it says so once, and
  tries again every few seconds; the next segment it makes turns the region
  back on.

At close, the region is deleted when everything in it is resolved or in the
spill, and otherwise marked and released: the next process replays the rest.
"""

from __future__ import annotations

import errno
import os
import platform
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

from logship.journal import JournalWriter
from logship.pure.journal import NOTHING_RESOLVED, SEGMENT_SIZE, Mark, deletable, make_mark
from logship.pure.options import Options
from logship.pure.uuid7 import new_salt
from logship.ring import Signals, holds_ring_lock
from logship.worker.diagnostics import Warner
from logship.worker.ledger import Ledger
from logship.worker.spill import region
from logship.worker.spill.region import MappedSegment
from logship.worker.spill.store import SpillStore

# After the disk refused a segment, how long until the next try.
_RETRY = 5.0


def max_segments(opts: Options) -> int:
    """More segments than this hold unresolved events only if the worker is stuck.

    The region holds what memory holds: the ring (``capacity_bytes``
    characters, at most 4 bytes each in UTF-8, and some bytes of each
    record's other fields) and a few batches.
    """
    bound = 4 * opts.capacity_bytes + 512 * opts.capacity + 4 * opts.batch_max_bytes
    return 2 + -(-bound // SEGMENT_SIZE)


class RegionKeeper:
    """Makes, marks, deletes and releases this handler's segments; the writer's counterpart."""

    def __init__(
        self,
        opts: Options,
        store: SpillStore,
        ledger: Ledger,
        signals: Signals,
        warner: Warner,
        fields: Mapping[str, Any],
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.ring = ledger.ring
        self.warner = warner
        #: The uuid salt of this handler's events (``uuid7.uuid7_derived``).
        self.salt = new_salt()
        #: What every segment records: who wrote it, and what a restart needs to
        #: build its events again as they would have been built here.
        self.header: dict[str, Any] = {
            "url": store.url,
            "owner": store.owner,
            "host": socket.gethostname(),
            "kernel": platform.release(),
            "pid": os.getpid(),
            "created": time.time(),
            "salt": self.salt.to_bytes(10, "big"),
            "fields": dict(fields),
        }
        self.writer: JournalWriter[MappedSegment] = JournalWriter(
            self.ring, self.make, signals.wake.set, max_segments(opts)
        )
        ledger.not_durable = self.writer.not_durable
        # The pump's turns against close, and the first event's open. Re-entrant:
        # a signal handler that logs while its thread makes the first segment
        # comes back to open (which then returns at once: opened is set).
        self._lock = threading.RLock()
        self._committed = NOTHING_RESOLVED
        self._retry_at = 0.0
        self.opened = False
        self.closed = False

    def make(self, room: int) -> MappedSegment:
        """A new segment with room for a record of ``room`` bytes; ``OSError`` when refused.

        On the pump thread, or on an application thread that found no spare.
        """
        seg = region.make_segment(self.store.folder, self.store.owner, self.header, room)
        seg.mark(self._committed)
        return seg

    @holds_ring_lock
    def open(self) -> None:
        """Make the first segment and turn the region on (the first log call's thread)."""
        with self._lock:
            if self.opened or self.closed:
                return
            self.opened = True
            try:
                if self.store.refused is not None:
                    raise OSError(errno.EACCES, self.store.refused)
                seg = self.make(0)
            except OSError as e:
                with self.ring.lock:
                    self.writer.stop(self.ring.emitted, e)
                return
            with self.ring.lock:
                self.writer.install(seg, self.ring.emitted)

    @holds_ring_lock
    def tend(self) -> None:
        """The pump's turn: commit the mark, delete resolved segments, keep a spare."""
        with self._lock:
            if not self.opened or self.closed:
                return
            ring, writer = self.ring, self.writer
            mark = self._mark()
            with ring.lock:
                segments = list(writer.segments)
                error, writer.error = writer.error, None
                off = writer.off_since is not None
                wanted = off or writer.spare is None
            if error is not None:
                self._say(error)
            if not mark.same_as(self._committed):
                for seg in segments:
                    seg.mark(mark)
                self._committed = mark
            gone = [segments[i] for i in deletable([seg.first_seq for seg in segments], mark)]
            if gone:
                with ring.lock:  # the writer only appends: the rest keep their order
                    writer.segments = [seg for seg in writer.segments if seg not in gone]
                for seg in gone:
                    seg.delete()
            if wanted and time.monotonic() >= self._retry_at:
                self._provide()

    def _mark(self) -> Mark:
        """The ledger's mark now, as the next generation."""
        low, held = self.ledger.durable_mark()
        return make_mark(low, held, self._committed.gen + 1)

    @holds_ring_lock
    def _provide(self) -> None:
        """Make a spare, or, while the region is off, turn it back on with a new segment."""
        try:
            seg = self.make(0)
        except OSError:
            self._retry_at = time.monotonic() + _RETRY
            return
        ring, writer = self.ring, self.writer
        with ring.lock:
            used = True
            if writer.off_since is None and writer.spare is None:
                writer.spare = seg
            elif writer.off_since is not None and len(writer.segments) < writer.max_segments:
                writer.install(seg, ring.emitted)
            else:
                used = False
        if not used:
            seg.delete()

    def _say(self, error: BaseException) -> None:
        self.warner.warn(
            "region",
            "logship: cannot write the region of durability='crash' in %s (%s); events are "
            "kept in memory only until it can (counted in stats()['not_durable']): a crash "
            "meanwhile loses what memory holds.",
            self.store.folder,
            error,
        )

    @holds_ring_lock
    def close(self) -> None:
        """Delete the region if every event in it is resolved or spilled, else mark and release it.

        Called before ``close`` gives up on what memory still holds: that
        stays in the region for the next process.
        """
        with self._lock:
            if self.closed:
                return
            self.closed = True
            if not self.opened:
                return
            mark = self._mark()
            with self.ring.lock:
                emitted = self.ring.emitted
                segments = self.writer.detach()
            if not mark.touches(0, emitted):
                for seg in segments:
                    seg.delete()
                return
            for seg in segments:
                seg.mark(mark)
                seg.unmap()
            try:
                region.release(self.store.folder, self.store.owner)
            except OSError:
                pass  # the owner id is dead once the process exits: adopted all the same
