"""The pump thread: ring items in; sealed batches out, to the sender or the spill.

It encodes each event as it takes items from the ring, in small chunks with
a chance for other threads between them (``worker.slices``), and seals the
open batch when a size limit is reached or when the batch timer says it is
due (``pure.timing``). It never touches the network, so it stays free to
drain the ring while the sender waits.

When the sender has no room and the ring is half full, it moves the oldest
events to the spill instead of letting the ring overflow (``overflow="spill"``).
When the sender has room and the endpoint answers, it replays spilled
batches, alternating with new ones so that neither starves.

With ``durability="crash"`` it keeps this handler's region after each cycle
(``worker.keeper``); whatever the durability, it takes the regions of
processes that died over into the spill (``worker.adoption``).
"""

from __future__ import annotations

import itertools
import threading
import time

from logship.pure.batching import Batch, make_batches
from logship.pure.event import usable_created
from logship.pure.options import Options
from logship.pure.protocols import Encoder
from logship.pure.protocols.registry import decoder_named
from logship.pure.timing import BatchTimer, Look
from logship.ring import Signals
from logship.worker.adoption import Adopter
from logship.worker.diagnostics import Warner
from logship.worker.keeper import RegionKeeper
from logship.worker.ledger import Ledger
from logship.worker.slices import Slicer
from logship.worker.spill.store import SpillStore

_open_ids = itertools.count(-1, -1)  # negative: never equal to a sealed batch's id

# Items taken from the ring and encoded between two chances for other threads.
_CHUNK = 64

# After the disk refused a write, the spill is not tried again for this long.
_DISK_RETRY = 5.0


