"""The pump thread: ring items in; sealed batches out, to the sender or the spill.

It encodes each event (schema, uuid, timestamp) as it takes items from the
ring, and seals the open batch when ``batch_max_records`` or
``batch_max_bytes`` is reached, when ``flush_interval`` has passed since its
first event, or at once while a flush or close waits on it. It never touches
the network, so it stays free to drain the ring while the sender waits.

When the sender has no room and the ring is half full, it moves the oldest
events to the spill instead of letting the ring overflow (``overflow="spill"``).
When the sender has room and the endpoint answers, it replays spilled
batches, alternating with new ones so that neither starves.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from logship.pure.encoding import Encoding, gzip_compress, gzip_decompress
from logship.pure.event import EventBuilder, created_time, encode_safely
from logship.pure.eventjson import JsonEventWriter
from logship.pure.options import Options
from logship.worker.diagnostics import Warner
from logship.worker.pipeline import Batch, Pipeline
from logship.worker.spillstore import SpillStore

_open_ids = itertools.count(-1, -1)  # negative: never equal to a sealed batch's id

# A fast stream that falls silent for this share of flush_interval has
# ended, for now: its partial batch is sealed instead of waiting out the
# interval (a burst's last events would arrive up to a second late, and stay
# that much longer in memory, exposed to a crash). Long next to the pauses
# of a stream that fills batches (a request's worth of work), so that
# batches are not cut smaller; short next to flush_interval.
QUIET_SHARE = 0.1
# Looks more often than this would cost more than they save.
_MIN_QUIET = 0.01


def make_batches(
    units: list[bytes], encoding: Encoding, compress: bool, max_bytes: int
) -> list[Batch]:
    """Join encoded events into batches whose bodies stay within ``max_bytes``, in order.

    An event that alone exceeds ``max_bytes`` is sent alone.
    """
    per_event, overhead = encoding.per_event_overhead, encoding.body_overhead
    if overhead + sum(map(len, units)) + per_event * len(units) <= max_bytes:
        return [_batch(units, encoding, compress)] if units else []  # the usual case
    out: list[Batch] = []
    start, size = 0, overhead
    for i, unit in enumerate(units):
        n = len(unit) + per_event
        if i > start and size + n > max_bytes:
            out.append(_batch(units[start:i], encoding, compress))
            start, size = i, overhead
        size += n
    if start < len(units):
        out.append(_batch(units[start:], encoding, compress))
    return out


def _batch(units: list[bytes], encoding: Encoding, compress: bool) -> Batch:
    raw = encoding.join(units)
    body = gzip_compress(raw) if compress else raw
    return Batch(body, len(units), encoding.name, compress, raw_size=len(raw))


def decode_batch(batch: Batch) -> list[dict[str, Any]]:
    """The events of a sealed batch, decoded from its body."""
    raw = gzip_decompress(batch.body) if batch.gzipped else batch.body
    return Encoding(batch.encoding).decode(raw)


class Pump:
    """Drains the ring into batches for the sender (thread target: :meth:`run`)."""

    def __init__(
        self,
        opts: Options,
        pipeline: Pipeline,
        encoding: Encoding,
        warner: Warner,
        store: SpillStore | None,
    ) -> None:
        self.opts = opts
        self.pipeline = pipeline
        self.ring = pipeline.ring
        self.encoding = encoding
        self.warner = warner
        self.store = store
        self.encode_items = self.encoder_for(EventBuilder(opts.fields), encoding)
        self.spill_overflow = store is not None and opts.overflow == "spill"
        self.high_water = max(1, opts.capacity // 2)
        self._units: list[bytes] = []  # the open batch, its events encoded
        self._size = encoding.body_overhead  # its body's size once joined
        # When the open batch's first event was logged: its created time, on the
        # monotonic clock, at most flush_interval before the pump took it.
        self._opened_at = 0.0
        self._open_id = next(_open_ids)
        # The last batch sealed was full: the stream fills batches faster than
        # they age, so its end is worth watching for (see QUIET_SHARE).
        self._fast = False
        self._seen_emitted = -1  # the ring's count of events at the last look that saw it move
        self._seen_at = 0.0
        self._quiet = max(QUIET_SHARE * opts.flush_interval, _MIN_QUIET)
        self._head_seen: float | None = None  # when a look first found the ring's head waiting
        self._cycled_at = 0.0
        self._replay_turn = True
        # Set when a batch is due but the sender has no room: then only the
        # sender (taking a batch sets ring.wake) or new events can help, and
        # waiting on the open batch's age would spin.
        self._sender_full = False
        self._disk_broken_until = 0.0
        self._dropped_said = 0  # ring drops already reported in a warning
        #: Set by close: spill what is left in memory, release the files, and stop.
        self.final_requested = False
        self.final_done = threading.Event()

    @staticmethod
    def encoder_for(
        builder: EventBuilder, encoding: Encoding
    ) -> Callable[[list[Any]], list[bytes]]:
        """Ring items to encoded events: JSON written directly, msgpack through the dicts.

        Every item yields one event, whatever it holds.
        """
        if encoding.name in ("json", "ndjson"):
            return JsonEventWriter(builder, encoding.encode_event).encode_many

        def packed(items: list[Any]) -> list[bytes]:
            events = builder.build_many(items)
            return [
                encode_safely(encoding.encode_event, builder, event, item[3])
                for event, item in zip(events, items, strict=True)
            ]

        return packed

    def run(self) -> None:
        """Loop until the pipeline stops; never raises."""
        ring = self.ring
        while not self.pipeline.stopping and not self.final_done.is_set():
            try:
                woken = ring.wake.wait(self._timeout())
                if not (woken or self.final_requested or self._cycle_due(time.monotonic())):
                    continue  # only a look at the stream
            except Exception:  # deciding when to look must never stop the pump
                woken = ring.wake.wait(self.opts.flush_interval)
            if woken:
                ring.wake.clear()
            ring.pump_busy = True
            try:
                if self.final_requested:
                    self.final()
                else:
                    self._cycled_at = time.monotonic()
                    self.cycle()
            except Exception as e:  # a bug here must cost a batch, not the worker
                self._lose_open_batch(e)
            finally:
                ring.pump_busy = False

    def _timeout(self) -> float:
        """How long to wait for the ring's wake-up (at a batch's worth) before looking anyway.

        While events wait: until the oldest is due to age. While a fast
        stream runs: every quiet period too, to see it stop.
        """
        interval = self.opts.flush_interval
        if self._sender_full:
            return interval  # only the sender taking a batch (it wakes us) can help
        age = self._age(time.monotonic())
        left = interval if age is None else max(0.0, interval - age)
        return min(left, self._quiet) if self._fast else left

    def _cycle_due(self, now: float) -> bool:
        """After a timed wait: True when a cycle has work to do.

        Work: a batch that aged, a fast stream that stopped, or, now and then
        while nothing waits, the spill and the acknowledgements.
        """
        interval = self.opts.flush_interval
        if self._sender_full:
            return True
        age = self._age(now)
        if age is not None:
            return self._batch_due(age, now)
        if not self._fast:
            return True
        if self._stream_stopped(now):
            self._fast = False  # it stopped on a batch boundary: nothing left to watch
        return now - self._cycled_at >= interval

    def _batch_due(self, age: float, now: float) -> bool:
        """True when events that have waited ``age`` seconds should go now."""
        return age >= self.opts.flush_interval or self._stream_stopped(now)

    def _age(self, now: float) -> float | None:
        """How long the oldest event not yet sent has waited, or None when none waits.

        The ring head's age is worked out afresh at every look, clamped to
        ``flush_interval``, and compared with it as it is: rebuilt as an
        instant, ``now - (now - interval)`` falls short of ``interval`` for
        some ``now`` in floating point, and the pump would look again and
        again with a timeout of 0. The open batch's age grows with the clock.
        """
        if self._units:
            return now - self._opened_at
        try:
            record = self.ring.items[0][2]
        except IndexError:  # empty, or emptied by a caller making room meanwhile
            self._head_seen = None
            return None
        if self._head_seen is None:
            self._head_seen = now
        return self._head_age(record, now)

    def _head_age(self, record: Any, now: float) -> float:
        """The age of the ring's oldest event: from its ``created`` time, within ``flush_interval``.

        Never less than since the pump first saw it waiting: a record dated
        in the future (the wall clock stepped back) or with no usable time
        would otherwise never age. Never more than ``flush_interval``: a
        record made long before it was logged is due at once, not earlier.
        """
        age = min(max(time.time() - created_time(record), 0.0), self.opts.flush_interval)
        seen = self._head_seen
        return age if seen is None else max(age, now - seen)

    def _stream_stopped(self, now: float) -> bool:
        """True once a fast stream has logged nothing for a quiet period; records this look.

        Fast: the last batch was sealed full, so the stream fills batches
        before they age. Its last events then need not wait out
        ``flush_interval``; a slow stream's do, as they should. The pump is
        not woken for each event: silence is the ring's count of events not
        moving between its looks.
        """
        if not self._fast:
            return False
        emitted = self.ring.emitted
        if emitted != self._seen_emitted:
            self._seen_emitted, self._seen_at = emitted, now
            return False
        return now - self._seen_at >= self._quiet

    def cycle(self) -> None:
        """Take what the ring holds; send, spill or replay every batch that is due."""
        opts, pipeline = self.opts, self.pipeline
        self._apply_acks()
        self._warn_overflow()
        self._sender_full = False
        while not pipeline.stopping and not self.final_requested:
            if len(self._units) < opts.batch_max_records and self._size < opts.batch_max_bytes:
                self._fill(opts.batch_max_records - len(self._units))
            full = len(self._units) >= opts.batch_max_records or self._size >= opts.batch_max_bytes
            with pipeline.lock:
                # A waiting flush or close wants the open batch as soon as the
                # ring is drained into it, not after flush_interval.
                wanted = pipeline.flush_wanted()
                room = pipeline.has_room()
            now = time.monotonic()
            due = bool(self._units) and (
                full or wanted or self._batch_due(now - self._opened_at, now)
            )
            if room:
                if self._replay_turn or not due:
                    self._replay_turn = False
                    if self._replay_one():
                        continue
                if due:
                    self._replay_turn = True
                    self._fast = full
                    for b in self._seal():
                        pipeline.enqueue(b)
                    continue
                return
            if self.spill_overflow and self._units and len(self.ring.items) >= self.high_water:
                self._spill(self._seal())
                continue
            self._sender_full = due
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
        items = self.pipeline.take(limit, self._open_id)
        if not items:
            return
        now = time.monotonic()
        if not self._units:
            # A batch's age counts from its first event's arrival, not from
            # when the pump got round to it.
            self._opened_at = now - self._head_age(items[0][2], now)
        self._head_seen = None
        units = self.encode_items(items)
        self._units += units
        self._size += sum(map(len, units)) + self.encoding.per_event_overhead * len(units)

    def _seal(self) -> list[Batch]:
        units, self._units, self._size = self._units, [], self.encoding.body_overhead
        open_id, self._open_id = self._open_id, next(_open_ids)
        if not units:
            return []
        try:
            batches = make_batches(
                units, self.encoding, self.opts.compress, self.opts.batch_max_bytes
            )
        except Exception as e:  # encoding cleans values first; this is a bug, not data
            self._drop(open_id, len(units), e)
            return []
        self.pipeline.register(batches, open_id)
        return batches

    # -- the spill ---------------------------------------------------------------

    def _spill(self, batches: list[Batch]) -> None:
        """Write batches to disk; a batch the disk cannot take is dropped and counted."""
        for b in batches:
            if self._write(b):
                self.pipeline.spilled(b)
            else:
                self.pipeline.resolve(b, "dropped")
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
            self._disk_broken_until = time.monotonic() + 5.0
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

    def _replay_one(self) -> bool:
        """Queue one spilled batch when the endpoint is taking them; True if one was queued."""
        store = self.store
        if store is None or not store.backlog():
            return False
        pipeline = self.pipeline
        with pipeline.lock:
            # After a failure, replay waits for the next 2xx. But when nothing
            # else is in flight, nothing would ever find out that the endpoint
            # is back: then one spilled batch goes out as the probe (the
            # sender retries it with back-off, so there is only ever one).
            probing = pipeline.in_flight is not None or bool(pipeline.ready)
            if pipeline.healthy is False and probing:
                return False
        try:
            batch = store.next_batch()
        except OSError as e:
            self.warner.warn("replay-error", "logship: cannot read the spill folder: %s", e)
            return False
        if batch is None:
            return False
        if batch.encoding != self.encoding.name or batch.gzipped != self.opts.compress:
            # Spilled under other settings: the transport speaks only ours.
            try:
                raw = self.encoding.encode(decode_batch(batch))
            except Exception:  # a body that does not decode, or inflates past its bound
                pipeline.count("corrupt")
                pipeline.resolve(batch, "dropped")  # acknowledged: it leaves the disk
                return True
            batch.body = gzip_compress(raw) if self.opts.compress else raw
            batch.encoding, batch.gzipped = self.encoding.name, self.opts.compress
        self.pipeline.enqueue(batch)
        return True

    def _apply_acks(self) -> None:
        acks = self.pipeline.pop_acks()
        if self.store is None or not acks:
            return
        for origin in acks:
            self.store.ack(origin)
        self._note_usage()

    def _note_usage(self) -> None:
        if self.store is not None:
            usage = self.store.usage()
            with self.pipeline.lock:
                self.pipeline.spill_bytes = usage

    def final(self) -> None:
        """At close, after delivery had its chance: spill what memory holds, release files.

        Runs on the pump thread, or on the closing thread when no worker
        thread could start (interpreter shutdown).
        """
        try:
            self._apply_acks()
            if self.store is not None:
                # Oldest first, so a replay keeps the order: the batch in
                # flight, the waiting ones, the open batch, then the ring.
                with self.pipeline.lock:
                    leftovers = list(self.pipeline.ready)
                    self.pipeline.ready.clear()
                    in_flight = self.pipeline.in_flight
                if in_flight is not None:
                    leftovers.insert(0, in_flight)
                # Batches read from the spill are still there; the rest is written now.
                self._spill([b for b in leftovers if b.origin is None and not b.on_disk])
                while True:
                    self._fill(self.opts.batch_max_records)
                    if not self._units:
                        break
                    self._spill(self._seal())
                self.store.release()
                self._note_usage()
        finally:
            self.final_done.set()

    def _lose_open_batch(self, error: Exception) -> None:
        units, self._units, self._size = self._units, [], self.encoding.body_overhead
        open_id, self._open_id = self._open_id, next(_open_ids)
        self._drop(open_id, len(units), error)

    def _drop(self, open_id: int, n: int, error: Exception) -> None:
        """Count the ``n`` events of open batch ``open_id`` as dropped, and say why."""
        self.pipeline.resolve(Batch(b"", n, self.encoding.name, False, id=open_id), "dropped")
        self.warner.warn(
            "pump-error", "logship: internal error while batching; %d events dropped: %r", n, error
        )
