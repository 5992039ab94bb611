"""The pump thread: ring items in, sealed and compressed batches out.

It builds each event (schema, uuid, timestamp) as it takes items from the
ring, and seals the open batch when ``batch_max_records`` or
``batch_max_bytes`` is reached, when ``flush_interval`` has passed since its
first event, or at once while a flush or close waits on it. It never touches
the network, so it stays free to drain the ring while the sender waits on a
slow endpoint.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from logship.pure.encoding import Encoding, gzip_compress
from logship.pure.event import EventBuilder
from logship.pure.options import Options
from logship.worker.diagnostics import Warner
from logship.worker.pipeline import Batch, Pipeline

# A rough per-event overhead of the encoded core fields, used to seal a batch
# before encoding it; the exact size is checked after encoding.
_EVENT_OVERHEAD = 320

_open_ids = itertools.count(-1, -1)  # negative: never equal to a sealed batch's id


def make_batches(
    events: list[dict[str, Any]],
    encoding: Encoding,
    compress: bool,
    max_bytes: int,
    key: str | None = None,
) -> list[Batch]:
    """Encode ``events`` into one batch, or halves of it until each fits ``max_bytes``.

    An event that alone exceeds ``max_bytes`` is sent alone. ``key`` keeps a
    known Idempotency-Key when the events stay one batch.
    """
    raw = encoding.encode(events)
    if len(raw) > max_bytes and len(events) > 1:
        mid = len(events) // 2
        return make_batches(events[:mid], encoding, compress, max_bytes) + make_batches(
            events[mid:], encoding, compress, max_bytes
        )
    batch = Batch(events=events, low_seq=0, body=gzip_compress(raw) if compress else raw)
    batch.raw_size = len(raw)
    if key is not None:
        batch.key = key
    return [batch]


class Pump:
    """Drains the ring into batches for the sender (thread target: :meth:`run`)."""

    def __init__(
        self, opts: Options, pipeline: Pipeline, encoding: Encoding, warner: Warner
    ) -> None:
        self.opts = opts
        self.pipeline = pipeline
        self.ring = pipeline.ring
        self.encoding = encoding
        self.warner = warner
        self.builder = EventBuilder(opts.fields)
        self._events: list[dict[str, Any]] = []
        self._estimate = 0
        self._opened_at = 0.0
        self._open_id = next(_open_ids)

    def run(self) -> None:
        """Loop until the pipeline stops; never raises."""
        interval = self.opts.flush_interval
        while not self.pipeline.stopping:
            if self._events:
                timeout = max(0.0, self._opened_at + interval - time.monotonic())
            else:
                timeout = interval
            self.ring.wake.wait(timeout)
            self.ring.wake.clear()
            try:
                self.cycle()
            except Exception as e:  # a bug here must cost a batch, not the worker
                self._lose_open_batch(e)

    def cycle(self) -> None:
        """Take what the ring holds and seal every batch that is due."""
        opts, pipeline = self.opts, self.pipeline
        while not pipeline.stopping:
            if len(self._events) < opts.batch_max_records and self._estimate < opts.batch_max_bytes:
                self._fill(opts.batch_max_records - len(self._events))
            if not self._events:
                return
            full = (
                len(self._events) >= opts.batch_max_records
                or self._estimate >= opts.batch_max_bytes
            )
            aged = time.monotonic() - self._opened_at >= opts.flush_interval
            with pipeline.lock:
                # A waiting flush or close wants the open batch as soon as the
                # ring is drained into it, not after flush_interval.
                wanted = pipeline.flush_wanted()
                room = pipeline.has_room()
            if not (full or aged or wanted) or not room:
                return  # keep filling; or the sender is behind and the rest waits in the ring
            self._seal()

    def _fill(self, limit: int) -> None:
        items = self.pipeline.take(limit, self._open_id)
        if not items:
            return
        if not self._events:
            self._opened_at = time.monotonic()
        build = self.builder.build
        append = self._events.append
        estimate = 0
        for _seq, size, record, message, exception, stack in items:
            try:
                append(build(record, message, exception, stack))
            except Exception as e:  # a hostile record attribute must not lose the event
                append(self.builder.fallback(message, e))
            estimate += size + _EVENT_OVERHEAD
        self._estimate += estimate

    def _seal(self) -> None:
        events, self._events, self._estimate = self._events, [], 0
        open_id, self._open_id = self._open_id, next(_open_ids)
        batches = make_batches(events, self.encoding, self.opts.compress, self.opts.batch_max_bytes)
        self.pipeline.queue(batches, open_id)

    def _lose_open_batch(self, error: Exception) -> None:
        events, self._events, self._estimate = self._events, [], 0
        open_id, self._open_id = self._open_id, next(_open_ids)
        lost = Batch(events=events, low_seq=0, id=open_id)
        self.pipeline.resolve(lost, "dropped")
        self.warner.warn(
            "pump-error",
            "logship: internal error while batching; %d events dropped: %r",
            len(events),
            error,
        )
