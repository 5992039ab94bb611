"""A fleet of three real Fluent Bit nodes, behind a real HAProxy or named to the handler.

See docs/scaling.md; the fleet itself is tests/fleet.py.

A handler ships a steady stream, timing every log call, while one node is
killed with SIGKILL and later started again on its port and storage, through
HAProxy and with the three URLs given to the handler (failover, round robin);
then while all three are down for 10 s. Then:

- every event arrived: each ``seq`` the stream logged was written by some node;
- an event sent twice kept its ``uuid`` (one uuid per ``seq``), so it can be
  dropped downstream;
- only what was in flight at the kill was written twice: a duplicate is an
  event the killed node held in its storage, taken and not yet written out,
  when it died (the batch it was taking, and those it had acknowledged but not
  yet flushed), and there are at most as many as those batches hold;
- no log call waited on the network: the slowest is far below any timeout;
- with every node down, the handler spilled, and once they were back the
  spill drained.

Eight gunicorn workers then ship through HAProxy at a steady rate for 30 s:
every request's event is written exactly once. The tests print what they
measured (pytest's summary, "figures measured").
"""

from __future__ import annotations

import math
import re
import statistics
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

import logship

from conftest import attach, check_identity, require_within
from fleet import HAPROXY_CONFIG, Fleet, haproxy_binary
from fluentbit import binary
from gunicornapp import Gunicorn

#: Events per second of the stream, logged 10 at a time every 10 ms.
RATE = 1000
TICK = 0.01
BATCH = 50  # batch_max_records: a batch is 50 ms of the stream
#: No log call may take this long. The handler's timeout is 5 s and HAProxy's
#: shortest is 1 s (connect): a call that waited on any of them would show.
#: Half of that leaves room for a busy machine's scheduler, which has held a
#: logging thread for a quarter of a second while three nodes, HAProxy and
#: four test processes shared two cores.
CALL_BOUND = 0.5


class Stream:
    """``RATE`` events a second, each with its ``seq``, on a thread of its own; each call timed."""

    def __init__(self, log: Any, rate: int = RATE) -> None:
        self.log, self.rate = log, rate
        self.logged = 0  # events logged so far; the next one's seq
        self.calls: list[float] = []  # seconds each call took
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream", daemon=True)

    def start(self) -> Stream:
        self._thread.start()
        return self

    def _run(self) -> None:
        per_tick, start = max(1, round(self.rate * TICK)), time.monotonic()
        tick = 0
        while not self._stop.is_set():
            for _ in range(per_tick):
                began = time.perf_counter()
                self.log.info("event %d", self.logged, extra={"seq": self.logged})
                self.calls.append(time.perf_counter() - began)
                self.logged += 1
            tick += 1
            # Paced from the start: a late tick is followed by a short wait, not a drift.
            self._stop.wait(max(0.0, start + tick * TICK - time.monotonic()))

    def stop(self) -> int:
        """Stop logging; the number of events logged."""
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), "the stream's thread is stuck in a log call"
        return self.logged

    def summary(self) -> str:
        calls = sorted(self.calls)
        p99 = calls[int(0.99 * (len(calls) - 1))]
        return (
            f"{len(calls)} calls: median {statistics.median(calls) * 1e6:.0f} µs, "
            f"p99 {p99 * 1e6:.0f} µs, max {calls[-1] * 1e3:.1f} ms"
        )


def batches_holding(seqs: Iterable[int], batch: int) -> int:
    """How many batches of at most ``batch`` consecutive events ``seqs`` take at least.

    A batch holds consecutive events of the stream, so each run of
    consecutive seqs fills at least ceil(length / batch) of them.
    """
    runs, last, length = 0, None, 0
    for s in sorted(seqs):
        if last is not None and s == last + 1:
            length += 1
        else:
            runs += math.ceil(length / batch)
            length = 1
        last = s
    return runs + math.ceil(length / batch)


def test_batches_holding():
    assert batches_holding([], 50) == 0
    assert batches_holding(range(50), 50) == 1
    assert batches_holding(range(10, 61), 50) == 2
    assert batches_holding([*range(0, 5), *range(100, 105)], 50) == 2


def seqs_written(fleet: Fleet, node: int | None = None) -> set[int]:
    nodes = fleet.nodes if node is None else [fleet.nodes[node]]
    return {r["seq"] for n in nodes for r in n.records() if "seq" in r}


