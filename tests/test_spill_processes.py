"""The spill across processes (SPEC sections 5 and 6): exits, kill -9, shared folders,
adoption, the default folder, and disks that fill up.

Every process is a real ``sys.executable`` running ``tests/spill_scripts/child.py``
importing the installed logship; every wait has a deadline, and every child
still running at the end of a test is killed.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import platformdirs
import pytest

from logship.cli import spillinspect as si
from logship.pure import frames as fr
from logship.worker.spill import folder as sf
from logship.worker.spill import safefiles as safe

from conftest import check_identity, require, require_within
from faultserver import FaultServer, Request
from procs import REPO, child_env

SCRIPTS = os.path.join(REPO, "tests", "spill_scripts")

# Small and fast: a ring of 200 events, batches of 20.
CAPACITY, BATCH = 200, 20
OPTS = {
    "capacity": CAPACITY,
    "batch_max_records": BATCH,
    "flush_interval": 0.05,
    "retry_max_backoff": 0.2,
    "timeout": 5.0,
    "shutdown_timeout": 1.0,
}


# -- helpers -------------------------------------------------------------------


class Child:
    """A script of tests/spill_scripts in a subprocess; its stdout lines collected by a thread."""

    def __init__(self, script: str, *args: str, env: dict[str, str] | None = None):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(SCRIPTS, script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env or child_env(),
        )
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self.stderr = ""
        self._cond = threading.Condition()
        self._eof = False
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            if not raw.endswith(b"\n"):
                break  # the last line, cut short by a kill: it says nothing for sure
            with self._cond:
                self.lines.append(raw.decode().rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read().decode(errors="replace")

    def line(self, prefix: str, timeout: float = 15.0) -> str:
        """The first line starting with ``prefix``, waiting for it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ln in self.lines:
                    if ln.startswith(prefix + " ") or ln == prefix:
                        return ln
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    break
                self._cond.wait(min(remaining, 0.1))
        self.proc.kill()
        pytest.fail(f"no {prefix!r} line from pid {self.pid}: {self.lines[-3:]} {self.stderr}")

    def stats(self, prefix: str, timeout: float = 15.0) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.line(prefix, timeout).split(" ", 1)[1])
        return data

    def last_emitted(self) -> int:
        with self._cond:
            emitted = [int(ln[8:]) for ln in self.lines if re.fullmatch(r"EMITTED \d+", ln)]
        return max(emitted, default=-1)

    def send(self, text: str = "go") -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 15.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"pid {self.pid} did not exit within {timeout} s")

    def kill9(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(10)  # reaped: no zombie that still looks alive

    def ended(self) -> bool:
        """Whether its stdout is closed (all its reports are in)."""
        with self._cond:
            return self._eof

    def running(self) -> bool:
        return self.proc.poll() is None


@pytest.fixture
def spawn() -> Iterator[Callable[..., Child]]:
    """Start ``child.py MODE CONFIG``, or another script; kill what still runs at the end."""
    children: list[Child] = []

    def start(
        mode: str, cfg: dict[str, Any] | None = None, env: dict[str, str] | None = None
    ) -> Child:
        if mode.endswith(".py"):  # another script; ``cfg`` holds its arguments
            c = Child(mode, *(cfg or {}).get("args", ()), env=env)
        else:
            c = Child("child.py", mode, json.dumps(cfg), env=env)
        children.append(c)
        return c

    yield start
    for c in children:
        if c.running():
            c.proc.kill()
        c.proc.wait(10)
        for pipe in (c.proc.stdin, c.proc.stdout, c.proc.stderr):
            if pipe is not None:
                pipe.close()


def numbers(requests: list[Request], tag: str) -> list[int]:
    """N of every delivered event ``"TAG N"``."""
    out = []
    for r in requests:
        if r.answered is not None and 200 <= r.answered < 300:
            for e in r.events:
                t, _, n = e["message"].partition(" ")
                if t == tag:
                    out.append(int(n.split()[0]))
    return out


def events_on_disk(folder: str, pid: int | None = None) -> int:
    """Events in the folder's spill files (of one process when ``pid`` is given)."""
    total = 0
    for f in sf.list_files(folder):
        if pid is not None and int(f.owner.split(".")[1]) != pid:
            continue
        for _offset, batch in sf.spill_frames(f.path, sf.read_acks(f.ack_path)):
            if batch is not None:
                total += batch.n
    return total


def assert_one_writer_per_file(folder: str) -> set[int]:
    """Every event in a file its owner writes (``o``) was logged by that owner's process.

    Returns the pids of the owners whose files were checked.
    """
    checked: set[int] = set()
    for f in sf.list_files(folder):
        if f.state != "o":
            continue
        owner_pid = int(f.owner.split(".")[1])
        try:
            with open(f.path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            continue  # claimed meanwhile
        for _offset, payload in fr.iter_frames(data):
            if payload is None or "body" not in payload:
                continue  # the header, or a frame still being appended
            raw = gzip.decompress(payload["body"]) if payload.get("gz") else payload["body"]
            pids = {e["pid"] for e in json.loads(raw)}
            assert pids == {owner_pid}, f"{f.path} holds events of {pids}"
        checked.add(owner_pid)
    return checked


def each_writes_alone(folder: str, pids: set[int], what: str) -> None:
    """Wait until each of ``pids`` is seen writing a file of its own, checking every file seen.

    (A file can be sealed and renamed between listing the folder and reading
    it: then it is looked at again on the next round.)
    """
    seen: set[int] = set()

    def all_seen() -> bool:
        seen.update(assert_one_writer_per_file(folder))
        return pids <= seen

    require_within(all_seen, 10, what)


class TrackingServer(FaultServer):
    """A FaultServer that records which Idempotency-Keys are being handled at any moment.

    A request counts as in flight from the moment its headers are read until
    the server decides its answer (before a byte of it is sent), so a client
    can never legitimately start the same key again inside that window; a
    second start of a key still in flight is recorded in ``overlaps``.

    ``down()`` also cuts kept-alive connections (a stopped listener alone
    would keep serving them) and refuses any request still arriving on one.
    Paths in ``unavailable`` are answered 503 (without being recorded).
    """

    def __init__(self) -> None:
        super().__init__()
        self.offline = False
        self.unavailable: set[str] = set()
        self.in_flight: dict[str, int] = {}
        self.overlaps: list[str] = []
        self.starts = 0
        self._local = threading.local()
        self._conns: set[socket.socket] = set()

    def _begin(self, key: str) -> None:
        with self.cond:
            n = self.in_flight.get(key, 0) + 1
            self.in_flight[key] = n
            self.starts += 1
            if n > 1:
                self.overlaps.append(key)
        self._local.key = key

    def _end(self) -> None:
        key = getattr(self._local, "key", None)
        if key is None:
            return
        self._local.key = None
        with self.cond:
            self.in_flight[key] -= 1

    def _handle(self, h: Any) -> None:
        with self.cond:
            self._conns.add(h.connection)
        if self.offline:
            self.hang_up(h)
            return
        if h.path in self.unavailable:
            h.rfile.read(int(h.headers.get("Content-Length") or 0))
            h.send_response(503)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        self._begin(h.headers.get("Idempotency-Key", ""))
        try:
            super()._handle(h)
        finally:
            self._end()

    def _record(self, request: Request) -> None:
        self._end()  # the answer is decided: from here the client may try again
        super()._record(request)

    def down(self) -> None:
        self.offline = True
        self.stop()
        with self.cond:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def up(self) -> TrackingServer:
        self.offline = False
        self.start()
        return self


@pytest.fixture
def tracking() -> Iterator[TrackingServer]:
    srv = TrackingServer()
    srv.start()
    yield srv
    srv.offline = False
    srv.stop()


def cfg(url: str, folder: str | None, tag: str, **more: Any) -> dict[str, Any]:
    """A child's configuration: OPTS with ``opts`` on top.

    After each chunk of 10 the child waits until at most half its ring plus
    the batches it may hold in memory are queued, so it never overruns the
    ring: the worker has to move events on (to the sender or the disk) first.
    """
    opts = {**OPTS, **more.pop("opts", {})}
    return {
        "url": url,
        "spill_dir": folder,
        "opts": opts,
        "tag": tag,
        "chunk": 10,
        "queue_max": opts["capacity"] // 2 + 4 * opts["batch_max_records"],
        **more,
    }


# -- exits ---------------------------------------------------------------------


def test_graceful_exit_with_the_endpoint_down_spills_everything_for_the_next_process(
    server, spawn, tmp_path
):
    folder = str(tmp_path / "spill")
    n, shutdown_timeout = 150, 1.0  # n <= capacity: all of it is in memory at exit
    server.down()
    first = spawn("burst", cfg(server.url(), folder, "ev", count=n, then="exit"))
    logged = first.stats("LOGGED")
    t0 = time.monotonic()
    assert logged["emitted"] == n and logged["dropped"] == 0
    assert first.finish(10) == 0, first.stderr
    took = time.monotonic() - t0
    # logging.shutdown's flush and close share shutdown_timeout; the rest is the
    # interpreter's own teardown.
    assert took < shutdown_timeout + 1.0, f"exit took {took:.2f} s"
    assert "Traceback" not in first.stderr
    assert events_on_disk(folder) == n
    assert {f.state for f in sf.list_files(folder)} == {"r"}

    server.up()
    second = spawn("replay", cfg(server.url(), folder, "none"))
    st = second.stats("STATS")
    assert second.finish() == 0, second.stderr
    assert st["ok"] and st["adopted"] == n and st["replayed"] == n, st
    got = numbers(server.requests, "ev")
    assert sorted(set(got)) == list(range(n)), "every event of the first process arrives"
    assert len({e["uuid"] for e in server.events()}) == n
    assert events_on_disk(folder) == 0


FRESH_PROCESS = """
import logging, sys
import logship
h = logship.ShipHandler(
    url=sys.argv[1], spill_dir=sys.argv[2], batch_max_records=10, flush_interval=0.05,
    retry_max_backoff=0.2, shutdown_timeout=0.5,
)
loaded = "filelock" in sys.modules
log = logging.getLogger("fresh")
log.addHandler(h)
log.setLevel(logging.INFO)
log.propagate = False
for i in range(40):
    log.info("ev %d", i)
h.close()
print(loaded, h.stats()["spilled"], h.stats()["dropped"])
"""


def test_a_fresh_process_spills_at_close_with_a_short_shutdown_timeout(refused_url, tmp_path):
    # The first spill comes at close: the lock's module, loaded with the handler,
    # costs nothing of the 0.1 s kept for writing to disk.
    folder = str(tmp_path / "spill")
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, refused_url, folder],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "40", "0"], done.stderr
    assert events_on_disk(folder) == 40


