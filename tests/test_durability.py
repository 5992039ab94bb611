"""``durability="crash"`` (SPEC section 5): a process killed with SIGKILL loses no event
whose log call returned; a restart replays what it left; full and read-only disks fall
back to memory durability, with one warning, counted.

The victims are real ``sys.executable`` processes running
``tests/spill_scripts/durable_child.py``, which appends each event's number to a report
file only after its log call returned; they are killed with SIGKILL at random points of
a 6,000-event stream, and every number up to the last reported must then arrive. Every
child is reaped; every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

import logship
from logship.pure import journal as jr
from logship.worker.spill import folder as sf
from logship.worker.spill import safefiles as safe

from conftest import attach, check_identity, require, require_within
from faultserver import FaultServer, delayed
from procs import REPO, Proc, child_env

SCRIPT = os.path.join(REPO, "tests", "spill_scripts", "durable_child.py")
COUNT = 6000
OPTS = {
    "durability": "crash",
    "batch_max_records": 50,
    "flush_interval": 0.05,
    "retry_max_backoff": 0.2,
    "timeout": 5.0,
    "shutdown_timeout": 1.0,
}


# -- helpers ---------------------------------------------------------------------------------


def child(tmp: Path, url: str, folder: str, **cfg: Any) -> tuple[Proc, Path]:
    """A durable_child.py streaming to ``url``, and its report file."""
    report = tmp / f"report-{random.randrange(1 << 30)}"
    config = {
        "url": url,
        "spill_dir": folder,
        "opts": {**OPTS, **cfg.pop("opts", {})},
        "count": COUNT,
        "rate": 4000,
        "pad": 200,  # ~330 bytes a record: the stream fills two and a half segments
        "report": str(report),
        "then": "hang",
        **cfg,
    }
    return Proc([sys.executable, SCRIPT, json.dumps(config)], env=child_env()), report


def returned(report: Path) -> int:
    """The last event whose log call returned, as the child reported it (-1: none)."""
    try:
        text = report.read_bytes().decode()
    except FileNotFoundError:
        return -1
    lines = text.split("\n")[:-1]  # a line without its newline is one being written
    return int(lines[-1]) if lines else -1


def arrived(server: FaultServer) -> dict[int, set[str]]:
    """Every event number delivered (answered 2xx), with the uuids it arrived under."""
    out: dict[int, set[str]] = defaultdict(set)
    for r in server.requests:
        if r.answered is not None and 200 <= r.answered < 300:
            for e in r.events:
                tag, _, rest = e["message"].partition(" ")
                if tag == "ev":
                    out[int(rest.split()[0])].add(e["uuid"])
    return out


def kill_at(p: Proc, report: Path, n: int, timeout: float = 30.0) -> int:
    """SIGKILL the child once event ``n`` returned; the last event that returned before."""
    require_within(
        lambda: returned(report) >= n or p.proc.poll() is not None, timeout, f"event {n}"
    )
    require(p.proc.poll() is None, p.describe())
    p.kill()  # SIGKILL, and reaped
    require(p.proc.returncode == -signal.SIGKILL, p.describe())
    return returned(report)


def regions(folder: str) -> list[sf.SpillFile]:
    return sf.list_files(folder, sf.REGION_SUFFIX)


def replay(
    make_handler: Callable[..., logship.ShipHandler], server: FaultServer, folder: str
) -> logship.ShipHandler:
    """A restart: a handler on ``folder`` takes over and delivers all it finds; returns it."""
    h = make_handler(server.url(), spill=True, spill_dir=folder)
    # has_regions reads names only: a segment renamed while the handler claims it is
    # never missed, as it can be by regions(), which stats each file it lists.
    require_within(
        lambda: not (sf.has_regions(folder) or sf.has_spilled(folder) or h.stats()["pending"]),
        30,
        "the restart to deliver what the folder held",
    )
    check_identity(h.stats())
    return h


# -- the option ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"durability": "disk"}, "must be one of ('memory', 'crash')"),
        ({"durability": "crash", "spill": False}, "it needs 'spill' True"),
        ({"durability": "crash", "spill_key": "00" * 32}, "cannot be combined with 'spill_key'"),
    ],
)
def test_the_option_is_checked_at_construction(options, words, tmp_path):
    if "spill_key" in options:
        pytest.importorskip("cryptography", reason="spill_key needs the encrypt extra")
    with pytest.raises(ValueError, match="durability") as e:
        logship.ShipHandler(url="http://127.0.0.1:9/x", spill_dir=str(tmp_path), **options)
    assert words in str(e.value)


# -- one process -----------------------------------------------------------------------------


def test_the_region_follows_the_events_and_goes_at_close(server, make_handler, tmp_path):
    folder = str(tmp_path / "spill")
    h = make_handler(server.url(), spill=True, spill_dir=folder, durability="crash")
    assert not regions(folder), "made on the first event, not at construction"
    log = attach(h)
    for i in range(3000):
        log.info("ev %d %s", i, "x" * 400)  # ~1.3 MB of records: more than one segment
    assert h.flush(10)
    # Delivered: the segments it filled go; the one being written and a spare stay.
    require_within(lambda: len(regions(folder)) <= 2, 10, "resolved segments deleted")
    assert {f.state for f in regions(folder)} == {"o"}
    st = h.stats()
    assert st["not_durable"] == 0 and st["shipped"] == 3000
    check_identity(st)
    h.close()
    assert not regions(folder) and not sf.has_spilled(folder)
    assert len({e["uuid"] for e in server.events()}) == 3000


def test_a_closing_handler_spills_and_leaves_no_region(server, make_handler, tmp_path):
    folder = str(tmp_path / "spill")
    server.down()
    h = make_handler(server.url(), spill=True, spill_dir=folder, durability="crash")
    log = attach(h)
    for i in range(500):
        log.info("ev %d", i)
    h.close()
    assert not regions(folder) and sf.has_spilled(folder)
    server.up()
    replay(make_handler, server, folder)
    assert sorted(arrived(server)) == list(range(500))


# -- kill -9 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("point", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("endpoint", ["slow", "down"])
def test_kill_9_loses_no_event_whose_log_call_returned(
    endpoint, point, server, make_handler, tmp_path, record_property
):
    folder = str(tmp_path / "spill")
    n = int(COUNT * point) + random.randrange(-250, 250)
    if endpoint == "slow":
        server.default = delayed(0.3)  # batches wait in the ring and in flight
    else:
        server.down()  # they go to the spill, but for those in memory
    p, report = child(tmp_path, server.url(), folder)
    with p:
        p.wait_for("STARTED")
        last = kill_at(p, report, n)
    require(regions(folder), "the victim left a region")
    server.default = delayed(0.0)
    if endpoint == "down":
        server.up()
    h = replay(make_handler, server, folder)
    got = arrived(server)
    missing = sorted(set(range(last + 1)) - set(got))
    record_property("kill9", {"killed_after": last, "missing": len(missing)})
    assert not missing, f"killed after event {last}: {len(missing)} lost, from {missing[:5]}"
    # An event sent before the kill and again from the region has one uuid: receivers
    # that drop duplicates drop it.
    assert all(len(uuids) == 1 for uuids in got.values())
    st = h.stats()
    # The kill may tear the one write each writing thread had under way: the caller's
    # record in the region (its call had not returned) and the worker's frame in the
    # spill (its events are still in the region). Each is one damaged stretch.
    assert st["adopted"] > 0 and st["corrupt"] <= 2, st


def test_without_crash_durability_the_same_kill_loses_events(server, make_handler, tmp_path):
    """The harness above sees loss: the default durability loses what memory holds."""
    folder = str(tmp_path / "spill")
    server.down()
    p, report = child(tmp_path, server.url(), folder, opts={"durability": "memory"})
    with p:
        p.wait_for("STARTED")
        last = kill_at(p, report, COUNT // 2)
    server.up()
    replay(make_handler, server, folder)
    lost = set(range(last + 1)) - set(arrived(server))
    assert len(lost) > 100, f"only {len(lost)} of {last + 1} lost"


def test_a_torn_last_record_is_skipped_and_counted(server, make_handler, tmp_path):
    folder = str(tmp_path / "spill")
    server.down()
    p, report = child(tmp_path, server.url(), folder, count=300, rate=0)
    with p:
        p.wait_for("LOGGED")
        last = kill_at(p, report, 299)
    # As if the kill had come while the last record was being copied: its tail never was.
    newest = writing(folder)
    data = bytearray(Path(newest.path).read_bytes())
    end = len(bytes(data).rstrip(b"\0"))
    data[end - 20 : end] = bytes(20)
    Path(newest.path).write_bytes(bytes(data))
    server.up()
    h = replay(make_handler, server, folder)
    assert h.stats()["corrupt"] == 1
    assert sorted(arrived(server)) == list(range(last))  # all but the torn one


def writing(folder: str) -> sf.SpillFile:
    """The segment that was being written: the one holding the highest sequence number."""
    best: tuple[int, sf.SpillFile] | None = None
    for f in regions(folder):
        records = jr.read_segment(Path(f.path).read_bytes()).records
        if records and (best is None or records[-1].seq > best[0]):
            best = (records[-1].seq, f)
    assert best is not None
    return best[1]


def test_two_restarts_at_once_deliver_each_dead_region_once(server, tmp_path):
    folder = str(tmp_path / "spill")
    server.down()
    # Three processes at once (a later one would adopt an earlier one's region), killed
    # while the folder lock, which every claim takes, is held: none adopts another's.
    with ExitStack() as stack:
        victims = [child(tmp_path, server.url(), folder, count=800, rate=0, pad=0) for _ in "abc"]
        for p, _report in victims:
            stack.enter_context(p)
            p.wait_for("LOGGED")
        with safe.folder_lock(folder):
            lasts = [kill_at(p, report, 799) for p, report in victims]
    require(len({f.owner for f in regions(folder)}) == 3, regions(folder))
    server.up()
    cfg = {"url": server.url(), "spill_dir": folder, "opts": OPTS, "count": 0, "report": "-"}
    with ExitStack() as stack:
        restarts = [
            stack.enter_context(Proc([sys.executable, SCRIPT, json.dumps(cfg)], env=child_env()))
            for _ in range(2)
        ]
        stats = [json.loads(r.wait_for(r"STATS (.*)", 40)[1]) for r in restarts]
        for r in restarts:
            assert r.wait(10) == 0, r.describe()
    events = [e for r in server.requests if r.answered == 201 for e in r.events]
    uuids = [e["uuid"] for e in events]
    assert len(uuids) == len(set(uuids)), "an event was sent twice"
    assert len(uuids) == sum(last + 1 for last in lasts)
    assert sum(s["adopted"] for s in stats) == len(uuids)
    for s in stats:
        check_identity(s)
    assert not regions(folder)


# -- fork: every gunicorn worker has its own region -----------------------------------------


@pytest.mark.parametrize("endpoint", ["slow", "down"])
def test_gunicorn_workers_killed_with_sigkill_lose_no_answered_request(
    endpoint, server, make_handler, tmp_path
):
    from test_gunicorn import Gunicorn

    url = server.url("/gunicorn")
    if endpoint == "slow":
        server.default = delayed(0.3)
    else:
        server.down()
    ship = {**OPTS, "shutdown_timeout": 1.0}
    g = Gunicorn(tmp_path, url, workers=2, preload=True, **ship)
    with g.proc:
        answered = g.load(60)  # each request logs before it is answered
        pids = set(answered.values())
        owners = {int(f.owner.split(".")[1]) for f in regions(str(g.spill))}
        assert pids <= owners, "each worker writes a region of its own"
        assert g.proc.pid in owners, "and the master, which logged before the fork"
        g.proc.kill()  # SIGKILL to the master and its workers, all reaped
    server.default = delayed(0.0)
    if endpoint == "down":
        server.up()
    h = make_handler(url, spill=True, spill_dir=str(g.spill))
    handled = lambda: {  # noqa: E731
        e.get("request_id") for e in server.events() if e["logger"] == "example.gunicorn"
    }
    require_within(lambda: set(answered) <= handled(), 30, "every answered request's event")
    require_within(lambda: h.stats()["pending"] == 0, 10, "the replay")
    check_identity(h.stats())
    by_id: dict[str, set[str]] = defaultdict(set)
    for e in server.events():
        if e["logger"] == "example.gunicorn" and "request_id" in e:
            by_id[e["request_id"]].add(e["uuid"])
    assert all(len(u) == 1 for u in by_id.values())
    # A dead worker's region that held no answered request's event (a spare it made
    # ahead, one whose events were all delivered before the kill) is claimed at the
    # handler's next look at the folder, which the waits above need not have reached.
    require_within(lambda: not sf.has_regions(str(g.spill)), 30, "every dead region taken over")


# -- disks that cannot hold a region --------------------------------------------------------------


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """``mount(size)``: a fresh tmpfs of ``size``; ``mount(size, ro=True)``: the last one,
    now read-only. Skips when mounting is not allowed here."""
    mounted: list[str] = []

    def make(size: str, ro: bool = False) -> str:
        if ro:
            mnt = Path(mounted[-1])
            args = ["mount", "-o", "remount,ro", str(mnt)]
        else:
            mnt = tmp_path / f"mnt{len(mounted)}"
            mnt.mkdir()
            args = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mnt)]
        try:
            r = subprocess.run(args, capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            pytest.skip(f"cannot mount a tmpfs here: {e}")
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
        if not ro:
            mounted.append(str(mnt))
        return str(mnt)

    yield make
    for path in mounted:
        subprocess.run(["umount", "-l", path], capture_output=True, timeout=10)


def go(p: Proc) -> None:
    """The line a waiting child waits for."""
    assert p.proc.stdin is not None
    p.proc.stdin.write(b"go\n")
    p.proc.stdin.flush()


def run_child(
    server: FaultServer, p: Proc, before: Callable[[], object] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Let a ``then="drain"`` child log, then drain; its stats after each.

    ``before``: for a child that holds, what to do once its handler is built.
    """
    with p:
        if before is not None:
            p.wait_for("STARTED")
            before()
            go(p)
        logged = json.loads(p.wait_for(r"LOGGED (.*)", 60)[1])
        if server._httpd is None:  # down
            server.up()
        go(p)
        drained = json.loads(p.wait_for(r"STATS (.*)", 60)[1])
        code = p.wait(20)
    assert code == 0, p.describe()  # alive to the end: never a SIGBUS
    assert "Traceback" not in p.stderr and "Logging error" not in p.stderr, p.stderr
    return logged, drained