def check_delivery(
    fleet: Fleet, logged: int, held: set[str], record_property: Callable[[str, object], None]
) -> None:
    """Every event written, once, but for what the killed node held; see the module's doc."""
    counts = fleet.wait_for(set(range(logged)), key="seq")
    uuids_of: dict[int, set[str]] = defaultdict(set)
    for r in fleet.records():
        if "seq" in r:
            uuids_of[r["seq"]].add(r["uuid"])
    assert all(len(u) == 1 for u in uuids_of.values()), "an event sent again had a new uuid"
    by_uuid = fleet.counts("uuid")
    twice = {u for u, n in by_uuid.items() if n > 1}
    assert max(by_uuid.values()) <= 2, "an event written three times"
    assert twice <= held, f"written twice, though the killed node did not hold them: {twice - held}"
    seq_of = {next(iter(u)): s for s, u in uuids_of.items()}
    in_flight = batches_holding((seq_of[u] for u in held if u in seq_of), BATCH)
    assert len(twice) <= BATCH * in_flight
    assert sum(counts.values()) == logged + len(twice)
    record_property(
        "figure",
        f"{logged} events, {len(twice)} written twice; in flight at the kill: "
        f"{len(held)} events in {in_flight} batch(es), so at most {BATCH * in_flight}",
    )


def check_calls(stream: Stream, record_property: Callable[[str, object], None]) -> None:
    record_property("figure", f"log calls: {stream.summary()}")
    slowest = max(stream.calls)
    assert slowest < CALL_BOUND, f"a log call took {slowest * 1e3:.0f} ms: {stream.summary()}"


ROUTES = ["haproxy", "failover", "round_robin"]


def shipping(
    route: str,
    fleet: Callable[..., Fleet],
    make_handler: Callable[..., logship.ShipHandler],
    spill_dir: Path,
    **options: Any,
) -> tuple[Fleet, logship.ShipHandler]:
    """A fleet, and a handler sending to it in batches of ``BATCH`` by ``route``: through
    HAProxy, or to the node URLs with that ``balance``."""
    f = fleet(proxy=route == "haproxy")
    if route == "haproxy":
        url: str | list[str] = f.url()
    else:
        url, options["balance"] = f.urls(), route
    h = make_handler(url, spill=True, spill_dir=str(spill_dir), batch_max_records=BATCH, **options)
    return f, h


@pytest.mark.parametrize("route", ROUTES)
def test_a_node_killed_mid_stream_loses_nothing_and_stalls_no_call(
    fleet: Callable[..., Fleet],
    make_handler: Callable[..., logship.ShipHandler],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
    route: str,
) -> None:
    f, h = shipping(route, fleet, make_handler, tmp_path / "spill")
    stream = Stream(attach(h, "fleet")).start()
    victim = 0  # failover's first endpoint: the one carrying the traffic
    try:
        # A second of the stream through the whole fleet, then the kill.
        require_within(lambda: stream.logged > RATE, 20, "a second of the stream")
        require_within(lambda: seqs_written(f, victim), 20, "the victim to write events")
        held = f.kill(victim)
        killed_at = stream.logged
        # The others carry a second of the stream on their own.
        require_within(
            lambda: max(seqs_written(f), default=0) > killed_at + RATE,
            20,
            "the other nodes to take the stream",
        )
        if f.proxy is not None:
            require_within(lambda: f.proxy.status("node0") == "DOWN", 10, "HAProxy to see it down")
        f.start_node(victim)
        restarted_at = stream.logged
        require_within(
            lambda: max(seqs_written(f, victim), default=0) > restarted_at,
            20,
            "the restarted node to take events again",
        )
    finally:
        logged = stream.stop()
    assert h.flush(20), h.stats()
    check_delivery(f, logged, held, record_property)
    check_calls(stream, record_property)
    stats = h.stats()
    check_identity(stats)
    # SPEC section 9: nothing is spilled while any endpoint answers.
    assert stats["shipped"] == logged and stats["spilled"] == 0, stats
    if route != "haproxy":
        first = stats["endpoints"][victim]
        assert first["failures"] >= 1 and first["state"] == "up", stats["endpoints"]


#: How long every node stays down.
OUTAGE = 10.0


@pytest.mark.long
@pytest.mark.parametrize("route", ["haproxy", "failover"])
def test_every_node_down_for_ten_seconds_spills_then_drains(
    fleet: Callable[..., Fleet],
    make_handler: Callable[..., logship.ShipHandler],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
    route: str,
) -> None:
    # A small ring, so that the outage reaches the spill within seconds; room
    # for the burst a stream thread starved on a loaded machine catches up with.
    f, h = shipping(route, fleet, make_handler, tmp_path / "spill", capacity=5000)
    stream = Stream(attach(h, "fleet")).start()
    try:
        require_within(lambda: seqs_written(f), 20, "the fleet to write events")
        held: set[str] = set()
        for i in range(len(f.nodes)):
            held |= f.kill(i)
        down_since = time.monotonic()
        require_within(lambda: h.stats()["spilled"] > 0, OUTAGE, "the handler to spill")
        # The outage lasts OUTAGE seconds whatever happens meanwhile: its length is
        # what the test is about, not a wait for something.
        threading.Event().wait(max(0.0, down_since + OUTAGE - time.monotonic()))
        assert h.stats()["pending"] > 0
        for i in range(len(f.nodes)):
            f.start_node(i)
        back_at = stream.logged
        require_within(
            lambda: max(seqs_written(f), default=0) > back_at, 30, "the fleet to take events again"
        )
    finally:
        logged = stream.stop()
    require_within(lambda: h.stats()["pending"] == 0, 30, "the spill to drain")
    check_delivery(f, logged, held, record_property)
    check_calls(stream, record_property)
    stats = h.stats()
    check_identity(stats)
    assert stats["shipped"] == logged and stats["dropped"] == 0, stats
    assert stats["spilled"] > 0 and stats["replayed"] > 0 and stats["spill_bytes"] == 0, stats
    record_property("figure", f"spilled {stats['spilled']}, replayed {stats['replayed']}")


