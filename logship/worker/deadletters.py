"""Dead letters: batches the server rejected for good, kept in the spill folder.

``dead-letter.lship`` takes new rejections; when it would pass a quarter of
the dead-letter cap it is renamed ``dead-letter-ID.lship`` (``ID`` sorts
oldest first) and a new one is started, and the oldest renamed files are
deleted while all of them together pass the cap. The cap is a quarter of
``spill_max_bytes`` (at least 64 KiB), on top of it: rejected events are
counted in ``rejected`` once and for all, and these files only let a person
see what was rejected and why.

Each file has its own random id in its header, and sealed frames are bound
to it (see ``pure.sealing``). Reading is a stream: one frame in memory at a
time, however large the files are.
"""

from __future__ import annotations

import dataclasses
import math
import mmap
import os
import re
import secrets
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import msgpack

from logship.pure.frames import FILE_HEADER, encode_frame, iter_frames, key_problem, open_payload
from logship.pure.redact_url import redact_url
from logship.pure.sealing import Sealer, WrongKey
from logship.worker.safefiles import ensure_dir, folder_lock, open_file

DEAD_LETTER_NAME = "dead-letter.lship"
_ROTATED = re.compile(r"^dead-letter-([0-9a-f]+)\.lship$")
MIN_DEAD_LETTER_CAP = 64 * 1024
_DEFAULT_SPILL_MAX_BYTES = 256 * 1024 * 1024
# How much of a file is read to find its header frame.
_HEADER_READ = 64 * 1024


def dead_letter_cap(spill_max_bytes: int) -> int:
    """Bytes the dead-letter files of a folder may hold together."""
    return max(MIN_DEAD_LETTER_CAP, spill_max_bytes // 4)


def is_dead_letter(name: str) -> bool:
    """Whether a file name is a dead-letter file's, current or rotated."""
    return name == DEAD_LETTER_NAME or _ROTATED.match(name) is not None


def dead_letter_paths(folder: str) -> list[str]:
    """The folder's dead-letter files, oldest first: the rotated ones, then the current."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    rotated = sorted((m[1], n) for n in names if (m := _ROTATED.match(n)))
    out = [os.path.join(folder, n) for _id, n in rotated]
    if DEAD_LETTER_NAME in names:
        out.append(os.path.join(folder, DEAD_LETTER_NAME))
    return out


# -- writing ---------------------------------------------------------------------


def write_dead_letter(
    folder: str,
    url: str,
    key: str,
    events: list[dict[str, Any]],
    status: int,
    reason: str,
    sealer: Sealer | None = None,
    spill_max_bytes: int = _DEFAULT_SPILL_MAX_BYTES,
) -> str:
    """Record a batch the server rejected for good; return where (and what was deleted).

    Appends happen under the folder lock, so processes sharing the folder
    never interleave their frames. Raises ``ValueError`` for a batch larger
    than the whole dead-letter cap, ``OSError`` when the folder cannot take
    it (an :class:`~logship.worker.safefiles.UnsafeFile` for a planted file).
    """
    cap = dead_letter_cap(spill_max_bytes)
    payload = {"key": key, "events": events, "status": status, "reason": reason}
    payload.update(time=time.time(), url=redact_url(url))
    size_of_frame = len(encode_frame(payload, sealer, "0" * 16))
    if size_of_frame > cap:
        raise ValueError(
            f"a rejected batch of {size_of_frame} bytes is larger than the dead-letter cap "
            f"({cap} bytes, a quarter of spill_max_bytes)"
        )
    path = os.path.join(ensure_dir(folder), DEAD_LETTER_NAME)
    with folder_lock(folder):
        fd = open_file(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        try:
            file_id, size = _current_id(fd), os.fstat(fd).st_size
            if size and (file_id is None or size + size_of_frame > cap // 4):
                os.close(fd)
                fd = -1
                os.rename(path, os.path.join(folder, f"dead-letter-{time.time_ns():020x}.lship"))
                fd = open_file(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL)
                size = 0
            data = b""
            if size == 0:
                file_id = secrets.token_hex(8)
                data = FILE_HEADER + encode_frame(_header(url, file_id, sealer))
            os.write(fd, data + encode_frame(payload, sealer, file_id or ""))
        finally:
            if fd >= 0:
                os.close(fd)
        deleted = _keep_within(folder, cap)
    if deleted:
        return (
            f"{path} ({deleted} older dead-letter files deleted: all are kept within {cap} bytes)"
        )
    return path


def _header(url: str, file_id: str, sealer: Sealer | None) -> dict[str, Any]:
    header = {"kind": "dead-letter", "url": redact_url(url), "created": time.time()}
    header["fid"] = file_id
    if sealer is not None:
        header["key_id"] = sealer.key_id
    return header


def _current_id(fd: int) -> str | None:
    """The id in the header of the open dead-letter file; None when it has none to use."""
    for _offset, payload in iter_frames(os.pread(fd, _HEADER_READ, 0)):
        return _file_id(payload) if payload and payload.get("kind") == "dead-letter" else None
    return None


def _file_id(header: dict[str, Any]) -> str | None:
    fid = header.get("fid")
    return fid if isinstance(fid, str) and re.fullmatch(r"[0-9a-f]{1,64}", fid) else None


def _keep_within(folder: str, cap: int) -> int:
    """Delete the oldest rotated dead-letter files while all of them pass ``cap``."""
    paths = dead_letter_paths(folder)
    sizes = {}
    for p in paths:
        try:
            sizes[p] = os.lstat(p).st_size
        except FileNotFoundError:
            pass
    total, deleted = sum(sizes.values()), 0
    for p in paths:
        if total <= cap or os.path.basename(p) == DEAD_LETTER_NAME:
            break
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
        total -= sizes.get(p, 0)
        deleted += 1
    return deleted


# -- reading ---------------------------------------------------------------------


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
            payload = open_payload(frame, self.sealer, _file_id(header) or "")
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
