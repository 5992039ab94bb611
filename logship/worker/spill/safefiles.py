"""The spill folder's trust checks: the folder must be the user's own, and every file
in it is opened so that nothing planted there can redirect, block or flood a reader.

- :func:`folder_problem` and :func:`ensure_dir`: the folder is a real directory
  (not a symbolic link) owned by the effective user; one the user owns is made
  private (0700). Anything else is refused, and logship runs without a spill.
- :func:`open_file`: ``O_NOFOLLOW`` (a link is refused, never followed),
  ``O_NONBLOCK`` (a FIFO cannot block the opener), and a regular file or
  nothing (checked with ``fstat`` on what was opened); a file written to must
  have no other hard link.
- :func:`read_file`: at most a given number of bytes, never more than the file
  held when it was opened; or, for a file that must be read whole, nothing
  when it is larger.
- :func:`folder_lock`: the folder's ``filelock``, refused when its lock file is
  not a regular file.

See docs/security.md for what this protects against and what it does not.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Any

LOCK_NAME = "spill.lock"
LOCK_TIMEOUT = 2.0

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_WRITING = os.O_WRONLY | os.O_RDWR


class UnsafeFile(OSError):
    """A spill-folder file that is not a plain file of its own: a link, a FIFO, a device."""

    def __init__(self, message: str, code: int = errno.EINVAL) -> None:
        super().__init__(code, message)

    def __str__(self) -> str:
        return str(self.strerror)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.strerror!r})"


class UnsafeFolder(UnsafeFile):
    """The spill folder is not the user's own: logship will not use it."""


def folder_problem(path: str, tighten: bool = True) -> str | None:
    """Why ``path`` may not be a spill folder; None when it may, or does not exist yet.

    With ``tighten``, a folder of the effective user that other users may
    read or write is made 0700 first (through the descriptor, so a link
    swapped in meanwhile is never changed); it is refused only when that
    fails while others may write to it. Without, nothing is changed and the
    mode is not judged (for reports).
    """
    # O_NOFOLLOW judges the last component only, and "link/" has an empty one
    # after the link: the kernel would follow it.
    path = path.rstrip(os.sep) or os.sep
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            if os.path.islink(path):
                return f"the spill folder {path} is a symbolic link"
            return f"the spill folder {path} is not a directory"
        return f"the spill folder {path} cannot be opened ({e.strerror})"
    try:
        st = os.fstat(fd)
        uid = os.geteuid()
        if st.st_uid != uid:
            return (
                f"the spill folder {path} is owned by uid {st.st_uid}, not by this user (uid {uid})"
            )
        if tighten and st.st_mode & 0o077:
            try:
                os.fchmod(fd, 0o700)
            except OSError as e:
                if st.st_mode & 0o022:
                    return (
                        f"the spill folder {path} is writable by other users and cannot be "
                        f"made private ({e.strerror})"
                    )
        return None
    finally:
        os.close(fd)


def ensure_dir(path: str) -> str:
    """Make ``path`` (and parents) with mode 0700 if missing, check it, return it.

    Raises :class:`UnsafeFolder` when it is not the user's own (see
    :func:`folder_problem`), and ``OSError`` when it cannot be made.
    """
    problem = folder_problem(path)
    if problem is None and not os.path.lexists(path):
        os.makedirs(path, mode=0o700, exist_ok=True)
        problem = folder_problem(path)  # what is there now, whoever made it
    if problem is not None:
        raise UnsafeFolder(problem)
    return path


def open_file(path: str, flags: int, mode: int = 0o600) -> int:
    """A descriptor of the regular file ``path`` of a spill folder; ``OSError`` otherwise.

    Never follows a link (:class:`UnsafeFile`), never blocks on a FIFO, and
    refuses anything but a regular file, and a file to be written that has
    another hard link.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafeFile(f"{path} is a symbolic link, not a regular file") from None
        if e.errno == errno.ENXIO:  # a FIFO with no reader, opened to write
            raise UnsafeFile(f"{path} is not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(f"{path} is not a regular file")
        if flags & _WRITING and st.st_nlink > 1:
            raise UnsafeFile(f"{path} has another hard link")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_file(path: str, limit: int, whole: bool = False) -> bytes | None:
    """Up to ``limit`` bytes of a spill-folder file; None when it is missing or unsafe.

    Never more than the file held when it was opened: a file that grows
    meanwhile cannot keep the reader reading. With ``whole``, a file larger
    than ``limit`` is not read at all: ``b""`` comes back.
    """
    try:
        fd = open_file(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        if whole and size > limit:
            return b""
        left = min(size, limit)
        chunks = []
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def folder_lock(folder: str) -> Any:
    """The folder-wide lock that every claim, rename and deletion holds.

    Its lock file must be a regular file when it exists: one planted as a
    link would otherwise have a lock library open (or truncate) its target.
    """
    import filelock

    path = os.path.join(folder, LOCK_NAME)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(f"{path} is not a regular file")
    return filelock.FileLock(path, timeout=LOCK_TIMEOUT, mode=0o600)