def test_kill_9_mid_stream_loses_at_most_what_was_in_memory(
    server, spawn, tmp_path, record_property
):
    folder = str(tmp_path / "spill")
    server.down()
    victim = spawn("stream", cfg(server.url(), folder, "ev", rate=20000))
    # Kill it once a good part of what it logged is on disk.
    require_within(lambda: sf.folder_bytes(folder) >= 40_000, 15, "the victim to spill 40 kB")
    victim.kill9()
    require_within(victim.ended, 5, "the victim's last report")
    last = victim.last_emitted()  # every event up to this one was logged before the kill
    on_disk = events_on_disk(folder)
    assert last > 0 and on_disk > 0

    server.up()
    restart = spawn("replay", cfg(server.url(), folder, "none"))
    st = restart.stats("STATS", 30)
    assert restart.finish() == 0, restart.stderr
    assert st["ok"] and st["adopted"] == on_disk, st
    got = set(numbers(server.requests, "ev"))
    received = len({i for i in got if i <= last})
    loss = last + 1 - received
    bound = CAPACITY + 4 * BATCH
    print(
        f"\nkill -9: logged {last + 1} (reported), on disk {on_disk}, "
        f"received {received}, lost {loss} (bound {bound})"
    )
    record_property("kill9_loss", loss)
    assert 0 <= loss <= bound, f"lost {loss} events of {last + 1}; bound {bound}"
    assert events_on_disk(folder) == 0


