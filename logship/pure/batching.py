"""Sealed batches, and how encoded events are cut into them and split again. Pure.

A :class:`Batch` keeps only its body, exactly as it is sent (compressed
when the encoder compresses), its count and its Idempotency-Key: the
events are decoded again in the rare cases that need them (a 413 split, a
per-event answer, a dead letter). The same bytes go to the spill, and a
replay sends them under the same key.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

_batch_ids = itertools.count(1)


def new_key() -> str:
    """A fresh Idempotency-Key for a batch."""
    return uuid.uuid4().hex


@dataclass(eq=False)
class Origin:
    """Where a replayed batch lies on disk; acknowledged once all its parts resolve."""

    file_id: str
    offset: int
    parts: int = 1  # a split makes more parts of the same frame


@dataclass(eq=False)
class Batch:
    """A sealed group of events sent as one request, under one Idempotency-Key."""

    body: bytes
    count: int
    encoding: str  # the encoder's name: how to read ``body`` back (see ``pure.protocols``)
    gzipped: bool
    key: str = field(default_factory=new_key)
    id: int = field(default_factory=lambda: next(_batch_ids))
    raw_size: int = 0  # encoded bytes before compression
    origin: Origin | None = None  # set when read back from the spill
    #: Read back from this handler's own spill: the id it had when spilled.
    spilled_id: int | None = None
    on_disk: bool = False  # a copy was spilled (at close) while it was in flight

    def __len__(self) -> int:
        return self.count


class Joiner(Protocol):
    """What batch building needs of an encoder."""

    name: str
    compress: bool
    per_event_overhead: int  # bytes joining adds per event
    body_overhead: int  # bytes joining adds once

    def body(self, units: Sequence[bytes]) -> tuple[bytes, int]:
        """The request body for ``units`` and its size before compression."""
        ...


def batch_of(units: Sequence[bytes], encoder: Joiner) -> Batch:
    """One batch holding ``units``, in order."""
    body, raw_size = encoder.body(units)
    return Batch(body, len(units), encoder.name, encoder.compress, raw_size=raw_size)


def cut(units: Sequence[bytes], encoder: Joiner, max_bytes: int) -> list[Sequence[bytes]]:
    """``units`` in consecutive groups whose joined size stays within ``max_bytes``.

    A unit that alone exceeds ``max_bytes`` is a group of its own.
    """
    per_event, overhead = encoder.per_event_overhead, encoder.body_overhead
    if overhead + sum(map(len, units)) + per_event * len(units) <= max_bytes:
        return [units] if units else []  # the usual case
    groups: list[Sequence[bytes]] = []
    start, size = 0, overhead
    for i, unit in enumerate(units):
        n = len(unit) + per_event
        if i > start and size + n > max_bytes:
            groups.append(units[start:i])
            start, size = i, overhead
        size += n
    if start < len(units):
        groups.append(units[start:])
    return groups


def make_batches(units: Sequence[bytes], encoder: Joiner, max_bytes: int) -> list[Batch]:
    """Batches of ``units`` whose bodies stay within ``max_bytes`` before compression."""
    return [batch_of(group, encoder) for group in cut(units, encoder, max_bytes)]


def split(batch: Batch, units: Sequence[bytes], encoder: Joiner, max_bytes: int) -> list[Batch]:
    """``batch`` (whose events are ``units``) as two halves, each cut to ``max_bytes``.

    The halves' keys derive from the batch's, so a retried split of the
    same batch is recognisably the same; they keep its origin on disk.
    """
    mid = len(units) // 2
    halves = [
        b for part in (units[:mid], units[mid:]) for b in make_batches(part, encoder, max_bytes)
    ]
    for i, half in enumerate(halves):
        half.key = f"{batch.key}.{i}"
        half.origin = batch.origin
    return halves


def pick(
    batch: Batch, units: Sequence[bytes], indices: Sequence[int], encoder: Joiner, tag: str
) -> Batch:
    """A batch of the events of ``batch`` at ``indices``, under a key derived with ``tag``.

    For answers that judge each event: those to retry go again alone.
    """
    part = batch_of([units[i] for i in indices], encoder)
    part.key = f"{batch.key}.{tag}"
    part.origin = batch.origin
    return part
