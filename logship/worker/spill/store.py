"""One handler's spill: append its overflow, claim and replay what is spilled.

Used only from the pump thread (and, when no worker thread could start, from
the thread that closes the handler), so it needs no lock of its own; the
folder-wide ``filelock`` guards what other processes can see.

A frame holds one sealed batch exactly as it would be sent: its
Idempotency-Key, its event count, its encoding, and its body (compressed
when ``compress`` is on). Spilling costs no re-encoding and a replay sends
the same bytes under the same key. A frame delivered from a claimed file is
recorded in the file's ``ID.ack`` side file, so a file taken over half-sent
resumes where it stopped; the file goes once every frame is acknowledged.

A folder that is not the user's own (see ``safefiles``) is never used: the
store turns itself off, says so once, and every batch that would have gone
there is dropped and counted.

The segments of a region (``durability="crash"``) that a dead process left
are claimed here too, by the same rules (:meth:`SpillStore.claim_region`);
``worker.adoption`` writes their events to this store.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field

from logship.pure.batching import Batch, Origin
from logship.pure.frames import FILE_HEADER, SpilledBatch, encode_frame, key_problem
from logship.pure.redact_url import redact_url
from logship.pure.sealing import Sealer
from logship.worker.diagnostics import Warner
from logship.worker.spill import folder as sf
from logship.worker.spill import safefiles as safe

MiB = 1024 * 1024
#: Owners of this process's open handlers (see ``spillfolder.owner_alive``).
LIVE_OWNERS: set[str] = set()
# How often to look again for files to adopt once a look found none.
_RESCAN_INTERVAL = 2.0


@dataclass
class _Active:
    path: str
    id: str
    fd: int
    size: int
    frames: list[tuple[int, int]] = field(default_factory=list)  # (batch id, events)


@dataclass
class _Claim:
    path: str
    id: str
    own: bool  # written by this handler: its batches are still outstanding here
    own_frames: list[tuple[int, int]]  # (batch id, events) it was written with, when own
    frames: deque[tuple[int, SpilledBatch | None]]  # the file is read whole when claimed
    acked: set[int]
    in_flight: set[int] = field(default_factory=set)
    exhausted: bool = False


def _write_all(fd: int, data: bytes, size_before: int) -> None:
    """Write ``data`` whole, or trim the file back to ``size_before`` and raise ``OSError``.

    On a nearly full disk ``os.write`` may write only part of a frame; a torn
    frame would count as spilled and then be skipped as corrupt.
    """
    try:
        written = os.write(fd, data)
    except OSError:
        _trim(fd, size_before)
        raise
    if written != len(data):
        _trim(fd, size_before)
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (a short write to the spill)")


def _trim(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
    except OSError:
        pass


@dataclass
class SpillNews:
    """What the store did or found that the accounting must hear of (see ``SpillStore.news``)."""

    #: This handler's spilled batches ``(batch id, events)`` that are gone: deleted for the
    #: cap, deleted by something else, or damaged on disk. Dropped.
    lost_own: list[tuple[int, int]] = field(default_factory=list)
    #: Another owner's events deleted for the cap: adopted, then dropped.
    foreign_dropped: int = 0
    #: Damaged frames skipped.
    corrupt: int = 0
    #: Why the folder is not used, once it is refused.
    refused: str | None = None

    def __bool__(self) -> bool:
        return bool(self.lost_own or self.foreign_dropped or self.corrupt or self.refused)


class SpillStore:
    """Spill files of one handler in one folder.

    It counts nothing itself: what the accounting must know (batches lost,
    damage, a refused folder) collects in :attr:`news`, which the pump takes
    after each call (:meth:`take_news`) and applies to the ledger.
    """

    def __init__(
        self,
        folder: str,
        url: str,
        max_bytes: int,
        warner: Warner,
        sealer: Sealer | None = None,
        protocol: str = "http",
    ) -> None:
        self.folder = folder
        self.warner = warner
        self.sealer = sealer
        self._locked: set[str] = set()  # ids of files under a key we do not have
        self.url = redact_url(url)  # recorded in file headers: never a secret
        self.max_bytes = max_bytes
        self.segment_max = max(16 * 1024, min(4 * MiB, max_bytes // 8))
        self.news = SpillNews()
        #: Recorded in file headers: ``logship spill replay`` speaks it to the endpoint.
        self.protocol = protocol
        self.owner = sf.new_owner()
        LIVE_OWNERS.add(self.owner)
        self._active: _Active | None = None
        self._own_frames: dict[str, list[tuple[int, int]]] = {}  # sealed own file id -> frames
        self._claims: dict[str, _Claim] = {}
        self._current: _Claim | None = None
        self._next_scan = 0.0  # monotonic time of the next look for files to claim
        self._next_region_scan = 0.0  # the same, for the regions of processes that died
        #: Why the folder is not used (see ``safefiles``); None while it is.
        self.refused: str | None = None
        problem = safe.folder_problem(folder)  # an existing folder is judged at once
        if problem is not None:
            self._refuse(problem)

    def _refuse(self, why: str) -> None:
        """Stop using the folder for good: nothing more is read or written there."""
        self.refused = self.news.refused = why
        self.warner.warn(
            "spill-refused",
            "logship: %s; logship runs without a spill and never writes there: events that "
            "do not fit in memory are dropped (counted). Use a folder of this user "
            "(spill_dir), or fix its owner (see docs/security.md).",
            why,
            interval=float("inf"),
        )

    def take_news(self) -> SpillNews:
        """What happened since the last call, for the accounting."""
        news, self.news = self.news, SpillNews()
        return news

    def _folder(self) -> str:
        """The folder, made or checked now; ``UnsafeFolder`` (after refusing it) when not ours."""
        try:
            return safe.ensure_dir(self.folder)
        except safe.UnsafeFolder as e:
            self._refuse(str(e))
            raise

    # -- writing ---------------------------------------------------------------

    def write(self, batch: Batch) -> bool:
        """Append ``batch``; False (nothing written) when the cap leaves no room.

        The cap check and the append happen under the folder lock, so
        processes sharing the folder cannot both take the last free bytes.
        Raises ``OSError`` for a disk that is full, read-only or gone; then
        nothing of the batch stays on disk. False too once the folder is
        refused.
        """
        if self.refused is not None:
            return False
        self._check_vanished()
        planned = self._active
        path, file_id = (
            (planned.path, planned.id) if planned else sf.new_file_name(self.folder, self.owner)
        )
        frame = self._frame(batch, file_id)
        header = b"" if planned else self._header()
        if len(frame) + len(header) > self.max_bytes:
            return False
        try:
            folder = self._folder()
        except safe.UnsafeFolder:
            return False
        with safe.folder_lock(folder):
            if not self._make_room(len(frame) + len(header)):
                return False
            if planned is not None and self._active is None:
                # Making room gave up the file we meant to append to: start a
                # new one, with its own header (and room for it).
                path, file_id = sf.new_file_name(self.folder, self.owner)
                frame, header = self._frame(batch, file_id), self._header()
                if not self._make_room(len(frame) + len(header)):
                    return False
            active = self._active or self._open(path, file_id, header)
            _write_all(active.fd, frame, active.size)
        active.size += len(frame)
        active.frames.append((batch.id, batch.count))
        if active.size >= self.segment_max:
            self.seal()
        self._next_scan = 0.0
        return True

    def _frame(self, batch: Batch, file_id: str) -> bytes:
        """``batch`` as a frame of the file ``file_id`` (sealed ones are bound to it)."""
        return encode_frame(
            {
                "key": batch.key,
                "bid": batch.id,
                "n": batch.count,
                "enc": batch.encoding,
                "gz": batch.gzipped,
                "body": batch.body,
            },
            self.sealer,
            file_id,
            count=batch.count,
        )

    def _header(self) -> bytes:
        header = {
            "kind": "spill",
            "url": self.url,
            "protocol": self.protocol,
            "owner": self.owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "created": time.time(),
        }
        if self.sealer is not None:
            header["key_id"] = self.sealer.key_id
        return FILE_HEADER + encode_frame(header)

    def _open(self, path: str, file_id: str, header: bytes) -> _Active:
        fd = safe.open_file(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND)
        try:
            _write_all(fd, header, 0)
        except OSError:
            os.close(fd)
            sf.remove_quietly(path)
            raise
        self._active = _Active(path, file_id, fd, len(header))
        return self._active

    def _check_vanished(self) -> None:
        """Notice files deleted under us (a folder removed by hand, a cleaner)."""
        gone: list[tuple[int, int]] = []
        if self._active is not None:
            try:
                unlinked = os.fstat(self._active.fd).st_nlink == 0
            except OSError:
                unlinked = True
            if unlinked:
                active, self._active = self._active, None
                gone += active.frames
                try:
                    os.close(active.fd)
                except OSError:
                    pass
        if self._own_frames:
            present = {f.id for f in sf.list_files(self.folder)}
            for file_id in [i for i in self._own_frames if i not in present]:
                gone += self._own_frames.pop(file_id)
        if gone:
            self.news.lost_own += gone
            self.warner.warn(
                "spill-disk",
                "logship: spill files in %s were deleted by something else; %d spilled "
                "events are lost (counted in dropped). The folder is made again.",
                self.folder,
                sum(n for _bid, n in gone),
            )

    def seal(self) -> None:
        """Close the file being written; it stays this handler's, ready for replay."""
        active, self._active = self._active, None
        if active is None:
            return
        try:
            os.fsync(active.fd)  # a sealed file should survive a power cut too
        except OSError:
            pass
        os.close(active.fd)
        self._own_frames[active.id] = active.frames

    def _make_room(self, need: int) -> bool:
        """Delete the oldest deletable files until ``need`` more bytes fit the cap.

        Call with the folder lock held.
        """
        used = sf.folder_bytes(self.folder)
        if used + need <= self.max_bytes:
            return True
        for f in sf.list_files(self.folder):
            if used + need <= self.max_bytes:
                break
            if self._active and f.id == self._active.id:
                continue
            # Files under a key this process does not hold are deleted too: it
            # can never deliver them, and they must not hold the cap for ever.
            if f.id in self._claims or not self._may_take(f):
                continue
            self._drop_file(f)
            used -= f.size
        if used + need > self.max_bytes and self._active and self._active.frames:
            # Only our own open file is left to give up: its events are older than the new ones.
            active = self._active
            self.seal()
            for f in sf.list_files(self.folder):
                if f.id == active.id:
                    self._drop_file(f)
                    used -= f.size
        return used + need <= self.max_bytes

    def _drop_file(self, f: sf.SpillFile) -> None:
        """Delete a spill file for the cap, counting its undelivered events as dropped.

        Damaged frames are counted in ``corrupt`` and skipped; a file under a
        key this process does not hold is counted by the event counts its
        frames show in the clear, and said, naming the key.
        """
        own = self._own_frames.pop(f.id, None)
        if own is not None:
            self.news.lost_own += own
        else:
            self._say_if_oversized(f)
            counts = sf.count_frames(f.path, sf.read_acks(f.ack_path), self.sealer)
            self.news.foreign_dropped += counts.events
            self.news.corrupt += counts.corrupt
            problem = key_problem(sf.file_header(f.path), self.sealer)
            if problem is not None:
                unknown = f" and {counts.unknown} batches of unknown size" if counts.unknown else ""
                self.warner.warn(
                    f"spill-key-drop-{f.id}",
                    "logship: deleted %s for spill_max_bytes: %s, so this process can never "
                    "deliver its %d events%s (dropped, counted).",
                    f.path,
                    problem,
                    counts.events,
                    unknown,
                )
        sf.remove_quietly(f.path, f.ack_path)

    def _say_if_oversized(self, f: sf.SpillFile) -> None:
        """Say (once) that a file larger than logship ever writes is skipped unread.

        It is not logship's, and reading and searching it would take time in
        proportion to its size: ``sf.spill_frames`` makes it one damaged frame.
        """
        if f.size > sf.MAX_SPILL_FILE:
            self.warner.warn(
                "spill-oversized",
                "logship: %s holds %d bytes, more than logship ever writes to a spill file "
                "(%d): it is not read, and is counted as one damaged frame (corrupt) and "
                "deleted.",
                f.path,
                f.size,
                sf.MAX_SPILL_FILE,
                interval=float("inf"),
            )

    # -- claiming and replay ---------------------------------------------------

    def _readable(self, f: sf.SpillFile) -> bool:
        """False for a file encrypted under a key we do not have: it is left alone, said once."""
        if f.id in self._locked:
            return False
        problem = key_problem(sf.file_header(f.path), self.sealer)
        if problem is None:
            return True
        self._locked.add(f.id)
        self.warner.warn(
            f"spill-key-{f.id}",
            "logship: cannot replay %s: %s. It is left in place, not counted as corrupt.",
            f.path,
            problem,
        )
        return False

    def _may_take(self, f: sf.SpillFile) -> bool:
        if f.owner == self.owner:
            return f.state == "o" and not (self._active and f.id == self._active.id)
        if f.state == "r":
            return True
        return not sf.owner_alive(f.owner, LIVE_OWNERS, f.mtime)

    def backlog(self) -> bool:
        """Whether a replay might find something (cheap; rescans now and then)."""
        if self.refused is not None:
            return False
        if self._current is not None or self._own_frames:
            return True
        return time.monotonic() >= self._next_scan

    def next_batch(self, endpoint_up: bool) -> Batch | None:
        """The next spilled batch to send, claiming a file when needed; None when none.

        ``endpoint_up``: the last request succeeded, so this handler's own file
        being written is sealed and replayed next. A batch of this handler
        carries the id it had (``Batch.spilled_id``): the caller knows
        whether it is still outstanding, or to be adopted.
        """
        while True:
            claim = self._current or self._claim_next(endpoint_up)
            if claim is None:
                return None
            batch = None
            while claim.frames and batch is None:
                offset, spilled = claim.frames.popleft()
                if spilled is None:
                    self.news.corrupt += 1
                    continue
                batch = self._batch_of(claim, offset, spilled)
                claim.in_flight.add(offset)
            if not claim.frames:
                # Known now, not on the next call: the last ack deletes the file.
                claim.exhausted = True
                self._current = None
                self._finish_if_done(claim)
            if batch is not None:
                return batch

    def _claim_next(self, endpoint_up: bool) -> _Claim | None:
        if self.refused is not None:
            return None
        self._check_vanished()  # our sealed files may be gone before we replay them
        if time.monotonic() < self._next_scan and not self._own_frames:
            return None
        if self._active and not self._own_frames and endpoint_up:
            self.seal()  # the endpoint is back: our open file is next in line
        chosen: sf.SpillFile | None = None
        if not sf.has_spilled(self.folder):  # one listing, no lock, no folder created
            self._next_scan = time.monotonic() + _RESCAN_INTERVAL
            return None
        try:
            with safe.folder_lock(self._folder()):
                for f in sf.list_files(self.folder):
                    if f.id not in self._claims and self._may_take(f) and self._readable(f):
                        chosen = f
                        break
                if chosen is None:
                    self._next_scan = time.monotonic() + _RESCAN_INTERVAL
                    return None
                path = chosen.renamed(self.folder, "c", self.owner)
                os.rename(chosen.path, path)
        except safe.UnsafeFolder:
            return None  # refused, and said
        except OSError:
            self._next_scan = time.monotonic() + _RESCAN_INTERVAL
            raise
        own_frames = self._own_frames.pop(chosen.id, None)
        self._say_if_oversized(chosen)
        acked = sf.read_acks(chosen.ack_path)
        frames = deque(sf.spill_frames(path, acked, self.sealer))
        claim = _Claim(path, chosen.id, own_frames is not None, own_frames or [], frames, acked)
        self._claims[chosen.id] = claim
        self._current = claim
        return claim

    def _batch_of(self, claim: _Claim, offset: int, spilled: SpilledBatch) -> Batch:
        """A checked frame (see ``frames.read_batch``) as a batch to send again."""
        batch = Batch(
            body=spilled.body,
            count=spilled.n,
            encoding=spilled.enc,
            gzipped=spilled.gz,
            key=spilled.key,
        )
        batch.origin = Origin(claim.id, offset)
        if claim.own:
            batch.spilled_id = spilled.bid
        return batch

    def ack(self, origin: Origin) -> None:
        """A replayed frame was delivered (or rejected for good): it leaves the disk."""
        try:
            # By the file's id, whatever its state: after release (at close) the
            # file is no longer claimed here, and whoever claims it next reads this.
            sf.append_ack(os.path.join(self.folder, origin.file_id + sf.ACK_SUFFIX), origin.offset)
        except OSError:
            pass  # the frame may be sent again later: at least once, never lost
        claim = self._claims.get(origin.file_id)
        if claim is None:
            return
        claim.in_flight.discard(origin.offset)
        claim.acked.add(origin.offset)
        self._finish_if_done(claim)

    def _finish_if_done(self, claim: _Claim) -> None:
        if claim.exhausted and not claim.in_flight:
            # Our batches that did not come back from the file (damaged on
            # disk) are lost: counted, not left pending for ever.
            self.news.lost_own += claim.own_frames
            del self._claims[claim.id]
            sf.remove_quietly(claim.path, os.path.join(self.folder, claim.id + sf.ACK_SUFFIX))

    # -- regions left by processes that died (durability="crash") --------------------

    def _may_adopt(self, f: sf.SpillFile) -> bool:
        """Whether a region segment is free to take: released (by anyone, this handler
        too, after a try that the disk cut short), or of an owner that is gone. Never
        this handler's own region."""
        if f.state == "r":
            return True
        return f.owner != self.owner and not sf.owner_alive(f.owner, LIVE_OWNERS, f.mtime)

    def claim_region(self) -> list[str] | None:
        """Claim every segment of the oldest region free to take; their new paths, or None.

        The segments of one owner are claimed together (renamed to ``c``
        under this handler, holding the folder lock, as spill files are), so
        its records are read in order with the highest mark among them. Looks
        again only every few seconds after a look that found nothing.
        """
        if self.refused is not None or time.monotonic() < self._next_region_scan:
            return None
        # Without the lock first: the common case is the live regions of others.
        if not any(self._may_adopt(f) for f in sf.list_files(self.folder, sf.REGION_SUFFIX)):
            self._next_region_scan = time.monotonic() + _RESCAN_INTERVAL
            return None
        try:
            with safe.folder_lock(self._folder()):
                free = [
                    f for f in sf.list_files(self.folder, sf.REGION_SUFFIX) if self._may_adopt(f)
                ]
                if not free:
                    return None
                paths = []
                for f in free:
                    if f.owner == free[0].owner:
                        path = f.renamed(self.folder, "c", self.owner)
                        os.rename(f.path, path)
                        paths.append(path)
                return paths
        except safe.UnsafeFolder:
            return None  # refused, and said
        except OSError:
            self._next_region_scan = time.monotonic() + _RESCAN_INTERVAL
            raise

    def release_region(self, paths: list[str]) -> None:
        """Give claimed segments back (``r``), for a later try by anyone."""
        with safe.folder_lock(self._folder()):
            for path in paths:
                name = os.path.basename(path)  # c-ID-OWNER.lregion
                os.rename(path, os.path.join(self.folder, "r" + name[1:]))
        self._next_region_scan = time.monotonic() + _RESCAN_INTERVAL

    # -- the end -----------------------------------------------------------------

    def release(self) -> None:
        """Seal, and hand every file of this handler to whoever comes next."""
        LIVE_OWNERS.discard(self.owner)
        if not (self._active or self._own_frames or self._claims):
            return  # nothing of ours is on disk
        self.seal()
        try:
            with safe.folder_lock(self._folder()):
                for f in sf.list_files(self.folder):
                    if f.owner == self.owner:
                        os.rename(f.path, f.renamed(self.folder, "r", self.owner))
        except OSError:
            pass  # our owner id is dead once we exit: the files get adopted all the same
        self._claims.clear()
        self._current = None
        self._own_frames.clear()

    def usage(self) -> int:
        """Bytes the spill folder holds now (none in a folder that is refused)."""
        return 0 if self.refused is not None else sf.folder_bytes(self.folder)
