"""The spill folder's layout: file names, owners, liveness, listing, reading spill files.

This module, ``spillstore``, ``deadletters`` and ``safefiles`` (the folder's
trust checks and the one way its files are opened) are the only ones that
touch spill files and ``filelock``. Nothing here runs at import time;
``platformdirs`` is asked lazily.

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

Files are read with a bound on their size (a spill file larger than logship
writes is not read at all), and every frame read back is checked field by
field before it becomes a batch again (docs/security.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import secrets
import socket
import stat
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any

import msgpack

from logship.pure.frames import (
    FILE_HEADER,
    MAGIC,
    MAX_FRAME,
    SEALED,
    VERSION,
    SpilledBatch,
    clear_count,
    iter_frames,
    open_payload,
    read_batch,
)
from logship.pure.redact_url import normalize_url, redact_url
from logship.pure.sealing import Sealer, WrongKey
from logship.worker.spill.deadletters import is_dead_letter
from logship.worker.spill.safefiles import (
    open_file,
    read_file,
)

SUFFIX = ".lship"
#: The region's segments (``durability="crash"``, see ``spill.region``): named and
#: claimed like spill files, with their own ending.
REGION_SUFFIX = ".lregion"
ACK_SUFFIX = ".ack"
#: A file of another host's owner is treated as abandoned after this long untouched.
FOREIGN_STALE_AFTER = 3600.0
#: No spill file written by logship is larger than a segment (at most 4 MiB)
#: and one frame: a larger one is not logship's, and is not read at all (it
#: counts as one damaged stretch).
MAX_SPILL_FILE = MAX_FRAME + 8 * 1024 * 1024
#: An ack file holds 8 bytes per delivered frame; what lies beyond this is
#: not read (those frames may be sent again: at least once).
MAX_ACK_FILE = 8 * 1024 * 1024

_OWNED = r"^([ocr])-([0-9a-f]+)-([0-9a-f]+\.\d+\.\d+\.[0-9a-f]+)"
_NAMES = {
    suffix: re.compile(_OWNED + re.escape(suffix) + "$") for suffix in (SUFFIX, REGION_SUFFIX)
}
_NAME = _NAMES[SUFFIX]


def endpoint_slug(url: str) -> str:
    """A folder name for an endpoint: readable, and unique through a short hash.

    One name per endpoint however its URL is spelled (scheme and host case,
    the default port), and never a secret: both parts come from the URL
    as :func:`~logship.pure.redact_url.redact_url` shows it, so URLs that
    differ only in a password or a secret parameter share a folder.
    """
    shown = redact_url(normalize_url(url))
    parts = urllib.parse.urlsplit(shown)
    try:
        port = parts.port
    except ValueError:
        port = None
    readable = f"{parts.hostname or 'host'}_{port or ''}{parts.path}"
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", readable).strip("_")[:60]
    digest = hashlib.sha256(shown.encode("utf-8")).hexdigest()[:10]
    return f"{readable}-{digest}"


def cache_root() -> str:
    """``platformdirs.user_cache_dir("logship")``, asked only when needed."""
    import platformdirs

    return str(platformdirs.user_cache_dir("logship"))


def default_spill_dir(url: str | Sequence[str]) -> str:
    """The default folder under the user's cache directory: one per endpoint, or set of them.

    Several endpoints (a fleet) share one folder, named after the first with
    a hash of them all, so that the handler's spill is one whatever endpoint
    replays it.
    """
    urls = [url] if isinstance(url, str) else list(url)
    slug = endpoint_slug(urls[0])
    if len(urls) > 1:
        shown = ",".join(sorted(redact_url(normalize_url(u)) for u in urls))
        slug += "-" + hashlib.sha256(shown.encode("utf-8")).hexdigest()[:10]
    return os.path.join(cache_root(), slug)


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
        suffix = REGION_SUFFIX if self.path.endswith(REGION_SUFFIX) else SUFFIX
        return os.path.join(folder, f"{state}-{self.id}-{owner}{suffix}")

    @property
    def ack_path(self) -> str:
        return os.path.join(os.path.dirname(self.path), self.id + ACK_SUFFIX)


def new_file_name(folder: str, owner: str, suffix: str = SUFFIX) -> tuple[str, str]:
    """A path and id for a new ``o`` file of ``owner`` (a region segment with ``REGION_SUFFIX``)."""
    file_id = f"{time.time_ns():020x}{secrets.token_hex(3)}"
    return os.path.join(folder, f"o-{file_id}-{owner}{suffix}"), file_id


#: Listings made again when a file changed its name while one was made.
_LIST_TRIES = 3


def list_files(folder: str, suffix: str = SUFFIX) -> list[SpillFile]:
    """Spill files (or region segments, with ``REGION_SUFFIX``) in ``folder``, oldest first.

    A missing folder has none. Only regular files: a link, a FIFO or a
    device named like a spill file is never listed, so never read, claimed
    or counted.
    """
    pattern = _NAMES[suffix]
    for _ in range(_LIST_TRIES):
        out, renamed = [], False
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return []
        for entry in entries:
            m = pattern.match(entry.name)
            if not m:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                # Claimed (renamed: listed again under its new name) or deleted
                # meanwhile: a listing that missed a claimed file would read as
                # a folder with nothing left in it.
                renamed = True
                continue
            if stat.S_ISREG(st.st_mode):
                out.append(SpillFile(entry.path, m[1], m[2], m[3], st.st_size, st.st_mtime))
        if not renamed:
            break
    out.sort(key=lambda f: f.id)
    return out


def folder_bytes(folder: str) -> int:
    """Bytes of the spill and ack files in ``folder`` (dead letters have their own cap)."""
    total = 0
    try:
        for entry in os.scandir(folder):
            if entry.name.endswith((SUFFIX, ACK_SUFFIX)) and not is_dead_letter(entry.name):
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
    except (FileNotFoundError, NotADirectoryError):
        return 0
    return total


def has_spilled(folder: str) -> bool:
    """Whether ``folder`` holds any spill file (cheap: one directory listing)."""
    try:
        return any(_NAME.match(name) for name in os.listdir(folder))
    except OSError:
        return False


def has_regions(folder: str) -> bool:
    """Whether ``folder`` holds any region segment (cheap: one directory listing)."""
    try:
        return any(_NAMES[REGION_SUFFIX].match(name) for name in os.listdir(folder))
    except OSError:
        return False


def read_acks(path: str) -> set[int]:
    """Frame offsets already delivered, from an ack file (missing or unsafe: none)."""
    data = read_file(path, MAX_ACK_FILE) or b""
    usable = len(data) - len(data) % 8
    return {int.from_bytes(data[i : i + 8], "big") for i in range(0, usable, 8)}


def append_ack(path: str, offset: int) -> None:
    """Record that the frame at ``offset`` was delivered."""
    fd = open_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
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


def _file_id(path: str) -> str:
    """The ``ID`` of a spill file's name: what its sealed frames are bound to."""
    m = _NAME.match(os.path.basename(path))
    return m[2] if m else ""


