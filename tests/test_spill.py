"""The file-backed spill inside one process (SPEC sections 2, 4 and 5).

Every test uses real spill files in ``tmp_path`` and a real collector on
127.0.0.1. Damaged files are written by the real writer (a handler that
spills at close) and then damaged byte by byte; replay is always the real
one, by a new handler that finds the files at start. Waits are on conditions
with deadlines.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import secrets
import shutil
import socket
import stat
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest

import logship
from logship.pure import frames as fr
from logship.worker.spill import deadletters as dl
from logship.worker.spill import folder as sf
from logship.worker.spill import safefiles as safe

from conftest import FAST, attach, check_identity, require, require_within
from faultserver import STALL, FaultServer, status

# -- helpers -------------------------------------------------------------------


def numbers(events: list[dict[str, Any]], tag: str) -> list[int]:
    """The N of every event whose message is ``"TAG N"``, in order."""
    out = []
    for e in events:
        t, _, n = e["message"].partition(" ")
        if t == tag:
            out.append(int(n.split()[0]))
    return out


def log_paced(
    log: logging.Logger,
    handler: logship.ShipHandler,
    tag: str,
    start: int,
    stop: int,
    *,
    chunk: int,
    queue_max: int,
    extra: Callable[[int], str] = lambda i: "",
    timeout: float = 10.0,
) -> int:
    """Log ``"TAG i"`` for i in [start, stop) in chunks, letting the worker catch up.

    After each chunk, wait until no more than ``queue_max`` events are in
    memory: the worker moves them on (to the sender or to disk) at its own
    pace, and the test never overruns the ring by outrunning it. Returns the
    highest ``queued`` seen right after a chunk.
    """
    highest = 0
    for c in range(start, stop, chunk):
        for i in range(c, min(c + chunk, stop)):
            log.info("%s %d%s", tag, i, extra(i))
        highest = max(highest, handler.stats()["queued"])
        require_within(
            lambda: handler.stats()["queued"] <= queue_max, timeout, "the worker to catch up"
        )
    return highest


def body_events(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The events of a spilled batch frame (JSON encoding)."""
    raw = payload["body"]
    if payload.get("gz"):
        raw = gzip.decompress(raw)
    return list(json.loads(raw))


def disk_frames(folder: str) -> list[tuple[str, int, dict[str, Any]]]:
    """``(path, offset, payload)`` of every good batch frame in the folder's spill files."""
    out = []
    for f in sf.list_files(folder):
        with open(f.path, "rb") as fh:
            data = fh.read()
        for offset, payload in fr.iter_frames(data):
            if payload is not None and "body" in payload:
                out.append((f.path, offset, payload))
    return out


def spill_names(folder: str) -> list[str]:
    """Every spill, ack or dead-letter file in ``folder`` (not the lock)."""
    try:
        return sorted(n for n in os.listdir(folder) if n != safe.LOCK_NAME)
    except FileNotFoundError:
        return []


def drained(handler: logship.ShipHandler, folder: str) -> Callable[[], bool]:
    return lambda: handler.stats()["pending"] == 0 and not sf.has_spilled(folder)


def spill_opts(folder: str, **more: Any) -> dict[str, Any]:
    return {"spill": True, "spill_dir": folder, **more}


class Warnings(logging.Handler):
    """Collects what the ``logship`` logger says."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        logging.getLogger("logship").addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def about(self, text: str) -> list[str]:
        return [m for m in self.messages if text in m]


class FolderSampler:
    """Samples a folder's total size from a thread, as fast as it can.

    A sample lists the folder, stats every file, then checks that every
    counted file still exists: spill and ack files only grow until they are
    renamed or deleted, so a sample whose files all survived it is a lower
    bound of the folder's real size at the moment of its last ``stat``. A
    sample that saw a file vanish is discarded rather than risk counting a
    deleted file together with its successor.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.samples = 0
        self.highest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FolderSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                names = os.listdir(self.folder)
            except FileNotFoundError:
                continue
            sizes = {}
            for n in names:
                try:
                    sizes[n] = os.stat(os.path.join(self.folder, n)).st_size
                except FileNotFoundError:
                    pass
            if all(os.path.exists(os.path.join(self.folder, n)) for n in sizes):
                self.samples += 1
                self.highest = max(self.highest, sum(sizes.values()))


