"""Regions left by processes that died (``durability="crash"``), taken over into the spill.

On the pump thread, every few seconds (``SpillStore.claim_region``), and
whatever this handler's own ``durability``: the segments of one dead (or
released) region are claimed under the folder's lock, as spill files are;
the records above its mark are built into events again, with the dead
handler's uuid salt, ``fields``, host name and kernel version (from the
segments' header), so each event is the one that handler would have sent,
uuid included; they are written as batches to this handler's spill (counted
in ``adopted`` and ``spilled``), and the segments are deleted. From there
they are replayed like any spilled batch.

When the disk refuses a batch halfway, the records written so far are
marked as done in the segments, which are released for a later try.
"""

from __future__ import annotations

from collections.abc import Callable

from logship.pure.batching import make_batches
from logship.pure.event import EventBuilder
from logship.pure.journal import JournalRecord, Region, fields_of, salt_of, text_of
from logship.pure.options import Options
from logship.pure.protocols import Encoder
from logship.ring import Item
from logship.worker.ledger import Ledger
from logship.worker.spill import folder as sf
from logship.worker.spill import region as rf
from logship.worker.spill.store import SpillStore


def _item(r: JournalRecord) -> Item:
    """A region record as a ring item, for the encoder (its ``record``: an ``Origin``)."""
    return Item(r.seq, 0, r.record, r.message, r.exception, r.stack, r.context, r.extras, r.payload)


class Adopter:
    """Takes dead regions over into this handler's spill (see the module's text)."""

    def __init__(
        self,
        opts: Options,
        ledger: Ledger,
        store: SpillStore,
        encoder_for: Callable[[EventBuilder], Encoder],
    ) -> None:
        self.opts = opts
        self.ledger = ledger
        self.store = store
        self.encoder_for = encoder_for

    def adopt(self, pause: Callable[[], object]) -> bool:
        """Take over one region if one is free; True when one was.

        ``pause`` is called between chunks of events (to give other threads
        the GIL). Raises ``OSError`` when the folder cannot be read or the
        spill cannot be written (the segments are then given back).
        """
        paths = self.store.claim_region()
        if not paths:
            return False
        found = rf.read_claimed(paths)
        if found.corrupt:
            self.ledger.count("corrupt", found.corrupt)
        sf.remove_quietly(*found.unreadable)
        regions = list(found.regions)
        try:
            while regions:
                region = regions[0]
                try:
                    self._spill(region, pause)
                except Exception:
                    self.store.release_region([p for r in regions for p in r.paths])
                    raise
                sf.remove_quietly(*region.paths)
                regions.pop(0)
        finally:
            # Ready for replay now, and on disk: also what was written before a
            # failure, whose delivery is what frees a full disk.
            self.store.seal()
        return True

    def _spill(self, region: Region, pause: Callable[[], object]) -> None:
        """Write the region's events to the spill; when that fails, mark what was written."""
        header, records = region.header, region.records
        builder = EventBuilder(
            fields_of(header), salt_of(header), text_of(header, "host"), text_of(header, "kernel")
        )
        encoder = self.encoder_for(builder)
        step, done = self.opts.batch_max_records, 0
        try:
            for start in range(0, len(records), step):
                items = [_item(r) for r in records[start : start + step]]
                for batch in make_batches(encoder.units(items), encoder, self.opts.batch_max_bytes):
                    if self.store.write(batch):
                        self.ledger.adopt_spilled(batch)
                    else:  # past spill_max_bytes: dropped, as the spill drops
                        self.ledger.adopt_and_drop(batch.count)
                    done += batch.count
                pause()
        except Exception:
            if done:  # what is below the next record is in the spill now, or counted
                after = records[done].seq if done < len(records) else records[-1].seq + 1
                mark = region.mark.resolved_below(after)
                for path in region.paths:
                    rf.write_mark(path, mark)
            raise