# -- many processes ----------------------------------------------------------------------------

#: Requests a second, and for how long: each request logs one event.
GUNICORN_RATE = 200
GUNICORN_SECONDS = 30.0


@pytest.mark.long
def test_eight_gunicorn_workers_through_the_fleet_deliver_every_request_once(
    fleet: Callable[..., Fleet],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    f = fleet(proxy=True)
    g = Gunicorn(tmp_path, f.url("/gunicorn"), workers=8, preload=True)
    with g.proc:
        answered, took = g.paced(GUNICORN_RATE, GUNICORN_SECONDS)
        g.stop()
    counts = f.wait_for(set(answered), key="request_id", timeout=60)
    assert set(counts) == set(answered) and max(counts.values()) == 1, "a request logged twice"
    by_uuid = f.counts("uuid")
    assert max(by_uuid.values()) == 1, "an event written twice"
    handled = [r for r in f.records() if "request_id" in r]
    # Each from the worker that answered, and every worker answered some.
    assert {r["request_id"]: r["pid"] for r in handled} == answered
    assert len(set(answered.values())) == 8, set(answered.values())
    events = sum(by_uuid.values())
    record_property(
        "figure",
        f"8 gunicorn workers, {len(answered)} requests in {took:.1f} s: "
        f"{len(answered) / took:,.0f} requests/s, {events / took:,.0f} events/s delivered "
        f"({events} events, each once)",
    )


# -- the guide's configurations ------------------------------------------------------------------

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "scaling.md"


def guide_configs(kind: str) -> list[str]:
    """The ``ini`` blocks of docs/scaling.md whose first line is ``# {kind}: …``."""
    blocks = re.findall(r"```ini\n(.*?)```", GUIDE.read_text(), re.S)
    return [b for b in blocks if b.startswith(f"# {kind}:")]


def sections(config: str) -> dict[str, list[str]]:
    """Each section of an HAProxy configuration, by its header line: its directives."""
    out: dict[str, list[str]] = {}
    for line in config.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            current = out.setdefault(line.strip(), [])
        elif line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())
    return out


def missing_plugins(config: str) -> list[str]:
    """The plugins ``config`` names that this Fluent Bit was built without."""
    missing = []
    for kind, name in re.findall(r"^\[(INPUT|OUTPUT)\]\n\s+name (\S+)", config, re.M):
        flag = "-i" if kind == "INPUT" else "-o"
        probe = subprocess.run(
            [binary(), flag, name, "-h"], capture_output=True, text=True, timeout=30
        )
        if f"invalid {kind.lower()} plugin" in probe.stdout + probe.stderr:
            missing.append(name)
    return missing


@pytest.mark.parametrize("config", guide_configs("fluent-bit.conf"), ids=lambda c: c[20:50])
def test_the_guides_fluent_bit_configurations_are_accepted(config: str, tmp_path: Path) -> None:
    missing = missing_plugins(config)
    if missing:
        pytest.skip(f"this Fluent Bit is built without {', '.join(missing)} (see docs/scaling.md)")
    path = tmp_path / "fluent-bit.conf"
    path.write_text(config)
    checked = subprocess.run(
        [binary(), "--dry-run", "-c", str(path)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_guides_haproxy_configuration_is_accepted_and_is_the_tests(tmp_path: Path) -> None:
    (config,) = guide_configs("haproxy.cfg")
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    checked = subprocess.run(
        [haproxy_binary(), "-c", "-f", str(path)], capture_output=True, text=True, timeout=30
    )
    said = checked.stdout + checked.stderr
    assert checked.returncode == 0, said
    # The guide's node names do not resolve here; nothing else may draw a warning.
    warnings = [w for w in said.splitlines() if "WARNING" in w and "could not resolve" not in w]
    assert not warnings, said
    # The fleet the tests kill nodes of is configured as the guide says, but for
    # its addresses and the pace of its health checks.
    guide, tests = sections(config), sections(HAPROXY_CONFIG)
    assert tests["defaults"] == guide["defaults"]

    def rules(lines: list[str]) -> list[str]:
        return [x for x in lines if not x.startswith(("server ", "default-server "))]

    assert rules(tests["backend fluent_bit"]) == rules(guide["backend fluent_bit"])
    assert "tune.bufsize 65536" in tests["global"] and "tune.bufsize 65536" in guide["global"]
