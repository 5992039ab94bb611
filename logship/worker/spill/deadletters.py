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

import os
import re
import secrets
import time
from typing import Any

from logship.pure.frames import FILE_HEADER, encode_frame, iter_frames
from logship.pure.redact_url import redact_url
from logship.pure.sealing import Sealer
from logship.worker.spill.safefiles import ensure_dir, folder_lock, open_file

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
    endpoint: str | None = None,
) -> str:
    """Record a batch the server rejected for good; return where (and what was deleted).

    ``url`` is the handler's, the folder's endpoint, which a new file's header
    records; ``endpoint``, the one of several that rejected it (default:
    ``url``), is recorded with the batch.

    Appends happen under the folder lock, so processes sharing the folder
    never interleave their frames. Raises ``ValueError`` for a batch larger
    than the whole dead-letter cap, ``OSError`` when the folder cannot take
    it (an :class:`~logship.worker.spill.safefiles.UnsafeFile` for a planted file).
    """
    cap = dead_letter_cap(spill_max_bytes)
    payload = {"key": key, "events": events, "status": status, "reason": reason}
    payload.update(time=time.time(), url=redact_url(endpoint or url))
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
        return file_id_of(payload) if payload and payload.get("kind") == "dead-letter" else None
    return None


def file_id_of(header: dict[str, Any]) -> str | None:
    """The random id a dead-letter file's header records (None when it records none)."""
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