# -- one folder, several processes ---------------------------------------------------


def test_two_processes_share_one_folder_while_the_endpoint_flaps(tracking, spawn, tmp_path):
    folder = str(tmp_path / "shared")
    server = tracking
    # 1,000 events a second each, in batches of 20: a rate the two keep up with
    # while they replay, even on a busy two-core machine (at 3,000 each, with
    # another test running beside, the backlog could grow for good).
    a = spawn("stream", cfg(server.url(), folder, "A", rate=1000, flush_timeout=0.5))
    b = spawn("stream", cfg(server.url(), folder, "B", rate=1000, drain=True, flush_timeout=20))
    both = {a.pid, b.pid}
    require_within(lambda: a.last_emitted() > 0 and b.last_emitted() > 0, 15, "both to log")

    for cycle in range(3):
        server.down()
        each_writes_alone(folder, both, f"both to spill ({cycle})")
        spilled = {f.id for f in sf.list_files(folder)}
        server.up()
        require_within(
            lambda s=spilled: not s & {f.id for f in sf.list_files(folder)},
            10,
            f"both to replay their files ({cycle})",
        )

    # A exits while the endpoint is down: what it holds is spilled and released.
    server.down()
    each_writes_alone(folder, both, "both to spill")
    a.send("stop")
    last_a = int(a.line("STOPPED").split()[1])
    a.stats("STATS")
    assert a.finish() == 0, a.stderr
    assert any(f.state == "r" for f in sf.list_files(folder))
    # B, still running, takes A's files over once the endpoint is back.
    server.up()
    b.send("stop")
    last_b = int(b.line("STOPPED").split()[1])
    st_b = b.stats("STATS", 30)
    assert b.finish() == 0, b.stderr
    assert st_b["ok"] and st_b["dropped"] == 0 and st_b["adopted"] > 0, st_b

    got_a, got_b = numbers(server.requests, "A"), numbers(server.requests, "B")
    assert set(range(last_a + 1)) <= set(got_a), "every event of A arrives"
    assert set(range(last_b + 1)) <= set(got_b), "every event of B arrives"
    assert not server.overlaps, f"keys in flight twice at once: {server.overlaps[:5]}"
    assert server.starts > 100
    by_key: dict[str, set[str]] = {}
    for r in server.requests:
        uuids = frozenset(e["uuid"] for e in r.events)
        by_key.setdefault(r.headers["Idempotency-Key"], set()).add(str(sorted(uuids)))
    assert all(len(v) == 1 for v in by_key.values()), "a key always carries the same events"
    assert events_on_disk(folder) == 0 and not sf.has_spilled(folder)


