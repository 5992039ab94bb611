"""The spill folder's layout: file names, owners, liveness, listing, dead letters.

This module and ``spillstore`` are the only ones that touch spill files and
``filelock``. Nothing here runs at import time; ``platformdirs`` is asked
lazily.

A spill file is named ``STATE-ID-OWNER.lship``:

- ``ID`` is its creation time in nanoseconds plus random hex: names sort
  oldest first and never collide.
- ``OWNER`` names the handler that holds it: ``HOST.PID.START.TOKEN`` (a
  hash of the host name, the process id, the process start time, and a
  random token per handler), so a reused pid is never mistaken for the
  process that wrote the file.
- ``STATE`` is ``o`` (owned: written, or sealed and kept for replay, by its
  owner), ``c`` (claimed for replay by its owner), or ``r`` (released: its
  owner closed; anyone may claim it).

A live owner's files are its own. A dead owner's (by pid and start time),
and released files, are adopted by whichever handler claims them first;
claims are renames made while holding the folder's ``filelock``, so no
spilled batch is ever sent by two processes at once, and no file is ever
written by two processes (only the owner appends, and only to its ``o`` file).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
import secrets
import socket
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import msgpack

from logship.pure.frames import (
    FILE_HEADER,
    MAGIC,
    VERSION,
    encode_frame,
    iter_frames,
    open_payload,
    read_frames,
)
from logship.pure.sealing import Sealer, WrongKey

SUFFIX = ".lship"
ACK_SUFFIX = ".ack"
DEAD_LETTER_NAME = "dead-letter.lship"
LOCK_NAME = "spill.lock"
LOCK_TIMEOUT = 2.0
#: A file of another host's owner is treated as abandoned after this long untouched.
FOREIGN_STALE_AFTER = 3600.0

_NAME = re.compile(r"^([ocr])-([0-9a-f]+)-([0-9a-f]+\.\d+\.\d+\.[0-9a-f]+)\.lship$")


def endpoint_slug(url: str) -> str:
    """A folder name for an endpoint: readable, and unique through a short hash."""
    parts = urllib.parse.urlsplit(url)
    readable = f"{parts.hostname or 'host'}_{parts.port or ''}{parts.path}"
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", readable).strip("_")[:60]
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:10]
    return f"{readable}-{digest}"


def cache_root() -> str:
    """``platformdirs.user_cache_dir("logship")``, asked only when needed."""
    import platformdirs

    return str(platformdirs.user_cache_dir("logship"))


def default_spill_dir(url: str) -> str:
    """The per-endpoint default folder under the user's cache directory."""
    return os.path.join(cache_root(), endpoint_slug(url))


def ensure_dir(path: str) -> str:
    """Create ``path`` (and parents) with mode 0700 if missing; return it."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    try:
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o700)
    except OSError:
        pass
    return path


def folder_lock(folder: str) -> Any:
    """The folder-wide lock that every claim, rename and deletion holds."""
    import filelock

    return filelock.FileLock(os.path.join(folder, LOCK_NAME), timeout=LOCK_TIMEOUT, mode=0o600)


def load_folder_lock() -> None:
    """Import what :func:`folder_lock` needs now, before anything is spilled.

    The first spill often comes at exit, and importing filelock there (it
    brings asyncio and concurrent.futures: tenths of a second in a fresh
    process) would use up the part of ``shutdown_timeout`` kept for writing
    to disk; in an atexit hook on Python 3.12 the import fails outright
    (concurrent.futures can no longer register its own exit hook).
    """
    import filelock  # noqa: F401


# -- owners -------------------------------------------------------------------

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _start_time(pid: int) -> int:
    """The process's start time in clock ticks since boot (Linux), else 0."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # The command name may hold spaces and parentheses; fields follow the last ')'.
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def new_owner() -> str:
    """A fresh owner id for one handler in this process."""
    pid = os.getpid()
    return f"{_HOST}.{pid}.{_start_time(pid)}.{secrets.token_hex(4)}"


