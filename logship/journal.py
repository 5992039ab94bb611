"""The region's part on the application's threads: one record per event, inside the log call.

With ``durability="crash"``, :meth:`Ring.put <logship.ring.Ring.put>` calls
:meth:`JournalWriter.append` with the ring's lock held, so records are
written one at a time, in sequence order. ``append`` packs what the worker
needs to build the event again (``pure.journal.RECORD_FIELDS``: the values
``emit`` resolved, and the record attributes the event reads) with one
reused ``msgpack.Packer``, frames it with a CRC32, and copies it into the
current segment's shared mapping. Once the copy is made the event is in the
kernel's page cache: a process killed after the call returns loses nothing.
There is no ``fsync``: what a power cut or a kernel crash takes is out of
this module's reach (docs/spill.md).

Segments are made by the worker (``worker.keeper``), which keeps one spare
ready: when the current segment is full, ``append`` takes the spare and
wakes the worker to make the next. Only when there is no spare does the
calling thread make a segment itself; when the disk refuses one, the region
is turned off (``Ring.journal`` set to None: events are then kept in memory
only, and counted) until the worker can make one again.
"""

from __future__ import annotations

import errno
import mmap
import zlib
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

import msgpack

from logship.pure.journal import FRAME, fallback_fields, record_values
from logship.ring import Ring

_head = FRAME.pack
_crc32 = zlib.crc32


class Mapped(Protocol):
    """A segment as the writer sees it: its mapping, and its first sequence number."""

    map: mmap.mmap
    first_seq: int


S = TypeVar("S", bound=Mapped)


def _packable(value: Any) -> Any:
    """What the packer takes instead of a value whose type is not exactly one it packs.

    The packer packs exact types only (``strict_types``: its fastest): a
    subclass of str, int or float is packed as its plain value (as every
    encoder writes it), a mapping (bound context is a read-only one) as a
    dict, a tuple as a list. Anything else can only be a record attribute
    that a filter or a record factory set (``extra=`` values and bound
    context are resolved before): it is written as ``<its type>``, not its
    repr, which would run the application's code inside the ring's lock,
    where every other logging thread waits.
    """
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int.__index__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    return f"<{type(value).__name__}>"


def _no_segment(frame: bytes) -> int:
    raise ValueError("no segment")


class JournalWriter(Generic[S]):
    """Writes each event to the region: on the application's threads, under ``Ring.lock``.

    The worker's side (``worker.keeper.RegionKeeper``) reads and changes
    :attr:`segments`, :attr:`spare` and the on/off state only while holding
    the ring's lock too, through :meth:`install` and :meth:`not_durable`.
    """

    __slots__ = (
        "_pack",
        "_write",
        "error",
        "make",
        "max_segments",
        "missed",
        "off_since",
        "ring",
        "segments",
        "spare",
        "wake",
    )

    def __init__(
        self,
        ring: Ring,
        make: Callable[[int], S],
        wake: Callable[[], None],
        max_segments: int,
    ) -> None:
        self._pack = msgpack.Packer(
            use_bin_type=True, datetime=False, strict_types=True, default=_packable
        ).pack
        self._write: Callable[[bytes], int] = _no_segment
        self.ring = ring
        #: Makes a segment with room for a record of the given size (the worker's
        #: ``RegionKeeper.make``); raises ``OSError`` when the disk refuses.
        self.make = make
        #: Wakes the worker (to make the next spare).
        self.wake = wake
        #: The segments in use, oldest first; the last one is being written.
        self.segments: list[S] = []
        #: A segment made ahead by the worker, for when the current one is full.
        self.spare: S | None = None
        #: More segments than this hold unresolved events: the worker is stuck.
        self.max_segments = max_segments
        #: While the region is off: the sequence number of the first event it missed.
        self.off_since: int | None = None
        #: Events logged while the region was off, in earlier spells.
        self.missed = 0
        #: Why the region went off, for the worker to say (then cleared by it).
        self.error: BaseException | None = None

    # -- the application's threads, with Ring.lock held ---------------------------------

    def append(
        self,
        seq: int,
        record: Any,
        message: str,
        exception: str | None,
        stack: str | None,
        context: Mapping[str, Any] | None,
        extras: Any,
        payload: Any,
    ) -> None:
        """Write one event's record to the current segment; never raises."""
        try:
            data = self._pack(
                [
                    seq,
                    record.created,
                    record.levelname,
                    record.name,
                    record.process,
                    record.threadName,
                    record.module,
                    record.funcName,
                    record.lineno,
                    message,
                    exception,
                    stack,
                    context,
                    extras,
                    payload,
                ]
            )
        except Exception:  # an odd record, an int past 64 bits, a lone surrogate
            data = self._pack_anyway(
                record_values(seq, record, message, exception, stack, context, extras, payload)
            )
        frame = _head(len(data), _crc32(data)) + data
        try:
            self._write(frame)
        except ValueError:  # the segment is full
            self._next_segment(seq, frame)

    def _pack_anyway(self, values: list[Any]) -> bytes:
        try:
            data: bytes = self._pack(values)
        except Exception:
            data = self._pack(fallback_fields(values))
        return data

    def _next_segment(self, seq: int, frame: bytes) -> None:
        """Move to the spare (or a new segment) and write ``frame`` there."""
        try:
            seg = self.spare
            if seg is None or len(seg.map) - seg.map.tell() < len(frame):
                if len(self.segments) >= self.max_segments:
                    raise OSError(
                        errno.ENOSPC,
                        f"{len(self.segments)} segments hold events not yet delivered "
                        "or spilled: the region is full",
                    )
                seg = self.make(len(frame))  # rare: the worker had no spare ready
            else:
                self.spare = None
            seg.map.write(frame)
        except Exception as e:  # the disk refuses: memory durability until it takes one again
            self.stop(seq, e)
        else:
            seg.first_seq = seq
            self.segments.append(seg)
            self._write = seg.map.write
        self.wake()

    def stop(self, seq: int, error: BaseException) -> None:
        """Turn the region off from event ``seq`` on, because of ``error``."""
        self.ring.journal = None
        self.off_since = seq
        self.error = error

    # -- the worker, with Ring.lock held ------------------------------------------------

    def install(self, seg: S, seq: int) -> None:
        """Write to ``seg`` from event ``seq`` on, turning the region on (again)."""
        if self.off_since is not None:
            self.missed += seq - self.off_since
            self.off_since = None
        seg.first_seq = seq
        self.segments.append(seg)
        self._write = seg.map.write
        self.ring.journal = self.append

    def detach(self) -> list[S]:
        """Stop writing (the handler closes): every segment, the spare included."""
        self.ring.journal = None
        self._write = _no_segment
        out = self.segments + ([self.spare] if self.spare is not None else [])
        self.segments, self.spare = [], None
        return out

    def not_durable(self, emitted: int) -> int:
        """Events logged while the region was off, so far; ``emitted``: the ring's count."""
        return self.missed + (emitted - self.off_since if self.off_since is not None else 0)