class LatencyServer(FaultServer):
    """A collector that takes ``latency`` seconds over every request (a slow aggregator)."""

    latency = 0.0

    def _handle(self, h: Any) -> None:
        if self.latency:
            self.release.wait(self.latency)  # simulated service time, not a wait for anything
        super()._handle(h)


def spill_at_close(
    server: FaultServer, make_handler: Any, folder: str, tag: str, n: int
) -> logship.ShipHandler:
    """Log "TAG 0" to "TAG n-1" while ``server`` answers 503, then close the handler.

    The endpoint failed its last attempt, so close() spills every batch (of 10) at once;
    its budget is ample, for a machine so busy that spilling takes a while.
    """
    server.default = status(503)
    h = make_handler(server.url(), **spill_opts(folder, batch_max_records=10, shutdown_timeout=3))
    log = attach(h, tag)
    for i in range(n):
        log.info("%s %d", tag, i)
    require(server.wait_for_requests(1), "a first attempt")
    h.close()
    return h


@pytest.fixture
def slow_server() -> Iterator[LatencyServer]:
    srv = LatencyServer()
    srv.start()
    yield srv
    srv.stop()


# -- the frame format ------------------------------------------------------------


def test_frames_round_trip_through_the_documented_layout():
    payloads = [
        {"kind": "spill", "url": "http://h/x", "pid": 1},
        {"key": "k1", "n": 2, "body": b"\x00\x01gz\xff" * 50, "gz": True},
        {"key": "k2", "n": 1, "body": "é ✓ 日本".encode(), "nested": {"a": [1, 2.5, None]}},
        {},
    ]
    data = fr.FILE_HEADER + b"".join(fr.encode_frame(p) for p in payloads)

    assert data[:4] == b"LSHP" and data[4] == fr.VERSION == 1 and data[5:8] == b"\0\0\0"
    # Each frame: 4-byte big-endian length and CRC32 of the msgpack payload, then the payload.
    pos = len(fr.FILE_HEADER)
    for p in payloads:
        length, crc = struct.unpack_from(">II", data, pos)
        body = data[pos + 8 : pos + 8 + length]
        assert zlib.crc32(body) == crc
        assert msgpack.unpackb(body, raw=False) == p
        pos += 8 + length
    assert pos == len(data)

    result = fr.read_frames(data)
    assert result == fr.ReadResult(payloads, 0, True)
    offsets = [off for off, _ in fr.iter_frames(data)]
    assert offsets[0] == len(fr.FILE_HEADER) and offsets == sorted(offsets)