class Pump:
    """Drains the ring into batches for the sender (thread target: :meth:`run`)."""

    def __init__(
        self,
        opts: Options,
        ledger: Ledger,
        signals: Signals,
        encoder: Encoder,
        warner: Warner,
        store: SpillStore | None,
        keeper: RegionKeeper | None = None,
        adopter: Adopter | None = None,
    ) -> None:
        self.opts = opts
        self.ledger = ledger
        self.ring = ledger.ring
        self.signals = signals
        self.encoder = encoder
        self.warner = warner
        self.store = store
        self.keeper = keeper
        self.adopter = adopter
        self.timer = BatchTimer(opts.flush_interval)
        self.slicer = Slicer()
        self.spill_overflow = store is not None and opts.overflow == "spill"
        self.high_water = max(1, opts.capacity // 2)
        self._units: list[bytes] = []  # the open batch, its events encoded
        self._size = encoder.body_overhead  # its body's size once joined
        self._open_id = next(_open_ids)
        self._replay_turn = True
        self._disk_broken_until = 0.0
        self._dropped_said = 0  # ring drops already reported in a warning
        #: Set by close: spill what is left in memory, release the files, and stop.
        self.final_requested = False
        self.final_done = threading.Event()
        if store is not None:
            self._account()  # a folder refused when the store was made: stats() says so now

    def look(self) -> Look:
        """What the batch timer needs to know, read now."""
        head = self.ring.head()
        created = None if head is None else usable_created(head.record)
        return Look(time.monotonic(), time.time(), self.ring.emitted, created, head is not None)

    def run(self) -> None:
        """Loop until the ledger stops; never raises."""
        wake, signals, timer = self.signals.wake, self.signals, self.timer
        while not self.ledger.stopping and not self.final_done.is_set():
            try:
                woken = wake.wait(timer.wait(self.look()))
                if not (woken or self.final_requested or timer.cycle_due(self.look())):
                    continue  # only a look at the stream
            except Exception:  # deciding when to look must never stop the pump
                woken = wake.wait(self.opts.flush_interval)
            if woken:
                wake.clear()
            signals.pump_busy = True
            self.slicer.begin()
            try:
                if self.final_requested:
                    self.final()
                else:
                    timer.cycled(time.monotonic())
                    self.cycle()
            except BaseException as e:  # a bug here must cost a batch, not the worker
                self._lose_open_batch(e)
            finally:
                signals.pump_busy = False
            self._keep_region()

    def _keep_region(self) -> None:
        """This handler's region: the mark, resolved segments, a spare (``worker.keeper``)."""
        if self.keeper is None:
            return
        try:
            self.keeper.tend()
        except Exception as e:  # the region must never stop the pump
            self.warner.warn("region-error", "logship: cannot keep the region: %r", e)

    def cycle(self) -> None:
        """Take what the ring holds; send, spill or replay every batch that is due."""
        opts, ledger, timer = self.opts, self.ledger, self.timer
        self.apply_acks()
        self._adopt_region()
        self._warn_overflow()
        timer.sender_full = False
        while not ledger.stopping and not self.final_requested:
            if len(self._units) < opts.batch_max_records and self._size < opts.batch_max_bytes:
                self._fill(opts.batch_max_records - len(self._units))
            full = len(self._units) >= opts.batch_max_records or self._size >= opts.batch_max_bytes
            with ledger.lock:
                # A waiting flush or close wants the open batch as soon as the
                # ring is drained into it, not after flush_interval.
                wanted = ledger.flush_wanted()
                room = ledger.has_room()
            due = timer.due(self.look(), full=full, wanted=wanted)
            self.slicer.check()
            if room:
                if self._replay_turn or not due:
                    self._replay_turn = False
                    if self._replay_one():
                        continue
                if due:
                    self._replay_turn = True
                    for b in self._seal(full):
                        ledger.enqueue(b)
                    continue
                return
            if self.spill_overflow and self._units and len(self.ring.items) >= self.high_water:
                self._spill(self._seal(full))
                self._keep_region()  # the region may forget what is on disk now
                continue
            timer.sender_full = due
            return  # the sender is behind: the rest waits in the ring

    def _warn_overflow(self) -> None:
        dropped = self.ring.dropped
        if dropped > self._dropped_said and self.warner.warn(
            "overflow",
            "logship: the ring was full: %d events dropped (counted in stats()['dropped']). "
            "The endpoint or the disk cannot keep up; raise capacity, or use "
            "overflow='spill' with spill=True.",
            dropped - self._dropped_said,
        ):
            self._dropped_said = dropped

    def _fill(self, limit: int) -> None:
        """Take up to ``limit`` items into the open batch, a chunk at a time."""
        encoder, per_event = self.encoder, self.encoder.per_event_overhead
        while limit > 0 and self._size < self.opts.batch_max_bytes:
            items = self.ledger.take(min(limit, _CHUNK), self._open_id)
            if not items:
                return
            if self._units:
                self.timer.took()
            else:
                # A batch's age counts from its first event's arrival, not from
                # when the pump got round to it.
                self.timer.opened(self.look(), usable_created(items[0].record))
            units = encoder.units(items)
            self._units += units
            self._size += sum(map(len, units)) + per_event * len(units)
            limit -= len(items)
            self.slicer.check()

    def _seal(self, full: bool) -> list[Batch]:
        units, self._units, self._size = self._units, [], self.encoder.body_overhead
        open_id, self._open_id = self._open_id, next(_open_ids)
        self.timer.sealed(full)
        if not units:
            return []
        try:
            batches = make_batches(units, self.encoder, self.opts.batch_max_bytes)
        except Exception as e:  # encoding cleans values first; this is a bug, not data
            self._drop(open_id, len(units), e)
            return []
        self.ledger.register(batches, open_id)
        return batches

    # -- the spill ---------------------------------------------------------------

    def _spill(self, batches: list[Batch]) -> None:
        """Write batches to disk; a batch the disk cannot take is dropped and counted."""
        for b in batches:
            if self._write(b):
                self.ledger.spilled(b)
            else:
                self.ledger.resolve(b, "dropped")
        self._note_usage()

    def _write(self, batch: Batch) -> bool:
        store = self.store
        if store is None or store.refused or time.monotonic() < self._disk_broken_until:
            return False
        try:
            if store.write(batch):
                return True
            if store.refused:
                return False  # the folder is not the user's own: said once, by the store
            self.warner.warn(
                "spill-full",
                "logship: the spill folder %s is at spill_max_bytes (%d); dropping events "
                "(counted). Raise spill_max_bytes or fix the endpoint.",
                store.folder,
                store.max_bytes,
            )
        except OSError as e:
            # Full, read-only or vanished disk: try again in a while, drop meanwhile.
            self._disk_broken_until = time.monotonic() + _DISK_RETRY
            self.warner.warn(
                "spill-disk",
                "logship: cannot write the spill folder %s (%s); events that do not fit "
                "in memory are dropped (counted) until it is writable.",
                store.folder,
                e,
            )
        except Exception as e:  # a damaged file or a bug costs this batch, counted, never more
            self.warner.warn(
                "spill-error", "logship: cannot spill a batch (dropped, counted): %r", e
            )
        return False

    def _adopt_region(self) -> None:
        """Take one region left by a process that died over into the spill, if one is free."""
        if self.adopter is None or time.monotonic() < self._disk_broken_until:
            return
        try:
            adopted = self.adopter.adopt(self.slicer.check)
        except Exception as e:  # the disk (or a bug): never the open batch's loss
            self._disk_broken_until = time.monotonic() + _DISK_RETRY
            self.warner.warn(
                "spill-disk",
                "logship: cannot take over a region left in the spill folder %s (%s); "
                "trying again later.",
                self.adopter.store.folder,
                e,
            )
            adopted = True
        if adopted:
            self._note_usage()

    def _replay_one(self) -> bool:
        """Queue one spilled batch when the endpoint is taking them; True if one was queued."""
        store = self.store
        if store is None or not store.backlog():
            return False
        ledger = self.ledger
        with ledger.lock:
            # After a failure, replay waits for the next 2xx. But when nothing
            # else is in flight, nothing would ever find out that the endpoint
            # is back: then one spilled batch goes out as the probe (the
            # sender retries it with back-off, so there is only ever one).
            probing = ledger.in_flight is not None or bool(ledger.ready)
            if ledger.health.healthy is False and probing:
                return False
        try:
            batch = store.next_batch(endpoint_up=bool(ledger.health.healthy))
        except OSError as e:
            self.warner.warn("replay-error", "logship: cannot read the spill folder: %s", e)
            return False
        finally:
            self._account()
        if batch is None:
            return False
        own = batch.spilled_id
        if own is not None and ledger.is_outstanding(own):
            batch.id = own  # this handler's own, still counted pending: no adoption
        else:
            ledger.adopt(batch)
        encoder = self.encoder
        if batch.encoding != encoder.name or batch.gzipped != encoder.compress:
            # Spilled under other settings: the transport speaks only ours.
            try:
                events = decoder_named(batch.encoding, batch.gzipped).events_of(batch.body)
            except Exception:  # a body that does not decode, or inflates past its bound
                ledger.count("corrupt")
                ledger.resolve(batch, "dropped")  # acknowledged: it leaves the disk
                return True
            batch.body, batch.raw_size = encoder.body([encoder.unit(e) for e in events])
            batch.encoding, batch.gzipped = encoder.name, encoder.compress
        ledger.enqueue(batch)
        return True

    def apply_acks(self) -> None:
        """Record on disk the replayed frames delivered since the last call."""
        acks = self.ledger.pop_acks()
        if self.store is None or not acks:
            return
        for origin in acks:
            self.store.ack(origin)
        self._note_usage()

    def _note_usage(self) -> None:
        if self.store is not None:
            self._account()
            usage = self.store.usage()
            with self.ledger.lock:
                self.ledger.spill_bytes = usage

    def _account(self) -> None:
        """Apply what the spill store did to the accounting (see ``SpillNews``)."""
        assert self.store is not None
        news = self.store.take_news()
        if not news:
            return
        ledger = self.ledger
        if news.lost_own:
            ledger.lose_spilled(news.lost_own)
        if news.foreign_dropped:
            ledger.adopt_and_drop(news.foreign_dropped)
        if news.corrupt:
            ledger.count("corrupt", news.corrupt)
        if news.refused is not None:
            with ledger.lock:
                ledger.spill_refused = news.refused

    def final(self) -> None:
        """At close, after delivery had its chance: spill what memory holds, release files.

        Runs on the pump thread, or on the closing thread when no worker
        thread could start (interpreter shutdown).
        """
        try:
            self.apply_acks()
            if self.store is not None:
                # Oldest first, so a replay keeps the order: the batch in
                # flight, the waiting ones, the open batch, then the ring.
                leftovers = self.ledger.leftovers()
                # Batches read from the spill are still there; the rest is written now.
                self._spill([b for b in leftovers if b.origin is None and not b.on_disk])
                while True:
                    self._fill(self.opts.batch_max_records)
                    if not self._units:
                        break
                    self._spill(self._seal(False))
                if self.keeper is not None:
                    # While this handler's owner id is still live: no one takes the
                    # region over between the spill and its deletion.
                    self.keeper.close()
                self.store.release()
                self._note_usage()
        finally:
            self.final_done.set()

    def _lose_open_batch(self, error: BaseException) -> None:
        units, self._units, self._size = self._units, [], self.encoder.body_overhead
        open_id, self._open_id = self._open_id, next(_open_ids)
        self.timer.sealed(False)
        self._drop(open_id, len(units), error)

    def _drop(self, open_id: int, n: int, error: BaseException) -> None:
        """Count the ``n`` events of open batch ``open_id`` as dropped, and say why."""
        self.ledger.resolve(Batch(b"", n, self.encoder.name, False, id=open_id), "dropped")
        self.warner.warn(
            "pump-error", "logship: internal error while batching; %d events dropped: %r", n, error
        )
