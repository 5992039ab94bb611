"""The spill folder: the only module that touches spill files and ``filelock``.

Runs on the worker. The folder is made on first use (mode 0700, files 0600);
``platformdirs`` is asked for the default only then.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import urllib.parse
from typing import Any

from logship.pure.frames import FILE_HEADER, encode_frame

DEAD_LETTER_NAME = "dead-letter.lship"
_LOCK_TIMEOUT = 2.0


def endpoint_slug(url: str) -> str:
    """A folder name for an endpoint: readable, and unique through a short hash."""
    parts = urllib.parse.urlsplit(url)
    readable = f"{parts.hostname or 'host'}_{parts.port or ''}{parts.path}"
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", readable).strip("_")[:60]
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:10]
    return f"{readable}-{digest}"


def default_spill_dir(url: str) -> str:
    """The per-endpoint default folder under the user's cache directory."""
    import platformdirs  # asked lazily: nothing touches the disk at import time

    return os.path.join(platformdirs.user_cache_dir("logship"), endpoint_slug(url))


def ensure_dir(path: str) -> str:
    """Create ``path`` (and parents) with mode 0700 if missing; return it."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    try:
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o700)
    except OSError:
        pass
    return path


def append_frames(path: str, payloads: list[dict[str, Any]], header: dict[str, Any]) -> int:
    """Append frames to ``path`` under its file lock, creating it (0600) with a header.

    Returns the bytes written. Raises ``OSError`` (disk full, read-only,
    folder gone) and ``filelock.Timeout``; the caller counts and reports.
    """
    import filelock

    with filelock.FileLock(path + ".lock", timeout=_LOCK_TIMEOUT, mode=0o600):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            data = b"".join(encode_frame(p) for p in payloads)
            if os.fstat(fd).st_size == 0:
                data = FILE_HEADER + encode_frame(header) + data
            os.write(fd, data)
            os.fsync(fd)
            return len(data)
        finally:
            os.close(fd)


def write_dead_letter(
    folder: str, url: str, key: str, events: list[dict[str, Any]], status: int, reason: str
) -> str:
    """Record a batch the server rejected for good; return the file's path."""
    ensure_dir(folder)
    path = os.path.join(folder, DEAD_LETTER_NAME)
    header = {"kind": "dead-letter", "url": url, "created": time.time(), "pid": os.getpid()}
    payload = {
        "key": key,
        "events": events,
        "status": status,
        "reason": reason,
        "time": time.time(),
        "url": url,
    }
    append_frames(path, [payload], header)
    return path
