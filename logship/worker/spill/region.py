"""The region's files (``durability="crash"``): segments made, mapped, marked, let go, read back.

A segment is a file of the spill folder named like a spill file, with its
own ending (``o-ID-OWNER.lregion``), and mapped ``MAP_SHARED``: what the
application's threads copy into the mapping is in the kernel's page cache at
once, and stays there when the process dies. Its layout is in
``pure.journal``.

Every block is reserved when the segment is made (``posix_fallocate``):
writing to a mapped page that the file system cannot back (a sparse file on
a full disk) would kill the process with ``SIGBUS``. A segment that cannot
be reserved is never mapped: the caller gets the ``OSError``.

Claiming the segments of a process that died follows the spill's rules
(``store.SpillStore.claim_region``: renames under the folder's lock).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from logship.pure.journal import (
    PAGE,
    SLOTS,
    Mark,
    Region,
    mark_offset,
    mark_slot,
    read_segment,
    regions_of,
    segment_prefix,
    segment_size,
)
from logship.worker.spill import folder as sf
from logship.worker.spill import safefiles as safe

#: What is read of a segment at most: one record no larger than a frame can be.
MAX_SEGMENT = sf.MAX_SPILL_FILE


@dataclass(eq=False)
class MappedSegment:
    """One segment of this handler's region, mapped."""

    path: str
    map: mmap.mmap
    first_seq: int = 0  # the first sequence number written to it
    slot: int = 0  # the mark slot to write next

    def mark(self, mark: Mark) -> None:
        """Record which events are unresolved (in the slot written longest ago)."""
        at, data = mark_offset(self.slot), mark_slot(mark)
        self.map[at : at + len(data)] = data
        self.slot ^= 1

    def delete(self) -> None:
        """Unmap and delete it: every record in it is resolved."""
        self.unmap()
        sf.remove_quietly(self.path)

    def unmap(self) -> None:
        try:
            self.map.close()
        except (BufferError, ValueError):  # still exported somewhere, or closed: the GC unmaps
            pass


def make_segment(folder: str, owner: str, header: Mapping[str, Any], room: int) -> MappedSegment:
    """A new segment of ``owner``'s region, reserved on disk and mapped, with room for
    a record of ``room`` bytes; ``OSError`` when the disk cannot hold it (``UnsafeFolder``,
    an ``OSError`` too, when the folder is not the user's own).

    Its pages are touched once here, on the worker, so that the application's
    threads do not take the page faults of a fresh mapping.
    """
    prefix = segment_prefix(header)
    size = segment_size(len(prefix), room)
    path, _file_id = sf.new_file_name(safe.ensure_dir(folder), owner, sf.REGION_SUFFIX)
    fd = safe.open_file(path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
    try:
        try:
            os.posix_fallocate(fd, 0, size)  # every block now, or ENOSPC / EFBIG now
            os.pwrite(fd, prefix, 0)
            mapped = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            sf.remove_quietly(path)
            raise
    finally:
        os.close(fd)  # the mapping keeps the file
    start = len(prefix)
    mapped.seek(start)
    for at in range(start, size, PAGE):
        mapped[at] = 0  # a write fault now, on a byte still zero
    return MappedSegment(path, mapped)


def release(folder: str, owner: str) -> None:
    """Hand ``owner``'s segments to whoever comes next (``r`` state), under the folder lock."""
    with safe.folder_lock(safe.ensure_dir(folder)):
        for f in sf.list_files(folder, sf.REGION_SUFFIX):
            if f.owner == owner and f.state == "o":
                os.rename(f.path, f.renamed(folder, "r", owner))


# -- what a dead process left ----------------------------------------------------------------


@dataclass
class Found:
    """What claimed segments hold: regions, the damage met, and segments that are none."""

    regions: list[Region]
    corrupt: int
    unreadable: list[str]  # paths of segments with no readable header: nothing to replay


def read_claimed(paths: Iterable[str]) -> Found:
    """Read claimed segments (see ``pure.journal.regions_of``); a file that cannot be read
    counts as damage."""
    segments = []
    corrupt = 0
    for path in paths:
        seg = read_segment(safe.read_file(path, MAX_SEGMENT) or b"")
        corrupt += seg.corrupt
        segments.append((path, seg))
    unreadable = [path for path, seg in segments if seg.header is None]
    return Found(regions_of(segments), corrupt, unreadable)


def write_mark(path: str, mark: Mark) -> None:
    """Record ``mark`` in both slots of a claimed (unmapped) segment."""
    fd = safe.open_file(path, os.O_WRONLY)
    try:
        for slot in range(SLOTS):
            os.pwrite(fd, mark_slot(mark), mark_offset(slot))
    finally:
        os.close(fd)
