"""What ``logship spill`` reads of a spill folder: summaries, dead letters, purging.

Only the command line uses this; the handler's worker writes, claims and
replays the same files through ``logship.worker.spill``.
"""

from __future__ import annotations

import dataclasses
import math
import mmap
import os
from collections import deque
from collections.abc import Iterator
from typing import Any

import msgpack

from logship.pure.frames import iter_frames, key_problem, open_payload
from logship.pure.journal import read_segment
from logship.pure.options import PROTOCOLS
from logship.pure.redact_url import redact_url
from logship.pure.sealing import Sealer, WrongKey
from logship.worker.spill.deadletters import (
    DEAD_LETTER_NAME,
    dead_letter_paths,
    file_id_of,
    is_dead_letter,
)
from logship.worker.spill.folder import (
    REGION_SUFFIX,
    SpillFile,
    file_header,
    has_regions,
    has_spilled,
    list_files,
    owner_alive,
    read_acks,
    remove_quietly,
    spill_frames,
)
from logship.worker.spill.region import MAX_SEGMENT
from logship.worker.spill.safefiles import (
    ensure_dir,
    folder_lock,
    folder_problem,
    open_file,
    read_file,
)


@dataclasses.dataclass
class FolderSummary:
    """What one spill folder holds, for ``logship spill status``."""

    folder: str
    url: str | None = None  # as the files record it, redacted
    files: int = 0
    events: int = 0
    bytes: int = 0
    corrupt: int = 0
    oldest: float | None = None  # Unix time of the oldest file
    live_owners: set[int] = dataclasses.field(default_factory=set)  # pids still writing
    live_files: int = 0
    locked_files: int = 0  # encrypted under a key we do not have (live ones not counted)
    regions: int = 0  # region segments (durability="crash") of processes that died
    urls: dict[str, str] = dataclasses.field(default_factory=dict)  # path -> recorded endpoint
    refused: str | None = None  # why logship will not use this folder
    protocol: str | None = None  # what the files were sent as (older files record none: http)


def recorded_url(header: dict[str, Any]) -> str | None:
    """The endpoint a file's header records, redacted (older files stored it whole)."""
    url = header.get("url")
    return redact_url(url) if isinstance(url, str) else None


def summarize(folder: str, live_tokens: set[str], sealer: Sealer | None = None) -> FolderSummary:
    """Count files, events and bytes in a spill folder (reads every file).

    Region segments (``durability="crash"``) count as files; the events of
    those a dead process left, as spilled events.
    """
    out = FolderSummary(folder, refused=folder_problem(folder, tighten=False))
    for f in list_files(folder, REGION_SUFFIX):
        segment = read_segment(read_file(f.path, MAX_SEGMENT) or b"")
        out.corrupt += segment.corrupt
        if not _count_file(out, f, segment.header or {}, live_tokens):
            out.regions += 1
            out.events += sum(segment.mark.pending(r.seq) for r in segment.records)
    for f in list_files(folder):
        header = file_header(f.path)
        live = _count_file(out, f, header, live_tokens)
        if key_problem(header, sealer):
            if not live:  # a live process's file counts as live only: what is left can be sent
                out.locked_files += 1
            continue
        for _offset, batch in spill_frames(f.path, read_acks(f.ack_path), sealer):
            if batch is None:
                out.corrupt += 1
            else:
                out.events += batch.n
    if out.url is None:
        out.url = recorded_url(file_header(os.path.join(folder, DEAD_LETTER_NAME)))
    return out


def _count_file(
    out: FolderSummary, f: SpillFile, header: dict[str, Any], live_tokens: set[str]
) -> bool:
    """Count one file of the folder; whether a live process is writing it."""
    out.files += 1
    out.bytes += f.size
    out.oldest = f.mtime if out.oldest is None else min(out.oldest, f.mtime)
    url = recorded_url(header)
    if url is not None:
        out.urls[f.path] = url
    out.url = out.url or url
    recorded = header.get("protocol")
    if out.protocol is None and isinstance(recorded, str) and recorded in PROTOCOLS:
        out.protocol = recorded
    if f.state != "r" and owner_alive(f.owner, live_tokens, f.mtime):
        out.live_files += 1
        out.live_owners.add(int(f.owner.split(".")[1]))
        return True
    return False


def find_folders(path: str) -> list[str]:
    """``path`` if it is a spill folder, else the spill folders directly under it."""

    def is_spill_folder(p: str) -> bool:
        try:
            return has_spilled(p) or has_regions(p) or any(is_dead_letter(n) for n in os.listdir(p))
        except OSError:
            return False

    if is_spill_folder(path):
        return [path]
    try:
        subs = sorted(os.path.join(path, d) for d in os.listdir(path))
    except OSError:
        return []
    return [p for p in subs if os.path.isdir(p) and is_spill_folder(p)]


def purge(folder: str, live_tokens: set[str], dead_letters: bool) -> tuple[int, int]:
    """Delete spill files no live handler is writing; returns (files deleted, files kept).

    Raises :class:`UnsafeFolder` for a folder that is not the user's own.
    """
    deleted = kept = 0
    with folder_lock(ensure_dir(folder)):
        for f in [*list_files(folder), *list_files(folder, REGION_SUFFIX)]:
            if f.state != "r" and owner_alive(f.owner, live_tokens, f.mtime):
                kept += 1
                continue
            remove_quietly(f.path, f.ack_path)
            deleted += 1
        if dead_letters:
            for path in dead_letter_paths(folder):
                remove_quietly(path)
                deleted += 1
    return deleted, kept