def about_the_region(stats: dict[str, Any]) -> list[str]:
    return [m for m in stats["warnings"] if "durability='crash'" in m]


@pytest.mark.parametrize("kind", ["tmpfs", "fsize", "read-only"])
def test_a_disk_that_cannot_hold_the_region_falls_back_to_memory(kind, server, tmp_path, mount):
    before: Callable[[], object] | None = None
    if kind == "tmpfs":
        folder, more = mount("64k"), {}  # a segment takes 1 MiB
    elif kind == "fsize":
        folder, more = str(tmp_path / "spill"), {"fsize": 16 * 1024}
    else:  # writable when the handler is built (or the option is refused), then not
        folder, more = mount("4m"), {"hold": True}
        before = lambda: mount("4m", ro=True)  # noqa: E731
    p, _ = child(tmp_path, server.url(), folder, count=300, rate=0, then="drain", **more)
    logged, drained = run_child(server, p, before)
    said = about_the_region(drained)
    assert len(said) == 1, drained["warnings"]
    # Every event was kept in memory only, and counted so; all were delivered.
    assert logged["not_durable"] == 300 and drained["shipped"] == 300, drained
    check_identity(logged)
    check_identity(drained)
    assert not regions(folder)


def test_a_disk_that_fills_under_a_mapped_region_never_kills_the_process(server, tmp_path, mount):
    """Two segments fit (their blocks reserved when made); the spill fills the rest."""
    folder = mount("2304k")
    server.down()
    p, _ = child(
        tmp_path,
        server.url(),
        folder,
        count=20_000,
        rate=20_000,
        then="drain",
        opts={"capacity": 2000},
    )
    logged, drained = run_child(server, p)
    assert logged["not_durable"] > 0, logged  # the region went off when no segment fitted
    assert len(about_the_region(drained)) == 1, drained["warnings"]
    check_identity(logged)
    check_identity(drained)
    # Nothing silent: every event was delivered or counted as dropped.
    assert drained["pending"] == 0 and drained["emitted"] == 20_000
    assert len(arrived(server)) + drained["dropped"] == 20_000, drained


