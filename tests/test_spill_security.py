"""The spill folder and its files when someone else had a hand in them (docs/security.md).

A folder owned by another user, planted links and FIFOs, damaged or crafted
frames, a planted file larger than any spill file, frames sealed under another
key or moved between files, a dead-letter file that only grows. Every folder
and file is real; other users are simulated with ``os.chown`` to an unused uid
(the tests run as root).
"""

from __future__ import annotations

import gzip
import logging
import os
import random
import stat
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from test_spill import Warnings, drained, log_paced, numbers, spill_opts

from logship.cli import spillinspect as si
from logship.pure import frames as fr
from logship.worker.spill import deadletters as dl
from logship.worker.spill import folder as sf

from conftest import attach, check_identity, require, require_within
from faultserver import status

OTHER_UID = 54321
OWNER = "deadbeef.1.1.0badcafe"  # another host's handler: its released files are anyone's


@pytest.fixture
def warnings() -> Iterator[Warnings]:
    w = Warnings()
    yield w
    logging.getLogger("logship").removeHandler(w)


def batch_frame(key: str, events: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """A spill frame's map as the writer makes it: a JSON batch, not compressed."""
    body = ("[" + ",".join(_json(e) for e in events) + "]").encode()
    return {
        "key": key,
        "bid": 1,
        "n": len(events),
        "enc": "json",
        "gz": False,
        "body": body,
        **fields,
    }


def _json(event: dict[str, Any]) -> str:
    import json

    return json.dumps(event)


def event(tag: str, i: int) -> dict[str, Any]:
    return {"message": f"{tag} {i}", "uuid": f"{tag}-{i}", "level": "INFO"}


def plant(folder: str, payloads: list[dict[str, Any]], file_id: str = "", url: str = "") -> str:
    """Write a released spill file holding ``payloads`` (after a header frame); its path."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    file_id = file_id or f"{time.time_ns():020x}aaaaaa"
    header = {"kind": "spill", "url": url or "http://127.0.0.1:9/app", "owner": OWNER}
    data = fr.FILE_HEADER + fr.encode_frame(header)
    data += b"".join(fr.encode_frame(p) for p in payloads)
    path = os.path.join(folder, f"r-{file_id}-{OWNER}{sf.SUFFIX}")
    with open(path, "wb") as f:
        f.write(data)
    return path


# -- 6: a folder that is not the user's own ------------------------------------------------


def test_a_folder_owned_by_another_user_is_never_written(server, make_handler, tmp_path, warnings):
    folder = tmp_path / "spill"
    folder.mkdir()
    os.chmod(folder, 0o777)
    os.chown(folder, OTHER_UID, OTHER_UID)
    server.down()
    h = make_handler(
        server.url(),
        **spill_opts(str(folder), capacity=100, batch_max_records=10, shutdown_timeout=0.5),
    )
    log = attach(h)
    log_paced(log, h, "ev", 0, 400, chunk=10, queue_max=50 + 40)
    h.close()

    assert os.listdir(folder) == [], "nothing is written in another user's folder"
    st = os.lstat(folder)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (OTHER_UID, 0o777), "nor is it changed"
    stats = h.stats()
    assert stats["spilled"] == 0 and stats["dropped"] == 400, stats
    assert stats["spill_refused"] == (
        f"the spill folder {folder} is owned by uid {OTHER_UID}, not by this user "
        f"(uid {os.geteuid()})"
    )
    check_identity(stats)
    (said,) = warnings.about(str(folder))
    assert "owned by uid 54321" in said and "without a spill" in said


@pytest.mark.parametrize("slash", ["", "/", "//"])
def test_a_spill_dir_that_is_a_link_is_refused(server, make_handler, tmp_path, warnings, slash):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    folder = tmp_path / "spill"
    folder.symlink_to(real)
    server.default = status(400, b"bad")
    # "spill/" names the folder the link points to: it must be judged as the link.
    h = make_handler(server.url(), **spill_opts(str(folder) + slash, shutdown_timeout=0.5))
    attach(h).info("rejected")
    assert h.flush(5)
    h.close()
    assert os.listdir(real) == []  # no dead letter through the link
    assert "is a symbolic link" in h.stats()["spill_refused"]
    assert h.stats()["rejected"] == 1


def test_a_spill_dir_that_is_a_file_fails_at_construction(server, make_handler, tmp_path):
    folder = tmp_path / "spill"
    folder.write_bytes(b"")
    with pytest.raises(ValueError, match=r"option 'spill_dir' names .*, which cannot be a folder"):
        make_handler(server.url(), **spill_opts(str(folder)))
    assert folder.read_bytes() == b""


def test_an_open_folder_of_the_user_is_made_private(server, make_handler, tmp_path):
    folder = tmp_path / "spill"
    folder.mkdir()
    os.chmod(folder, 0o777)
    server.default = status(400, b"bad")
    h = make_handler(server.url(), **spill_opts(str(folder)))
    attach(h).info("rejected")
    assert h.flush(5)
    assert stat.S_IMODE(os.lstat(folder).st_mode) == 0o700
    assert h.stats()["spill_refused"] is None


# -- 7: planted links, FIFOs and devices ----------------------------------------------------


def test_a_planted_dead_letter_link_is_not_followed(server, make_handler, tmp_path, warnings):
    folder = tmp_path / "spill"
    folder.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n")
    (folder / dl.DEAD_LETTER_NAME).symlink_to(victim)
    server.default = status(400, b"bad")
    h = make_handler(server.url(), **spill_opts(str(folder)))
    attach(h).info("rejected")
    assert h.flush(5)
    assert victim.read_bytes() == b"precious\n"
    assert h.stats()["rejected"] == 1
    check_identity(h.stats())
    (said,) = warnings.about("rejected a batch")
    assert "not written" in said and "not a regular file" in said


@pytest.mark.parametrize("what", ["ack link", "spill file FIFO", "ack FIFO", "spill link"])
def test_links_and_fifos_named_like_spill_files_never_block_or_redirect(
    what, server, make_handler, tmp_path
):
    folder = str(tmp_path / "spill")
    file_id = f"{time.time_ns():020x}bbbbbb"
    good = plant(folder, [batch_frame("k1", [event("old", 0)])], file_id="0" * 20 + "000001")
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"")
    fifo = None
    if what == "ack link":
        os.symlink(victim, os.path.join(folder, os.path.basename(good)[2:28] + sf.ACK_SUFFIX))
    elif what == "spill link":
        os.symlink("/dev/zero", os.path.join(folder, f"r-{file_id}-{OWNER}{sf.SUFFIX}"))
    else:
        name = f"r-{file_id}-{OWNER}{sf.SUFFIX}" if what == "spill file FIFO" else ""
        name = name or os.path.basename(good)[2:28] + sf.ACK_SUFFIX
        fifo = os.path.join(folder, name)
        os.mkfifo(fifo, 0o600)
    try:
        h = make_handler(server.url(), **spill_opts(folder, shutdown_timeout=0.5))
        attach(h).info("new 0")
        assert server.wait_for_uuids(2, 10), "the pump must not block on a planted file"
        assert sorted(numbers(server.events(), "old")) == [0]
        assert h.flush(5)
        check_identity(h.stats())
        assert victim.read_bytes() == b"", "no ack is written through a link"
    finally:
        if fifo is not None:
            _unblock(fifo)


def _unblock(fifo: str) -> None:
    """End a read some old code may have left waiting on ``fifo``."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


# -- 8: damage in another owner's file when the cap deletes it -------------------------------


def test_a_damaged_file_deleted_for_the_cap_costs_no_new_batch(
    server, make_handler, tmp_path, warnings
):
    folder = str(tmp_path / "spill")
    # Two released files of another owner: the first is claimed for replay, the
    # second (with a damaged frame) is the one the cap deletes.
    plant(folder, [batch_frame(f"a{i}", [event("a", i)]) for i in range(3)])
    damaged = plant(folder, [batch_frame(f"b{i}", [event("b", i)]) for i in range(3)])
    with open(damaged, "r+b") as f:
        data = bytearray(f.read())
        data[data.index(b"b1") + 1] ^= 0x01  # inside the second batch frame
        f.seek(0)
        f.write(data)
    server.down()
    h = make_handler(
        server.url(),
        **spill_opts(folder, capacity=100, batch_max_records=10, spill_max_bytes=4096),
    )
    log = attach(h)
    log_paced(log, h, "ev", 0, 300, chunk=10, queue_max=50 + 40)
    require_within(lambda: not os.path.exists(damaged), what="the cap to delete the damaged file")
    st = h.stats()
    assert st["spilled"] > 0, st
    assert not warnings.about("internal error"), warnings.messages
    server.up()
    require_within(drained(h, folder), 20, "delivery after the endpoint came back")
    st = h.stats()
    got = numbers(server.events(), "ev")
    assert len(got) == len(set(got)) and len(got) + st["dropped"] >= 300, st
    assert st["corrupt"] >= 1, st
    check_identity(st)


# -- 9: resynchronising past damage is linear; a file too large is not read -------------------


def crafted(size: int) -> bytes:
    """A file in which every 16th position looks like a frame that covers a quarter of it.

    Each such position has a length that fits, a map marker where its payload
    starts, a key after it, and another such position where it ends: only its
    checksum is wrong.
    """
    length = (size // 4) // 16 * 16 + 8  # start + 8 + length lands on the next 16th position
    unit = bytearray(16)
    unit[0:4] = length.to_bytes(4, "big")
    unit[4:8] = b"\xff\xff\xff\xff"
    unit[8] = 0x81  # a map of one entry
    unit[9] = 0xA1  # whose key is a string of one character
    return fr.FILE_HEADER + bytes(unit) * (size // 16)


def dense(size: int) -> bytes:
    """A file in which every 5th position looks like a frame start: as many as can."""
    return fr.FILE_HEADER + bytes([0, 1, 2, 0x81, 0xA1]) * (size // 5)


def _best_time(data: bytes) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        found = list(fr.iter_frames(data))
        best = min(best, time.perf_counter() - t0)
        require(all(p is None for _o, p in found), "no frame in a crafted file")
    return best


@pytest.mark.parametrize("make", [crafted, dense])
def test_resynchronising_takes_time_linear_in_the_file_size(make):
    small, large = make(64 * 1024), make(256 * 1024)
    ratio = _best_time(large) / max(_best_time(small), 1e-4)
    # Four times the bytes: linear is about 4, quadratic about 16.
    assert ratio < 8, f"{ratio:.1f} times slower for 4 times the bytes"


class Ticker:
    """A thread that wants to run every 10 ms, as an application's would: its longest wait."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ticker", daemon=True)

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(0.01):
            now = time.monotonic()
            self.longest = max(self.longest, now - last)
            last = now


@pytest.mark.parametrize("filler", ["zeros", "noise"])
def test_resynchronising_a_large_file_never_holds_up_other_threads(filler):
    size = 64 * 1024 * 1024
    junk = bytes(size) if filler == "zeros" else random.Random(7).randbytes(size)
    good = fr.encode_frame({"i": 1})
    data = fr.FILE_HEADER + junk + good
    with Ticker() as ticker:
        found = list(fr.iter_frames(data))
    assert found[-1] == (len(data) - len(good), {"i": 1})
    # One search over the whole of it would hold the GIL for seconds.
    assert ticker.longest < 0.5, f"another thread waited {ticker.longest:.2f} s"


WINDOW = fr.RESYNC_WINDOW


@pytest.mark.parametrize(
    "junk",
    [0, 1, WINDOW - 17, WINDOW - 16, WINDOW - 8, WINDOW - 7, WINDOW - 6, 3 * WINDOW],
)
def test_resynchronising_finds_a_frame_wherever_it_falls_against_the_search_windows(junk):
    # The search starts one byte past the damage (offset 9): the frame starts
    # 7 + junk bytes into it, so these put its length, its map marker and its
    # first key on either side of a window's end.
    damaged = fr._FRAME.pack(0xFFFFFFFF, 0)  # a length no frame has
    first, second = fr.encode_frame({"i": 0}), fr.encode_frame({"i": 1})
    data = fr.FILE_HEADER + damaged + b"\xff" * junk + first + second
    at = len(fr.FILE_HEADER) + len(damaged) + junk
    assert list(fr.iter_frames(data)) == [
        (len(fr.FILE_HEADER), None),
        (at, {"i": 0}),
        (at + len(first), {"i": 1}),
    ]


def test_resynchronising_still_finds_every_good_frame_after_damage():
    payloads = [{"i": i, "body": os.urandom(200 + 50 * i)} for i in range(20)]
    frames = [fr.encode_frame(p) for p in payloads]
    data = bytearray(fr.FILE_HEADER + b"".join(frames))
    starts = [len(fr.FILE_HEADER) + sum(map(len, frames[:i])) for i in range(20)]
    for i in (3, 9, 15):
        data[starts[i] + 12] ^= 0x10  # one flipped byte in each of three frames
    result = fr.read_frames(bytes(data))
    assert [p["i"] for p in result.frames] == [i for i in range(20) if i not in (3, 9, 15)]
    assert result.corrupt == 3


def plant_sparse(folder: str, size: int) -> str:
    """A released spill file of ``size`` bytes: a valid file header, then a hole; its path.

    Named to sort before every other file, so it is the first claimed. Skips
    the test when the file system cannot leave a hole.
    """
    os.makedirs(folder, mode=0o700, exist_ok=True)
    path = os.path.join(folder, f"r-{0:020x}aaaaaa-{OWNER}{sf.SUFFIX}")
    with open(path, "wb") as f:
        f.write(fr.FILE_HEADER)
    os.truncate(path, size)
    if os.stat(path).st_blocks * 512 > 1024 * 1024:
        os.unlink(path)
        pytest.skip("the file system here cannot make sparse files")
    return path


@pytest.mark.parametrize(("over", "read"), [(-1, True), (0, True), (1, False)])
def test_a_spill_file_larger_than_logship_writes_is_not_read(tmp_path, monkeypatch, over, read):
    path = plant(str(tmp_path / "spill"), [batch_frame("k0", [event("old", 0)])])
    monkeypatch.setattr(sf, "MAX_SPILL_FILE", os.path.getsize(path) - over)
    found = list(sf.spill_frames(path, set()))
    counts = sf.count_frames(path, set())
    if read:
        assert [b.key for _o, b in found if b is not None] == ["k0"]
        assert counts == sf.FrameCounts(events=1)
    else:
        assert found == [(0, None)]
        assert counts == sf.FrameCounts(corrupt=1)


def test_a_huge_planted_file_is_one_damaged_frame_and_stalls_no_thread(
    server, make_handler, tmp_path, warnings
):
    folder = str(tmp_path / "spill")
    huge = plant_sparse(folder, 1024 * 1024 * 1024)
    plant(folder, [batch_frame("k0", [event("old", 0)])])
    with Ticker() as ticker:
        h = make_handler(server.url(), **spill_opts(folder))
        attach(h).info("new 0")
        require_within(drained(h, folder), what="the replay to finish")
        require_within(lambda: h.stats()["corrupt"] == 1, what="the planted file to be counted")
    assert ticker.longest < 0.5, f"an application thread waited {ticker.longest:.2f} s"
    assert not os.path.exists(huge)
    events = server.events()
    assert numbers(events, "old") == [0] and numbers(events, "new") == [0]
    assert len(warnings.about("more than logship ever writes")) == 1, warnings.messages
    check_identity(h.stats())


def test_a_huge_planted_file_does_not_hold_up_exit(server, make_handler, tmp_path):
    folder = str(tmp_path / "spill")
    plant_sparse(folder, 1024 * 1024 * 1024)
    server.down()
    with Ticker() as ticker:
        h = make_handler(server.url(), **spill_opts(folder, shutdown_timeout=1.0))
        attach(h).info("bye")
        started = time.monotonic()
        h.close()
        took = time.monotonic() - started
    assert took < 1.0 + 1.5, f"close() took {took:.1f} s with shutdown_timeout=1"
    assert ticker.longest < 0.5, f"an application thread waited {ticker.longest:.2f} s"


# -- 10: every field read back is checked ------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"key": "abc\r\nX-Evil: 1"},
        {"key": "k" * 500},
        {"key": 7},
        {"n": "many"},
        {"n": -3},
        {"n": True},
        {"n": 2**31 - 1},  # the checksum is made again: a CRC32 is no signature
        {"enc": "xml"},
        {"gz": "yes"},
        {"body": "text, not bytes"},
    ],
    ids=lambda d: f"{next(iter(d))}={next(iter(d.values()))!r}"[:30],
)
def test_a_frame_with_a_bad_field_is_corrupt_and_the_rest_replays(
    bad, server, make_handler, tmp_path, warnings
):
    folder = str(tmp_path / "spill")
    payloads = [batch_frame(f"k{i}", [event("old", i)]) for i in range(3)]
    payloads[1].update(bad)
    plant(folder, payloads)
    h = make_handler(server.url(), **spill_opts(folder))
    require_within(drained(h, folder), what="the replay to finish")
    assert sorted(numbers(server.events(), "old")) == [0, 2]
    # The pump deletes the file, then applies what the store counted: a moment apart.
    require_within(lambda: h.stats()["corrupt"] == 1, what="the damage to be counted")
    st = h.stats()
    assert st["adopted"] == st["shipped"] == 2, st
    assert not warnings.about("internal error"), warnings.messages
    check_identity(st)


def gzip_bomb(raw_mib: int) -> bytes:
    """A gzip member of ``raw_mib`` MiB of zeros, made without holding them."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1024 * 1024)
    return b"".join(c.compress(chunk) for _ in range(raw_mib)) + c.flush()


def test_replay_never_inflates_a_body_without_limit(server, make_handler, tmp_path):
    folder = str(tmp_path / "spill")
    good = batch_frame("k0", [event("old", 0)])
    good.update(enc="ndjson", gz=True, body=gzip.compress(_json(event("old", 0)).encode()))
    bomb = {**good, "key": "k1", "body": gzip_bomb(300)}
    plant(folder, [good, bomb])
    h = make_handler(server.url(), **spill_opts(folder))  # json: ndjson bodies are re-encoded
    require_within(drained(h, folder), what="the replay to finish")
    assert numbers(server.events(), "old") == [0]
    require_within(lambda: h.stats()["corrupt"] == 1, what="the bomb to be counted")
    check_identity(h.stats())


def test_a_forged_event_count_costs_its_batch_and_counts_nothing_that_did_not_happen(
    server, make_handler, tmp_path
):
    folder = str(tmp_path / "spill")
    server.down()
    h = make_handler(
        server.url(), **spill_opts(folder, batch_max_records=1, shutdown_timeout=0.5)
    )  # gzip-compressed JSON, the defaults
    log = attach(h)
    log.info("old 0")
    log.info("old 1")
    h.close()
    require(h.stats()["spilled"] == 2, h.stats())
    server.up()
    # The first batch is made to claim 2**31 - 1 events, its checksum made again.
    (path,) = (os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(sf.SUFFIX))
    with open(path, "rb") as f:
        data = f.read()
    forged = bytearray(fr.FILE_HEADER)
    batches = 0
    for _offset, payload in fr.iter_frames(data):
        if "body" in payload:
            batches += 1
            if batches == 1:
                require(payload["n"] == 1 and payload["gz"], payload)
                payload["n"] = 2**31 - 1
        forged += fr.encode_frame(payload)
    require(batches == 2, batches)
    with open(path, "wb") as f:
        f.write(forged)
    h2 = make_handler(server.url(), **spill_opts(folder))
    require_within(drained(h2, folder), what="the replay to finish")
    require_within(lambda: h2.stats()["corrupt"] == 1, what="the forged frame to be counted")
    assert numbers(server.events(), "old") == [1]
    st = h2.stats()
    assert st["adopted"] == st["shipped"] == st["replayed"] == 1, st
    check_identity(st)


# -- 10: sealed frames: bound to their file; old keys; the old format -----------------------

KEY = os.urandom(32).hex()
RETIRED = os.urandom(32).hex()


def spill_sealed(server, make_handler, folder: str, tag: str, n: int, key: str) -> None:
    """``n`` events spilled at close, sealed under ``key``, in files of 5-event batches."""
    server.down()
    h = make_handler(
        server.url(),
        **spill_opts(folder, spill_key=key, batch_max_records=5, shutdown_timeout=0.5),
    )
    log = attach(h, tag)
    for i in range(n):
        log.info("%s %d", tag, i)
    h.close()
    require(h.stats()["spilled"] == n, h.stats())
    server.up()


def test_a_sealed_frame_moved_to_another_file_does_not_open(server, make_handler, tmp_path):
    pytest.importorskip("cryptography")
    folder = str(tmp_path / "spill")
    spill_sealed(server, make_handler, folder, "x", 10, KEY)
    spill_sealed(server, make_handler, folder, "y", 10, KEY)
    first, second = (f.path for f in sf.list_files(folder))
    with open(first, "rb") as f:
        data = f.read()
    offset, _payload = list(fr.iter_frames(data))[1]  # x's first batch
    (length,) = struct.unpack_from(">I", data, offset)
    with open(second, "ab") as f:
        f.write(data[offset : offset + fr.FRAME_OVERHEAD + length])

    h = make_handler(server.url(), **spill_opts(folder, spill_key=KEY))
    require_within(drained(h, folder), what="the replay to finish")
    assert len(server.events()) == 20, "the moved frame is not delivered a second time"
    require_within(lambda: h.stats()["corrupt"] == 1, what="the moved frame to be counted")
    check_identity(h.stats())


def test_files_sealed_the_old_way_still_replay(server, make_handler, tmp_path):
    aead = pytest.importorskip("cryptography.hazmat.primitives.ciphers.aead")
    from logship.pure.sealing import Sealer, parse_key

    key = parse_key(KEY)
    cipher = aead.AESGCM(key)
    header = {"kind": "spill", "url": server.url(), "owner": OWNER, "key_id": Sealer(key).key_id}
    data = fr.FILE_HEADER + fr.encode_frame(header)
    for i in range(3):
        inner = fr.encode_frame(batch_frame(f"k{i}", [event("old", i)]))[fr.FRAME_OVERHEAD :]
        nonce = os.urandom(12)
        sealed = nonce + cipher.encrypt(nonce, inner, b"logship-spill-frame-v1")
        data += fr.encode_frame({fr.SEALED: sealed})
    folder = tmp_path / "spill"
    folder.mkdir(mode=0o700)
    (folder / f"r-{time.time_ns():020x}cccccc-{OWNER}{sf.SUFFIX}").write_bytes(data)

    h = make_handler(server.url(), **spill_opts(str(folder), spill_key=KEY))
    require_within(drained(h, str(folder)), what="the replay to finish")
    assert sorted(numbers(server.events(), "old")) == [0, 1, 2]
    assert h.stats()["corrupt"] == 0


def test_the_cap_may_delete_files_sealed_under_a_retired_key(
    server, make_handler, tmp_path, warnings
):
    pytest.importorskip("cryptography")
    from logship.pure.sealing import Sealer, parse_key

    folder = str(tmp_path / "spill")
    spill_sealed(server, make_handler, folder, "old", 20, RETIRED)
    (retired,) = sf.list_files(folder)
    server.down()
    h = make_handler(
        server.url(),
        **spill_opts(
            folder,
            spill_key=KEY,
            capacity=100,
            batch_max_records=10,
            spill_max_bytes=max(4096, retired.size + 1024),
        ),
    )
    log = attach(h)
    log_paced(log, h, "ev", 0, 300, chunk=10, queue_max=50 + 40)
    require_within(
        lambda: not os.path.exists(retired.path), what="the cap to delete the retired key's file"
    )
    st = h.stats()
    assert st["adopted"] == 20 and st["dropped"] >= 20 and st["corrupt"] == 0, st
    check_identity(st)
    key_id = Sealer(parse_key(RETIRED)).key_id
    (said,) = [m for m in warnings.about(key_id) if "deleted" in m]
    assert "its 20 events" in said


# -- 11: dead letters are capped, rotated, read as a stream -------------------------------------


def test_dead_letters_are_capped_and_rotated(server, make_handler, tmp_path):
    folder = str(tmp_path / "spill")
    cap = 256 * 1024
    server.default = status(422, b"no")
    h = make_handler(server.url(), **spill_opts(folder, spill_max_bytes=cap, batch_max_records=10))
    log = attach(h)
    noise = os.urandom(50).hex()
    for i in range(0, 400, 10):
        for j in range(i, i + 10):
            log.info("ev %d %s", j, noise)
        assert h.flush(5)
    assert h.stats()["rejected"] == 400
    letters = [n for n in os.listdir(folder) if n.startswith("dead-letter")]
    assert len(letters) > 1, letters
    total = sum(os.path.getsize(os.path.join(folder, n)) for n in letters)
    assert total <= cap // 4, f"{total} bytes of dead letters, cap {cap // 4}"
    read = si.read_dead_letters(folder)
    kept = sorted(int(e["message"].split()[1]) for b in read.batches for e in b.events or ())
    assert kept and kept == list(range(kept[0], 400)), "the newest are kept, the oldest go"


def test_status_reads_dead_letters_as_a_stream(tmp_path, capsys):
    import tracemalloc

    from logship.cli import spill as spill_cli

    folder = str(tmp_path / "spill")
    batch = [{"message": os.urandom(512).hex(), "n": i} for i in range(1000)]  # ~1 MiB a frame
    for i in range(24):
        dl.write_dead_letter(folder, "http://127.0.0.1:9/app", f"k{i}", batch, 400, "bad")
    size = sum(
        os.path.getsize(os.path.join(folder, n))
        for n in os.listdir(folder)
        if n.startswith("dead-letter")
    )
    require(size > 20 * 1024 * 1024, size)
    tracemalloc.start()
    try:
        spill_cli.status([folder], folder)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "24000 events in 24 rejected batches" in capsys.readouterr().out
    assert peak < size / 3, f"{peak} bytes held to read {size} bytes of dead letters"