def owner_alive(owner: str, live_tokens: set[str], mtime: float) -> bool:
    """Whether the handler ``owner`` may still be using its files.

    ``live_tokens`` are the owners of this process's open handlers: a closed
    handler's files in a live process are free to adopt.
    """
    try:
        host, pid_text, start_text, _token = owner.split(".")
        pid, start = int(pid_text), int(start_text)
    except ValueError:
        return False
    if host != _HOST:
        return time.time() - mtime < FOREIGN_STALE_AFTER
    if pid == os.getpid():
        return owner in live_tokens
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    actual = _start_time(pid)
    return not (start and actual and actual != start)


# -- listing ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SpillFile:
    """One spill file as seen in a listing."""

    path: str
    state: str
    id: str
    owner: str
    size: int
    mtime: float

    def renamed(self, folder: str, state: str, owner: str) -> str:
        """The path this file would have in ``state`` under ``owner``."""
        return os.path.join(folder, f"{state}-{self.id}-{owner}{SUFFIX}")

    @property
    def ack_path(self) -> str:
        return os.path.join(os.path.dirname(self.path), self.id + ACK_SUFFIX)


def new_file_name(folder: str, owner: str) -> tuple[str, str]:
    """A path and id for a new ``o`` file of ``owner``."""
    file_id = f"{time.time_ns():020x}{secrets.token_hex(3)}"
    return os.path.join(folder, f"o-{file_id}-{owner}{SUFFIX}"), file_id


def list_files(folder: str) -> list[SpillFile]:
    """Spill files in ``folder``, oldest first; a missing folder has none."""
    out = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        m = _NAME.match(entry.name)
        if not m:
            continue
        try:
            st = entry.stat()
        except FileNotFoundError:
            continue  # claimed or deleted meanwhile
        out.append(SpillFile(entry.path, m[1], m[2], m[3], st.st_size, st.st_mtime))
    out.sort(key=lambda f: f.id)
    return out


def folder_bytes(folder: str) -> int:
    """Bytes of spill and ack files in ``folder``."""
    total = 0
    try:
        for entry in os.scandir(folder):
            if entry.name.endswith((SUFFIX, ACK_SUFFIX)) and entry.name != DEAD_LETTER_NAME:
                try:
                    total += entry.stat().st_size
                except FileNotFoundError:
                    pass
    except (FileNotFoundError, NotADirectoryError):
        return 0
    return total


def has_spilled(folder: str) -> bool:
    """Whether ``folder`` holds any spill file (cheap: one directory listing)."""
    try:
        return any(_NAME.match(name) for name in os.listdir(folder))
    except OSError:
        return False


def read_acks(path: str) -> set[int]:
    """Frame offsets already delivered, from an ack file (missing: none)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return set()
    usable = len(data) - len(data) % 8
    return {int.from_bytes(data[i : i + 8], "big") for i in range(0, usable, 8)}


def append_ack(path: str, offset: int) -> None:
    """Record that the frame at ``offset`` was delivered."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, offset.to_bytes(8, "big"))
    finally:
        os.close(fd)


def remove_quietly(*paths: str) -> None:
    """Delete files that may already be gone."""
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def key_problem(header: dict[str, Any], sealer: Sealer | None) -> str | None:
    """Why frames under ``header`` cannot be read with ``sealer`` (None when they can)."""
    key_id = header.get("key_id")
    if key_id is None:
        return None
    if sealer is None:
        return f"it is encrypted (key id {key_id}): set spill_key or LOGSHIP_SPILL_KEY"
    if sealer.key_id != key_id:
        return f"it was encrypted with another spill_key (key id {key_id}, ours {sealer.key_id})"
    return None