def folder_size(folder: str) -> int | None:
    """The folder's total size, or None when a file vanished while it was being measured.

    Spill and ack files only grow until they are renamed or deleted, so when
    every file counted still exists afterwards, the sum is a lower bound of
    the folder's size at the moment of the last ``stat``.
    """
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    sizes = {}
    for n in names:
        try:
            sizes[n] = os.stat(os.path.join(folder, n)).st_size
        except FileNotFoundError:
            pass
    if not all(os.path.exists(os.path.join(folder, n)) for n in sizes):
        return None
    return sum(sizes.values())


def test_spill_max_bytes_holds_for_processes_sharing_a_folder(server, spawn, tmp_path):
    folder = str(tmp_path / "shared")
    cap = 32 * 1024
    server.down()
    opts = {"capacity": 100, "batch_max_records": 5, "spill_max_bytes": cap}
    kids = [
        spawn(
            "stream",
            cfg(server.url(), folder, tag, opts=opts, rate=20000, pad=200, flush_timeout=0.1),
        )
        for tag in "AB"
    ]
    highest = samples = 0
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline and highest <= cap:
        size = folder_size(folder)
        if size is not None:
            samples += 1
            highest = max(highest, size)
    for k in kids:
        k.send("stop")
    for k in kids:
        k.stats("STATS")
        require(k.finish() == 0, k.stderr)
    require(samples > 1000 and highest > cap * 0.9, (samples, highest))
    assert highest <= cap, f"{highest} bytes in a folder capped at {cap}"