@pytest.mark.parametrize(
    "damage, good, corrupt",
    [
        ("torn tail", [0, 1], 1),
        ("flipped byte in the middle frame", [0, 2], 1),
        ("truncated file", [], 1),
        ("zero-length file", [], 1),
        ("wrong version", [], 1),
    ],
)
def test_read_frames_skips_and_counts_damage(damage, good, corrupt):
    payloads = [{"i": i, "body": secrets.token_bytes(40)} for i in range(3)]
    frames = [fr.encode_frame(p) for p in payloads]
    data = bytearray(fr.FILE_HEADER + b"".join(frames))
    second = len(fr.FILE_HEADER) + len(frames[0])
    if damage == "torn tail":
        del data[-5:]
    elif damage == "flipped byte in the middle frame":
        data[second + 8 + len(frames[1]) // 2] ^= 0x40
    elif damage == "truncated file":
        del data[6:]
    elif damage == "zero-length file":
        data = bytearray()
    else:
        data[4] = fr.VERSION + 1

    result = fr.read_frames(bytes(data))
    assert [p["i"] for p in result.frames] == good
    assert result.corrupt == corrupt


# -- damaged files through a real replay -------------------------------------------

BATCH = 10
BATCHES = 3


@pytest.fixture(scope="module")
def pristine_spill(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    """One spill file as the real writer leaves it: 3 batches of 10 events, released at close.

    The handler's endpoint refuses connections, so close() spills every batch.
    Returns the file's name and bytes.
    """
    folder = str(tmp_path_factory.mktemp("pristine"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/app"
        h = logship.ShipHandler(
            url=url,
            spill_dir=folder,
            batch_max_records=BATCH,
            **{**FAST, "shutdown_timeout": 0.5},
        )
        log = logging.getLogger("pristine")
        log.addHandler(h)
        log.propagate = False
        log.setLevel(logging.INFO)
        for i in range(BATCH * BATCHES):
            log.info("old %d", i)
        h.close()
        log.removeHandler(h)
        assert h.stats()["spilled"] == BATCH * BATCHES, h.stats()
    finally:
        sock.close()
    (f,) = sf.list_files(folder)
    assert f.state == "r"
    with open(f.path, "rb") as fh:
        return os.path.basename(f.path), fh.read()


def frame_spans(data: bytes) -> list[tuple[int, int, list[int]]]:
    """``(offset, end, event numbers)`` of each batch frame of a spill file."""
    spans = []
    for offset, payload in fr.iter_frames(data):
        assert payload is not None
        if "body" in payload:
            (length,) = struct.unpack_from(">I", data, offset)
            spans.append((offset, offset + 8 + length, numbers(body_events(payload), "old")))
    return spans


@pytest.mark.parametrize(
    "damage",
    [
        "torn tail",
        "torn tail inside a frame header",
        "flipped byte in the middle frame",
        "flipped byte in the file's header frame",
        "truncated file",
        "zero-length file",
        "wrong version byte",
    ],
)
def test_a_damaged_spill_file_replays_its_good_frames_and_counts_the_rest(
    damage, pristine_spill, server, make_handler, tmp_path
):
    name, data = pristine_spill
    spans = frame_spans(data)
    assert len(spans) == BATCHES and sorted(n for s in spans for n in s[2]) == list(range(30))
    damaged = bytearray(data)
    if damage == "torn tail":  # a crash in the middle of the last append
        del damaged[-7:]
        kept = [0, 1]
    elif damage == "torn tail inside a frame header":
        del damaged[spans[2][0] + 5 :]
        kept = [0, 1]
    elif damage == "flipped byte in the middle frame":
        start, end, _ = spans[1]
        damaged[(start + 8 + end) // 2] ^= 0x01
        kept = [0, 2]
    elif damage == "flipped byte in the file's header frame":
        damaged[len(fr.FILE_HEADER) + 12] ^= 0x01
        kept = [0, 1, 2]
    elif damage == "truncated file":
        del damaged[6:]
        kept = []
    elif damage == "zero-length file":
        damaged = bytearray()
        kept = []
    else:
        damaged[4] = fr.VERSION + 1
        kept = []
    folder = str(tmp_path / "spill")
    os.makedirs(folder, mode=0o700)
    with open(os.path.join(folder, name), "wb") as fh:
        fh.write(damaged)

    h = make_handler(server.url(), **spill_opts(folder))  # replays what it finds, at start
    require_within(drained(h, folder), what="the damaged file to be replayed and removed")
    # The pump deletes the file, then applies what the store counted: a moment apart.
    require_within(lambda: h.stats()["corrupt"] >= 1, what="the damage to be counted")

    expected = sorted(n for i in kept for n in spans[i][2])
    assert sorted(numbers(server.events(), "old")) == expected
    st = h.stats()
    assert st["corrupt"] == 1, st
    assert st["adopted"] == st["replayed"] == st["shipped"] == len(expected), st
    check_identity(st)
    require_within(lambda: spill_names(folder) == [], what="no file left")
    # Nothing broke: the handler still ships new events.
    attach(h).info("new 0")
    assert h.flush(5)
    assert numbers(server.events(), "new") == [0]


# -- keys, overflow, replay -------------------------------------------------------


def test_a_replayed_batch_keeps_the_idempotency_key_of_its_first_attempts(
    server, make_handler, tmp_path
):
    folder = str(tmp_path)
    server.default = status(503)
    h1 = make_handler(server.url(), **spill_opts(folder, batch_max_records=5, shutdown_timeout=1))
    log = attach(h1)
    for i in range(5):
        log.info("ev %d", i)
    assert server.wait_for_requests(2), "the batch should have been tried and retried"
    h1.close()
    assert h1.stats()["spilled"] == 5, h1.stats()
    tried = {r.headers["Idempotency-Key"] for r in server.requests}
    assert len(tried) == 1, "a retry must reuse the key"
    (key,) = tried

    # The key is kept on disk with the batch ...
    on_disk = disk_frames(folder)
    assert [p["key"] for _, _, p in on_disk] == [key]
    assert numbers(body_events(on_disk[0][2]), "ev") == [0, 1, 2, 3, 4]

    # ... and a later process replays the batch under it.
    failed = len(server.requests)
    server.default = status(201)
    h2 = make_handler(server.url(), **spill_opts(folder))
    require_within(drained(h2, folder), what="the replay")
    replays = server.requests[failed:]
    assert [(r.answered, r.headers["Idempotency-Key"]) for r in replays] == [(201, key)]
    assert numbers(replays[0].events, "ev") == [0, 1, 2, 3, 4]
    assert h2.stats()["replayed"] == 5


def test_overflow_spills_while_the_endpoint_is_down_and_everything_arrives_once(
    server, make_handler, tmp_path
):
    capacity, batch, n = 200, 20, 3000
    folder = str(tmp_path / "spill")
    server.down()  # connections refused until up()
    h = make_handler(server.url(), **spill_opts(folder, capacity=capacity, batch_max_records=batch))
    log = attach(h)
    # At most half the ring plus the batches in memory (in flight, waiting, open)
    # before the next chunk: the pump must spill to get there.
    highest = log_paced(
        log, h, "ev", 0, n, chunk=10, queue_max=capacity // 2 + 4 * batch, timeout=10
    )
    st = h.stats()
    assert highest <= capacity + 4 * batch
    assert st["dropped"] == 0 and st["shipped"] == 0, st
    assert st["spilled"] >= n - capacity - 4 * batch, st
    assert st["spill_bytes"] > 0 and sf.list_files(folder)
    check_identity(st)
    # Every spilled event is in a frame on disk (once the worker is done appending).
    require_within(
        lambda: sum(p["n"] for _, _, p in disk_frames(folder)) == h.stats()["spilled"],
        what="the frames on disk to hold every spilled event",
    )
    keys_on_disk = {p["key"] for _, _, p in disk_frames(folder)}

    server.up()
    require_within(drained(h, folder), 20, "delivery after the endpoint came back")

    got = numbers(server.events(), "ev")
    assert len(got) == n and sorted(got) == list(range(n)), "every event exactly once"
    assert len(server.uuids()) == n
    st = h.stats()
    assert st["shipped"] == n and st["replayed"] == st["spilled"] > 0, st
    assert st["dropped"] == 0 and st["pending"] == 0, st
    check_identity(st)
    sent_keys = {r.headers["Idempotency-Key"] for r in server.requests if r.answered == 201}
    assert keys_on_disk <= sent_keys, "a spilled batch is replayed under its own key"
    require_within(lambda: spill_names(folder) == [], what="spill and ack files to be deleted")
    require_within(lambda: h.stats()["spill_bytes"] == 0, what="spill_bytes to drop to 0")


def test_a_steady_rate_with_the_endpoint_down_spills_instead_of_dropping(
    server, make_handler, tmp_path
):
    # A long flush_interval (2 s): the pump must be woken by the ring filling
    # up, not only by its timer. 100 events every 50 ms is 2,000 a second, a
    # small fraction of what the worker can spill even on a busy machine, but
    # a ring filled every half second, four times before the timer would fire.
    # Before each burst the ring must have room for it within 1.5 s, less than
    # the timer's 2 s: a pump woken only by its timer fails that, and a loaded
    # machine that runs the worker late does not make the test drop events.
    folder = str(tmp_path)
    server.down()
    opts = spill_opts(folder, capacity=1000, batch_max_records=100, flush_interval=2.0)
    h = make_handler(server.url(), **opts)
    log = attach(h)
    pace = threading.Event()
    for c in range(0, 6000, 100):
        require_within(lambda: h.stats()["queued"] <= 900, 1.5, "room for the next burst")
        for i in range(c, c + 100):
            log.info("ev %d", i)
        pace.wait(0.05)  # the arrival rate of the application, not a wait for the worker
    st = h.stats()
    assert st["dropped"] == 0, st
    assert st["spilled"] >= 6000 - 1000 - 4 * 100, st
    server.up()
    require_within(drained(h, folder), 20, "delivery")
    assert sorted(numbers(server.events(), "ev")) == list(range(6000))


def test_replay_shares_the_endpoint_fairly_with_new_events(slow_server, make_handler, tmp_path):
    folder = str(tmp_path)
    server = slow_server
    old = 600
    h1 = spill_at_close(server, make_handler, folder, "old", old)
    assert h1.stats()["spilled"] == old, h1.stats()

    before = len(server.requests)
    server.default = status(201)
    server.latency = 0.01  # 60 spilled batches take at least 0.6 s to replay
    h2 = make_handler(server.url(), **spill_opts(folder, batch_max_records=10))
    log2 = attach(h2, "new")
    new = 0
    for _ in range(30):  # new events keep coming while the backlog is replayed
        seen = len(server.requests)
        for _ in range(4):
            log2.info("new %d", new)
            new += 1
        assert server.wait_for_requests(seen + 1, 5)
    require_within(drained(h2, folder), 20, "replay and delivery")

    kinds = []
    for r in server.requests[before:]:
        if r.answered == 201:
            tags = {e["message"].split()[0] for e in r.events}
            assert len(tags) == 1, "a replayed batch is never mixed with new events"
            kinds.append(tags.pop())
    last_old = max(i for i, k in enumerate(kinds) if k == "old")
    new_during_replay = kinds[:last_old].count("new")
    assert kinds.index("new") < kinds.count("old") // 4, kinds
    assert new_during_replay >= 5, f"new events starved by the replay: {kinds}"
    assert sorted(numbers(server.events(), "old")) == list(range(old))
    assert sorted(numbers(server.events(), "new")) == list(range(new))
    assert h2.stats()["replayed"] == old


def test_a_replayed_batch_leaves_the_disk_only_after_a_2xx(server, make_handler, tmp_path):
    folder = str(tmp_path)
    h1 = spill_at_close(server, make_handler, folder, "ev", 10)
    assert h1.stats()["spilled"] == 10

    # The next handler's replay fails three times, then hangs.
    server.then(status(503), status(500), status(429), STALL)
    start = server.arrivals
    h2 = make_handler(server.url(), **spill_opts(folder, shutdown_timeout=0.5))
    require_within(lambda: server.arrivals >= start + 4, what="three failures and a hung request")
    (f,) = sf.list_files(folder)
    assert f.state == "c", "claimed by the replaying handler, still on disk"
    assert sf.read_acks(f.ack_path) == set()
    assert h2.stats()["replayed"] == 0
    # Closing it now hands the file back, undelivered.
    h2.close()
    (f,) = sf.list_files(folder)
    assert f.state == "r"
    assert h2.stats()["replayed"] == 0
    server.release.set()
    require_within(lambda: len(server.requests) >= start + 4, what="the hung request to end")
    server.release.clear()
    server.default = status(201)
    h3 = make_handler(server.url(), **spill_opts(folder))
    require_within(drained(h3, folder), what="the replay")
    assert h3.stats()["replayed"] == 10
    assert sorted(numbers(server.events(), "ev")) == list(range(10))
    require_within(lambda: spill_names(folder) == [], what="no file left")


def test_the_halves_of_a_split_batch_are_spilled_at_close_not_dropped(
    server, make_handler, tmp_path
):
    folder = str(tmp_path)
    server.then(status(413))  # split in two; then the endpoint fails
    server.default = status(503)
    h1 = make_handler(server.url(), **spill_opts(folder, batch_max_records=100, shutdown_timeout=1))
    log = attach(h1, "ev")
    for i in range(100):
        log.info("ev %d", i)
    require(server.wait_for_requests(2), "the 413 and a first half's attempt")
    h1.close()
    stats = h1.stats()
    assert stats["spilled"] == 100 and stats["dropped"] == 0, stats
    server.default = status(201)
    h2 = make_handler(server.url(), **spill_opts(folder))
    require_within(drained(h2, folder), what="the replay")
    assert sorted(numbers(server.events(), "ev")) == list(range(100))


def test_batches_spilled_at_close_are_replayed_oldest_first(server, make_handler, tmp_path):
    folder = str(tmp_path)
    h1 = spill_at_close(server, make_handler, folder, "ev", 30)
    require(h1.stats()["spilled"] == 30, h1.stats())
    before = len(server.requests)
    server.default = status(201)
    h2 = make_handler(server.url(), **spill_opts(folder))
    require_within(drained(h2, folder), what="the replay")
    require(len(server.requests) - before == 3, "three batches, each sent once")
    order = numbers(server.events(), "ev")
    assert order == list(range(30)), order


# -- the size cap ------------------------------------------------------------------


def test_spill_max_bytes_is_never_exceeded_and_the_oldest_are_dropped_and_counted(
    server, make_handler, tmp_path
):
    folder = str(tmp_path / "spill")
    cap = 24 * 1024
    n = 1500
    server.down()
    h = make_handler(
        server.url(),
        **spill_opts(folder, capacity=100, batch_max_records=5, spill_max_bytes=cap),
    )
    log = attach(h)
    noise = {i: " " + secrets.token_hex(60 + i % 50) for i in range(n)}  # barely compressible
    with FolderSampler(folder) as sampler:
        log_paced(log, h, "ev", 0, n, chunk=10, queue_max=50 + 4 * 5, extra=noise.__getitem__)
    st = h.stats()
    assert sampler.samples > 50, "the sampler should have seen the folder many times"
    assert sampler.highest <= cap, f"{sampler.highest} bytes on disk, cap {cap}"
    assert sf.folder_bytes(folder) <= cap
    assert st["dropped"] > 0 and st["spilled"] > 0, st
    check_identity(st)

    server.up()
    require_within(drained(h, folder), 20, "delivery after the endpoint came back")
    st = h.stats()
    got = numbers(server.events(), "ev")
    assert len(got) == len(set(got))
    assert len(got) + st["dropped"] == n, f"{len(got)} delivered, {st['dropped']} dropped"
    check_identity(st)
    # The oldest spilled events went: what is missing is one run, and the newest all arrived.
    missing = sorted(set(range(n)) - set(got))
    assert missing == list(range(missing[0], missing[-1] + 1))
    assert set(range(n - 50, n)) <= set(got)


# -- files, modes, folders -----------------------------------------------------------


def mode_of(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_spill_folder_is_0700_and_every_file_0600_whatever_the_umask(
    server, make_handler, tmp_path
):
    folder = str(tmp_path / "spill")
    os.makedirs(folder, mode=0o755)
    os.chmod(folder, 0o755)  # a folder someone made too open
    old_umask = os.umask(0)
    try:
        # A rejected batch goes to the dead-letter file in the folder.
        server.default = status(400, b"bad")
        h0 = make_handler(server.url(), **spill_opts(folder))
        attach(h0, "rejected").info("no")
        assert h0.flush(5) and h0.stats()["rejected"] == 1
        h0.close()
        # A spill file, released at close.
        server.default = status(503)
        h1 = make_handler(
            server.url(), **spill_opts(folder, batch_max_records=5, shutdown_timeout=0.5)
        )
        log = attach(h1)
        for i in range(15):
            log.info("ev %d", i)
        h1.close()
        assert h1.stats()["spilled"] == 15
        # Replay: the first frame is delivered (an ack file appears), the second hangs.
        server.default = status(201)
        server.then(status(201), STALL)
        start = server.arrivals
        h2 = make_handler(server.url(), **spill_opts(folder))
        # The pump writes the delivered frame's ack a moment after the answer.
        require_within(
            lambda: (
                server.arrivals >= start + 2
                and any(n.endswith(sf.ACK_SUFFIX) for n in os.listdir(folder))
            ),
            what="a delivered frame, acknowledged on disk, and a hung one",
        )
        names = os.listdir(folder)
        assert {dl.DEAD_LETTER_NAME, safe.LOCK_NAME} <= set(names)
        assert any(n.startswith("c-") and n.endswith(sf.SUFFIX) for n in names)
        assert mode_of(folder) == 0o700
        for n in names:
            assert mode_of(os.path.join(folder, n)) == 0o600, n
    finally:
        os.umask(old_umask)
        server.release.set()
    require_within(drained(h2, folder), what="the replay to finish")


# -- disks that fail ---------------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Any) -> Iterator[Callable[..., str | None]]:
    """Mount small tmpfs file systems (None when mounting is not permitted); unmount after."""
    mounted: list[str] = []

    def mount(size: str, name: str = "mnt") -> str | None:
        path = tmp_path / name
        path.mkdir()
        cmd = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)]
        try:
            r = subprocess.run(cmd, capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if r.returncode != 0:
            return None
        mounted.append(str(path))
        return str(path)

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", path], capture_output=True, timeout=10)


def test_a_read_only_disk_degrades_to_counted_drops_with_one_warning(server, make_handler, tmpfs):
    mnt = tmpfs("1m")
    if mnt is None:
        pytest.skip("mounting a tmpfs is not permitted here")
    folder = os.path.join(mnt, "spill")
    os.makedirs(folder)
    warnings = Warnings()
    server.down()
    # Writable when the handler is built (a read-only one is refused then);
    # the disk turns read-only under it.
    h = make_handler(server.url(), **spill_opts(folder, capacity=100, batch_max_records=10))
    r = subprocess.run(["mount", "-o", "remount,ro", mnt], capture_output=True, timeout=10)
    assert r.returncode == 0, r.stderr
    log = attach(h)
    log_paced(log, h, "ev", 0, 1000, chunk=10, queue_max=50 + 40)
    st = h.stats()
    assert st["emitted"] == 1000 and st["spilled"] == 0
    assert st["dropped"] > 0, st
    check_identity(st)
    assert len(warnings.about(folder)) == 1, warnings.messages
    assert "Read-only" in warnings.about(folder)[0]
    server.up()
    require_within(lambda: h.stats()["pending"] == 0, what="what memory held to be delivered")
    st = h.stats()
    assert len(server.uuids()) + st["dropped"] == 1000
    check_identity(st)


def test_a_spill_folder_that_vanishes_is_recreated_or_its_loss_counted(
    server, make_handler, tmp_path
):
    folder = str(tmp_path / "spill")
    warnings = Warnings()
    server.down()
    h = make_handler(
        server.url(),
        **spill_opts(folder, capacity=100, batch_max_records=10, shutdown_timeout=0.5),
    )
    log = attach(h)
    log_paced(log, h, "ev", 0, 500, chunk=10, queue_max=50 + 40)
    require(h.stats()["spilled"] > 300, h.stats())
    # The folder vanishes mid-run, at once (an rmtree alone could race the
    # worker creating a file in it), then its files are deleted.
    os.rename(folder, folder + ".gone")
    shutil.rmtree(folder + ".gone")
    log_paced(log, h, "ev", 500, 1000, chunk=10, queue_max=50 + 40)  # no exception
    server.up()
    # Whatever was spilled after the folder vanished is delivered, or counted as lost;
    # nothing stays "pending" forever.
    deadline = time.monotonic() + 5
    pause = threading.Event()
    while h.stats()["pending"] and time.monotonic() < deadline:
        pause.wait(0.01)
    st = h.stats()
    check_identity(st)
    got = numbers(server.events(), "ev")
    assert st["pending"] == 0, st
    assert len(set(got)) + st["dropped"] == 1000, st
    assert len(warnings.about(folder)) <= 1, warnings.messages