def test_every_handler_has_the_key(tmp_path):
    h = logship.ShipHandler(url="http://127.0.0.1:9/x", spill=False)
    try:
        assert h.stats()["not_durable"] == 0
    finally:
        h.close()


def test_logship_spill_sees_replays_and_purges_what_a_dead_region_holds(server, tmp_path):
    def spill_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "logship", "spill", *args, "--dir", folder],
            env=child_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )

    folder = str(tmp_path / "spill")
    server.down()
    for run in range(2):
        p, report = child(tmp_path, server.url(), folder, count=300, rate=0, pad=0)
        with p:
            p.wait_for("LOGGED")
            last = kill_at(p, report, 299)
        status = spill_cli("status")
        assert status.returncode == 0, status.stderr
        assert f"spilled       {last + 1} events" in status.stdout, status.stdout
        assert "left by processes that died (durability='crash')" in status.stdout
        if run == 0:
            server.up()
            replayed = spill_cli("replay")
            assert replayed.returncode == 0, replayed.stdout + replayed.stderr
            assert sorted(arrived(server)) == list(range(300))
            assert not regions(folder)
            server.down()
        else:
            purged = spill_cli("purge", "--yes")
            assert purged.returncode == 0 and not regions(folder), purged.stdout


def test_a_restart_whose_disk_fills_while_adopting_resumes_where_it_stopped(
    server, make_handler, tmp_path, mount
):
    """The victim's two segments take 2 MiB of 2.25: its events do not fit the spill at once."""
    folder = mount("2304k")
    server.down()
    p, report = child(tmp_path, server.url(), folder, count=2500, rate=0)
    with p:
        p.wait_for("LOGGED")
        last = kill_at(p, report, 2499)
    from test_spill_processes import collect_logship_warnings

    server.up()
    warned = collect_logship_warnings()
    h = make_handler(server.url(), spill=True, spill_dir=folder, batch_max_records=50)
    require_within(
        lambda: not (sf.has_regions(folder) or sf.has_spilled(folder) or h.stats()["pending"]),
        60,
        "the restart to take everything over and deliver it",
    )
    require(any("cannot take over a region" in m for m in warned), warned)  # it did fill
    got = arrived(server)
    assert sorted(got) == list(range(last + 1))
    uuids = [e["uuid"] for e in server.events()]
    assert len(uuids) == len(set(uuids)), "a record written before the disk filled went twice"
    st = h.stats()
    assert st["adopted"] == st["replayed"] == last + 1, st
    check_identity(st)


def test_a_log_call_made_while_the_first_segment_is_made_does_not_deadlock(
    server, make_handler, tmp_path, monkeypatch
):
    """A signal handler or a __del__ may log while its thread makes the region's first
    segment, inside the first log call: it must not wait for itself."""
    from logship.worker.spill import region

    h = make_handler(server.url(), spill=True, spill_dir=str(tmp_path), durability="crash")
    log = attach(h)
    real, said = region.make_segment, []

    def make_segment(*args: Any, **kwargs: Any) -> Any:
        if not said:
            said.append(True)
            log.info("ev from inside")
        return real(*args, **kwargs)

    monkeypatch.setattr(region, "make_segment", make_segment)
    t = threading.Thread(target=log.info, args=("ev first",), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "the nested log call waited for its own thread"
    assert h.flush(10)
    assert {e["message"] for e in server.events()} == {"ev first", "ev from inside"}
    check_identity(h.stats())