# -- dead letters -----------------------------------------------------------------


@dataclasses.dataclass
class DeadLetter:
    """One batch the server rejected for good, as ``write_dead_letter`` recorded it."""

    time: float | None  # Unix time of the rejection
    url: str | None
    status: int | None
    reason: str  # the server's answer body, or the error
    events: list[dict[str, Any]] | None  # None: encrypted under a key not given


class DeadLetterReader:
    """A folder's dead letters, oldest first, one batch at a time (iterate it).

    Counts what it could not read as it goes: ``corrupt`` damaged regions
    (a planted link or FIFO named like a dead-letter file counts as one),
    ``locked`` batches under a key not given, with ``locked_why``.
    """

    def __init__(self, folder: str, sealer: Sealer | None = None) -> None:
        self.folder, self.sealer = folder, sealer
        self.url: str | None = None
        self.corrupt = 0
        self.locked = 0
        self.locked_why = ""

    def __iter__(self) -> Iterator[DeadLetter]:
        for path in dead_letter_paths(self.folder):
            yield from self._file(path)

    def _file(self, path: str) -> Iterator[DeadLetter]:
        try:
            fd = open_file(path, os.O_RDONLY)
        except FileNotFoundError:
            return  # rotated or deleted meanwhile
        except OSError:
            self.corrupt += 1
            return
        try:
            size = os.fstat(fd).st_size
            # Mapped, not read: the page cache holds the file, the heap one frame.
            # (Writers only ever append, rename and delete these files.)
            view = mmap.mmap(fd, size, access=mmap.ACCESS_READ) if size else None
        finally:
            os.close(fd)
        if view is None:
            return
        try:
            yield from self._frames(view)
        finally:
            view.close()

    def _frames(self, data: Any) -> Iterator[DeadLetter]:
        frames = iter_frames(data)
        try:
            first = True
            header: dict[str, Any] = {}
            for _offset, payload in frames:
                if payload is None:
                    self.corrupt += 1
                elif first and payload.get("kind") == "dead-letter":
                    header = payload
                    self._note_header(header)
                else:
                    # (A damaged header frame was counted as corrupt; every frame left is a batch.)
                    letter = self._letter(payload, header)
                    if letter is not None:
                        yield letter
                first = False
        finally:
            frames.close()

    def _note_header(self, header: dict[str, Any]) -> None:
        url = header.get("url")
        if isinstance(url, str):
            self.url = redact_url(url)  # files written before URLs were redacted too

    def _letter(self, frame: dict[str, Any], header: dict[str, Any]) -> DeadLetter | None:
        try:
            payload = open_payload(frame, self.sealer, file_id_of(header) or "")
        except WrongKey:
            self.locked += 1
            self.locked_why = key_problem(header, self.sealer) or (
                "it is encrypted under a key not given: set LOGSHIP_SPILL_KEY"
                if self.sealer is None
                else "it was encrypted with another spill_key, or for another file"
            )
            return DeadLetter(None, self.url, None, "", None)
        except (ValueError, msgpack.UnpackException):
            self.corrupt += 1  # opened, but not a batch
            return None
        return _dead_letter(payload, self.url)


def _dead_letter(payload: dict[str, Any], url: str | None) -> DeadLetter:
    """A ``DeadLetter`` from a frame's map, tolerating mistyped fields."""
    when, status, reason = payload.get("time"), payload.get("status"), payload.get("reason")
    events, own_url = payload.get("events"), payload.get("url")
    if not (isinstance(when, (int, float)) and math.isfinite(when)):
        when = None
    return DeadLetter(
        time=None if when is None else float(when),
        url=redact_url(own_url) if isinstance(own_url, str) else url,
        status=status if isinstance(status, int) and not isinstance(status, bool) else None,
        reason=reason if isinstance(reason, str) else "",
        events=[e for e in events if isinstance(e, dict)] if isinstance(events, list) else [],
    )


@dataclasses.dataclass
class DeadLetters:
    """A summary of a folder's dead letters: counts, and the latest batches kept."""

    url: str | None = None
    batches: list[DeadLetter] = dataclasses.field(default_factory=list)  # the latest, oldest first
    count: int = 0  # batches read, locked ones included
    events: int = 0  # events in the batches that could be read
    corrupt: int = 0  # damaged regions, skipped
    locked: int = 0  # batches that cannot be opened with the key given
    locked_why: str = ""  # why, with what to do


def read_dead_letters(
    folder: str, sealer: Sealer | None = None, keep: int | None = None
) -> DeadLetters:
    """Read ``folder``'s dead letters, keeping the latest ``keep`` batches (None: all).

    Absent files read as empty.
    """
    reader = DeadLetterReader(folder, sealer)
    kept: deque[DeadLetter] = deque(maxlen=keep)
    count = events = 0
    for letter in reader:
        count += 1
        events += len(letter.events or ())
        kept.append(letter)
    return DeadLetters(
        reader.url, list(kept), count, events, reader.corrupt, reader.locked, reader.locked_why
    )