def spill_frames(
    path: str, acked: set[int], sealer: Sealer | None = None
) -> Iterator[tuple[int, Any]]:
    """Undelivered frames of a spill file as ``(offset, payload)``; damage as ``(offset, None)``.

    A file this version cannot read yields one ``(0, None)``; so does a
    frame that passes its checksum but does not hold a batch, and a sealed
    frame that does not open with the file's own key (tampering). Check
    :func:`key_problem` first: a file under another key yields only damage.
    """
    data = _read(path)
    if data is None:
        return
    if len(data) < len(FILE_HEADER) or data[:4] != MAGIC or data[4] != VERSION:
        yield 0, None
        return
    first = True
    for offset, payload in iter_frames(data):
        if first and payload is not None and payload.get("kind") == "spill":
            first = False
            continue  # the file's header
        first = False
        if offset in acked:
            continue
        if payload is not None:
            try:
                payload = open_payload(payload, sealer)
            except (WrongKey, ValueError, msgpack.UnpackException):
                payload = None
        if payload is not None and not isinstance(payload.get("body"), bytes):
            payload = None
        yield offset, payload


# How much of a file is read to find its header frame.
_HEADER_READ = 64 * 1024


def file_header(path: str) -> dict[str, Any]:
    """The header map of a spill or dead-letter file ({} when unreadable)."""
    try:
        with open(path, "rb") as f:
            data = f.read(_HEADER_READ)  # the header is the first frame: small
    except OSError:
        return {}
    for _offset, payload in iter_frames(data):
        return payload if isinstance(payload, dict) else {}
    return {}


@dataclasses.dataclass
class FolderSummary:
    """What one spill folder holds, for ``logship spill status``."""

    folder: str
    url: str | None = None
    files: int = 0
    events: int = 0
    bytes: int = 0
    corrupt: int = 0
    oldest: float | None = None  # Unix time of the oldest file
    live_owners: set[int] = dataclasses.field(default_factory=set)  # pids still writing
    live_files: int = 0
    locked_files: int = 0  # encrypted under a key we do not have


def summarize(folder: str, live_tokens: set[str], sealer: Sealer | None = None) -> FolderSummary:
    """Count files, events and bytes in a spill folder (reads every file)."""
    out = FolderSummary(folder)
    for f in list_files(folder):
        out.files += 1
        out.bytes += f.size
        out.oldest = f.mtime if out.oldest is None else min(out.oldest, f.mtime)
        header = file_header(f.path)
        out.url = out.url or header.get("url")
        if f.state != "r" and owner_alive(f.owner, live_tokens, f.mtime):
            out.live_files += 1
            out.live_owners.add(int(f.owner.split(".")[1]))
        if key_problem(header, sealer):
            out.locked_files += 1
            continue
        for _offset, payload in spill_frames(f.path, read_acks(f.ack_path), sealer):
            if payload is None:
                out.corrupt += 1
            else:
                out.events += int(payload.get("n", 0))
    if out.url is None:
        out.url = file_header(os.path.join(folder, DEAD_LETTER_NAME)).get("url")
    return out


def find_folders(path: str) -> list[str]:
    """``path`` if it is a spill folder, else the spill folders directly under it."""

    def is_spill_folder(p: str) -> bool:
        return has_spilled(p) or os.path.exists(os.path.join(p, DEAD_LETTER_NAME))

    if is_spill_folder(path):
        return [path]
    try:
        subs = sorted(os.path.join(path, d) for d in os.listdir(path))
    except OSError:
        return []
    return [p for p in subs if os.path.isdir(p) and is_spill_folder(p)]


def purge(folder: str, live_tokens: set[str], dead_letters: bool) -> tuple[int, int]:
    """Delete spill files no live handler is writing; returns (files deleted, files kept)."""
    deleted = kept = 0
    with folder_lock(folder):
        for f in list_files(folder):
            if f.state != "r" and owner_alive(f.owner, live_tokens, f.mtime):
                kept += 1
                continue
            remove_quietly(f.path, f.ack_path)
            deleted += 1
        if dead_letters and os.path.exists(os.path.join(folder, DEAD_LETTER_NAME)):
            remove_quietly(os.path.join(folder, DEAD_LETTER_NAME))
            deleted += 1
    return deleted, kept