def test_a_dead_processs_files_are_adopted_and_a_live_ones_are_not(
    tracking, spawn, make_handler, tmp_path
):
    folder = str(tmp_path / "shared")
    server = tracking
    server.unavailable = {"/held", "/dead"}
    live = spawn(
        "burst",
        cfg(server.url("/held"), folder, "L", count=400, then="hold", spilled_min=150),
    )
    live.stats("SPILLED")
    dead = spawn(
        "burst",
        cfg(server.url("/dead"), folder, "D", count=400, then="die", spilled_min=150),
    )
    dead.stats("SPILLED")
    assert dead.finish() == 0, dead.stderr  # gone without closing its handler
    dead_on_disk = events_on_disk(folder, dead.pid)
    assert dead_on_disk >= 150
    assert {f.state for f in sf.list_files(folder)} == {"o"}

    h = make_handler(server.url("/app"), spill=True, spill_dir=folder)
    require_within(lambda: events_on_disk(folder, dead.pid) == 0, 10, "the dead process's files")
    require_within(lambda: len(numbers(server.requests, "D")) >= dead_on_disk, 10, "D's events")
    assert sorted(set(numbers(server.requests, "D"))) == sorted(numbers(server.requests, "D"))
    assert len(numbers(server.requests, "D")) == dead_on_disk
    # The live process's files were passed over (they are older: every scan saw them first).
    assert numbers(server.requests, "L") == []
    assert events_on_disk(folder, live.pid) >= 150
    # The adopted file is deleted once the last answer is acknowledged, just after
    # the server counted it.
    require_within(
        lambda: all(f.state == "o" for f in sf.list_files(folder)), 10, "the adopted file deleted"
    )
    assert h.stats()["adopted"] == dead_on_disk

    # Once it dies, its files are free. (Holding the folder lock, which every claim
    # takes, while it dies and its files are counted: none can be claimed meanwhile.)
    with safe.folder_lock(folder):
        live.kill9()
        live_on_disk = events_on_disk(folder, live.pid)
    require_within(lambda: events_on_disk(folder) == 0, 10, "the dead live process's files")
    require_within(lambda: h.stats()["pending"] == 0, 10, "delivery")
    assert len(set(numbers(server.requests, "L"))) == live_on_disk
    st = h.stats()
    assert st["adopted"] == st["replayed"] == dead_on_disk + live_on_disk, st
    check_identity(st)


def test_owner_liveness_checks_the_pid_and_its_start_time():
    host = sf._HOST
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        started = sf._start_time(sleeper.pid)
        assert started > 0
        now = time.time()
        alive = f"{host}.{sleeper.pid}.{started}.0badcafe"
        reused = f"{host}.{sleeper.pid}.{started + 1}.0badcafe"  # same pid, another process
        assert sf.owner_alive(alive, set(), now)
        assert not sf.owner_alive(reused, set(), now)
    finally:
        sleeper.communicate(timeout=10)
    assert not sf.owner_alive(f"{host}.{sleeper.pid}.{started}.0badcafe", set(), now)
    # This process: a handler's files are its own while it is open, free once closed.
    me = sf.new_owner()
    assert sf.owner_alive(me, {me}, now) and not sf.owner_alive(me, set(), now)
    # Another host's files are left alone until they are an hour stale.
    other = f"ffffffff.{os.getpid()}.1.0badcafe"
    assert sf.owner_alive(other, set(), now) and not sf.owner_alive(other, set(), now - 7200)
    assert not sf.owner_alive("not-an-owner", set(), now)


def test_the_folder_lock_guards_every_claim(server, spawn, make_handler, tmp_path):
    folder = str(tmp_path / "spill")
    server.down()
    writer = spawn("burst", cfg(server.url(), folder, "ev", count=100, then="exit"))
    assert writer.finish() == 0, writer.stderr
    assert events_on_disk(folder) == 100
    server.up()

    holder = spawn("hold_lock.py", {"args": [folder]})
    holder.line("locked")
    warnings = collect_logship_warnings()
    h = make_handler(server.url(), spill=True, spill_dir=folder)
    # The replay cannot claim the file while another process holds the lock.
    require_within(
        lambda: any("cannot read the spill folder" in m for m in warnings),
        safe.LOCK_TIMEOUT + 5,
        "the claim to give up on the lock",
    )
    assert {f.state for f in sf.list_files(folder)} == {"r"}
    assert server.requests == [] and h.stats()["adopted"] == 0
    holder.send("release")
    holder.line("released")
    require_within(lambda: h.stats()["replayed"] == 100, 10, "the replay once the lock is free")
    assert sorted(numbers(server.requests, "ev")) == list(range(100))


def collect_logship_warnings() -> list[str]:
    """What the ``logship`` logger says from now on (its handlers are restored after the test)."""
    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logging.getLogger("logship").addHandler(Keep(logging.WARNING))
    return messages


# -- the default folder ----------------------------------------------------------------