def spill_frames(
    path: str, acked: set[int], sealer: Sealer | None = None
) -> Iterator[tuple[int, SpilledBatch | None]]:
    """Undelivered batches of a spill file as ``(offset, batch)``; damage as ``(offset, None)``.

    A file this version cannot read yields one ``(0, None)``; so does a
    frame that passes its checksum but does not hold a batch whose every
    field checks (see :func:`~logship.pure.frames.read_batch`), and a sealed
    frame that does not open with the file's own key and id (tampering, or
    a frame moved from another file). So does a file larger than logship
    writes (:data:`MAX_SPILL_FILE`), unread. Check :func:`key_problem` first:
    a file under another key yields only damage.
    """
    data = read_file(path, MAX_SPILL_FILE, whole=True)
    if data is None:
        return
    if len(data) < len(FILE_HEADER) or data[:4] != MAGIC or data[4] != VERSION:
        yield 0, None
        return
    file_id = _file_id(path)
    first = True
    for offset, payload in iter_frames(data):
        if first and payload is not None and payload.get("kind") == "spill":
            first = False
            continue  # the file's header
        first = False
        if offset in acked:
            continue
        batch = None
        if payload is not None:
            try:
                batch = read_batch(open_payload(payload, sealer, file_id))
            except (WrongKey, ValueError, msgpack.UnpackException):
                batch = None
        yield offset, batch


@dataclasses.dataclass
class FrameCounts:
    """What the undelivered frames of a spill file hold, as far as can be told."""

    events: int = 0  # in batches that open, or that show their count in the clear
    unknown: int = 0  # sealed batches under another key that show no count
    corrupt: int = 0  # damaged frames


def count_frames(path: str, acked: set[int], sealer: Sealer | None = None) -> FrameCounts:
    """Count the undelivered events of a spill file, including those under another key.

    For deleting a file for the size cap: a frame sealed under a key this
    process does not hold is counted by the count it shows in the clear. A
    file larger than logship writes is one damaged frame, unread.
    """
    out = FrameCounts()
    data = read_file(path, MAX_SPILL_FILE, whole=True)
    if data is None:
        return out
    if len(data) < len(FILE_HEADER) or data[:4] != MAGIC or data[4] != VERSION:
        out.corrupt += 1
        return out
    file_id = _file_id(path)
    for offset, payload in iter_frames(data):
        if payload is None:
            out.corrupt += 1
        elif offset in acked or payload.get("kind") == "spill":
            continue
        elif SEALED in payload and (sealer is None or not _opens(payload, sealer, file_id)):
            n = clear_count(payload)
            out.events += n or 0
            out.unknown += n is None
        else:
            batch = read_batch(_opened(payload, sealer, file_id))
            out.events += batch.n if batch else 0
            out.corrupt += batch is None
    return out


def _opened(payload: dict[str, Any], sealer: Sealer | None, file_id: str) -> dict[str, Any] | None:
    try:
        return open_payload(payload, sealer, file_id)
    except (WrongKey, ValueError, msgpack.UnpackException):
        return None


def _opens(payload: dict[str, Any], sealer: Sealer, file_id: str) -> bool:
    return _opened(payload, sealer, file_id) is not None


# How much of a file is read to find its header frame.
_HEADER_READ = 64 * 1024


def file_header(path: str) -> dict[str, Any]:
    """The header map of a spill or dead-letter file ({} when unreadable)."""
    data = read_file(path, _HEADER_READ)  # the header is the first frame: small
    for _offset, payload in iter_frames(data or b""):
        return payload if isinstance(payload, dict) else {}
    return {}