# -- dead letters -------------------------------------------------------------


def write_dead_letter(
    folder: str,
    url: str,
    key: str,
    events: list[dict[str, Any]],
    status: int,
    reason: str,
    sealer: Sealer | None = None,
) -> str:
    """Record a batch the server rejected for good; return the file's path.

    Appends happen under the folder lock, so processes sharing the folder
    never interleave their frames.
    """
    ensure_dir(folder)
    path = os.path.join(folder, DEAD_LETTER_NAME)
    payload = {"key": key, "events": events, "status": status, "reason": reason}
    payload.update(time=time.time(), url=url)
    with folder_lock(folder):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            data = encode_frame(payload, sealer)
            if os.fstat(fd).st_size == 0:
                header = {"kind": "dead-letter", "url": url, "created": time.time()}
                if sealer is not None:
                    header["key_id"] = sealer.key_id
                data = FILE_HEADER + encode_frame(header) + data
            os.write(fd, data)
        finally:
            os.close(fd)
    return path


@dataclasses.dataclass
class DeadLetter:
    """One batch the server rejected for good, as ``write_dead_letter`` recorded it."""

    time: float | None  # Unix time of the rejection
    url: str | None
    status: int | None
    reason: str  # the server's answer body, or the error
    events: list[dict[str, Any]] | None  # None: encrypted under a key not given


@dataclasses.dataclass
class DeadLetters:
    """A folder's dead-letter file, read: its batches, oldest first."""

    url: str | None = None
    batches: list[DeadLetter] = dataclasses.field(default_factory=list)
    corrupt: int = 0  # damaged regions, skipped
    locked: int = 0  # batches that cannot be opened with the key given
    locked_why: str = ""  # why, with what to do

    @property
    def events(self) -> int:
        """Events in the batches that could be read."""
        return sum(len(b.events or ()) for b in self.batches)


def read_dead_letters(folder: str, sealer: Sealer | None = None) -> DeadLetters:
    """Read ``folder``'s dead-letter file; an absent one reads as empty."""
    out = DeadLetters()
    data = _read(os.path.join(folder, DEAD_LETTER_NAME))
    if not data:
        return out
    result = read_frames(data)
    out.corrupt = result.corrupt
    frames = result.frames
    header: dict[str, Any] = {}
    if frames and frames[0].get("kind") == "dead-letter":
        header, frames = frames[0], frames[1:]
    # (A damaged header frame was counted as corrupt; every frame left is a batch.)
    url = header.get("url")
    out.url = url if isinstance(url, str) else None
    out.locked_why = key_problem(header, sealer) or (
        "it is encrypted under a key not given: set LOGSHIP_SPILL_KEY"
        if sealer is None
        else "it was encrypted with another spill_key"
    )
    for frame in frames:
        try:
            payload = open_payload(frame, sealer)
        except WrongKey:
            out.batches.append(DeadLetter(None, out.url, None, "", None))
            out.locked += 1
            continue
        except (ValueError, msgpack.UnpackException):
            out.corrupt += 1  # opened, but not a batch
            continue
        out.batches.append(_dead_letter(payload, out.url))
    return out


def _dead_letter(payload: dict[str, Any], url: str | None) -> DeadLetter:
    """A ``DeadLetter`` from a frame's map, tolerating mistyped fields."""
    when, status, reason = payload.get("time"), payload.get("status"), payload.get("reason")
    events, own_url = payload.get("events"), payload.get("url")
    if not (isinstance(when, (int, float)) and math.isfinite(when)):
        when = None
    return DeadLetter(
        time=None if when is None else float(when),
        url=own_url if isinstance(own_url, str) else url,
        status=status if isinstance(status, int) and not isinstance(status, bool) else None,
        reason=reason if isinstance(reason, str) else "",
        events=[e for e in events if isinstance(e, dict)] if isinstance(events, list) else [],
    )