@pytest.mark.parametrize("via", ["XDG_CACHE_HOME", "HOME"])
def test_the_default_folder_is_per_endpoint_under_the_user_cache_dir(
    via, spawn, refused_url, tmp_path, monkeypatch
):
    home = tmp_path / "home"
    home.mkdir()
    env = child_env(HOME=str(home))
    env.pop("XDG_CACHE_HOME", None)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    if via == "XDG_CACHE_HOME":
        env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    expected = os.path.join(platformdirs.user_cache_dir("logship"), sf.endpoint_slug(refused_url))
    assert expected.startswith(str(tmp_path))

    c = spawn("burst", cfg(refused_url, None, "ev", count=50, then="exit"), env=env)
    assert c.finish() == 0, c.stderr
    assert os.path.isdir(expected)
    assert stat.S_IMODE(os.stat(expected).st_mode) == 0o700
    assert events_on_disk(expected) == 50
    assert si.summarize(expected, set()).url == refused_url
    # Another endpoint gets another folder.
    assert sf.endpoint_slug(refused_url + "x") != sf.endpoint_slug(refused_url)
    assert os.listdir(os.path.dirname(expected)) == [os.path.basename(expected)]


# -- full disks ---------------------------------------------------------------------------


@pytest.fixture
def full_disk(tmp_path: Any) -> Iterator[Callable[[str], tuple[str, int | None]]]:
    """A spill folder on a disk that fills up: a 64 KiB tmpfs, or else RLIMIT_FSIZE.

    Returns ``(folder, fsize)``: ``fsize`` is None for the tmpfs, or the
    per-file size limit the child must set on itself when mounting is not
    permitted here.
    """
    mounted: list[str] = []

    def make(kind: str) -> tuple[str, int | None]:
        if kind == "tmpfs":
            mnt = tmp_path / "mnt"
            mnt.mkdir()
            cmd = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)]
            try:
                r = subprocess.run(cmd, capture_output=True, timeout=10)
                ok = r.returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
            if ok:
                mounted.append(str(mnt))
                return str(mnt / "spill"), None
        return str(tmp_path / "spill"), 16 * 1024

    yield make
    for path in mounted:
        subprocess.run(["umount", "-l", path], capture_output=True, timeout=10)


def run_on_full_disk(
    server: FaultServer,
    spawn: Callable[..., Child],
    folder: str,
    fsize: int | None,
    drain_timeout: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A child logs 1,500 events with the endpoint down onto a full disk, then drains.

    Returns its stats after logging and after draining (or giving up on it).
    """
    server.down()
    more: dict[str, Any] = {"count": 1500, "then": "drain", "timeout": drain_timeout}
    more["pad"] = 200  # 1,500 events of ~250 barely compressible bytes: more than 64 KiB
    opts = {"capacity": 100, "batch_max_records": 10}
    if fsize is not None:
        more["fsize"] = fsize
    c = spawn("fsize" if fsize else "burst", cfg(server.url(), folder, "ev", opts=opts, **more))
    logged = c.stats("LOGGED")
    server.up()
    c.send("go")
    drained = c.stats("STATS", drain_timeout + 10)
    require(c.finish() == 0, c.stderr)
    # Nothing reached the application: no traceback, no logging error report.
    require("Traceback" not in c.stderr and "Logging error" not in c.stderr, c.stderr)
    require(logged["emitted"] == 1500, logged)
    return logged, drained


@pytest.mark.parametrize("kind", ["tmpfs", "fsize"])
def test_a_full_disk_degrades_to_counted_drops_with_one_warning(kind, server, spawn, full_disk):
    folder, fsize = full_disk(kind)
    logged, drained = run_on_full_disk(server, spawn, folder, fsize, 1.0)
    # Logging went on; what neither memory nor disk could hold is counted.
    assert logged["spilled"] > 0 and logged["dropped"] > 0, logged
    check_identity(logged)
    about_disk = [m for m in drained["warnings"] if "spill folder" in m]
    assert len(about_disk) == 1, drained["warnings"]
    assert ("No space left" in about_disk[0]) or ("too large" in about_disk[0])
    # And the handler still delivers once the endpoint is back.
    assert drained["shipped"] > 0 and drained["replayed"] > 0, drained
    check_identity(drained)


@pytest.mark.parametrize("kind", ["tmpfs", "fsize"])
def test_a_full_disk_loses_no_event_silently(kind, server, spawn, full_disk):
    folder, fsize = full_disk(kind)
    logged, drained = run_on_full_disk(server, spawn, folder, fsize, 3.0)
    require(logged["spilled"] > 0 and logged["dropped"] > 0, logged)
    got = set(numbers(server.requests, "ev"))
    assert drained["pending"] == 0, drained
    assert len(got) + drained["dropped"] == 1500, drained
    assert drained["corrupt"] == 0, drained
