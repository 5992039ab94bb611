"""``install_signal_handlers``: SIGTERM becomes a graceful exit (docs/frameworks/containers.md).

The behaviour that matters, that ``logging.shutdown`` runs and delivers or
spills, is tested in real subprocesses that receive a real SIGTERM. The
installation rules (chaining, SIG_IGN, idempotence, main thread only) are
tested in this process, with every handler restored afterwards.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from logship.signals import install_signal_handlers

from faultserver import STALL, FaultServer
from procs import Proc, child_env

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
pytestmark = posix_only

N = 25

# Logs N events to a handler that would wait flush_interval (30 s) before
# sending: only an exit that runs logging.shutdown gets them out in time.
SCRIPT = r"""
import logging
import signal
import sys
import threading

import logship
from logship.signals import install_signal_handlers

mode, url, spill_dir, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
handler = logship.ShipHandler(
    url=url,
    spill_dir=spill_dir,
    flush_interval=30.0,
    retry_max_backoff=0.2,
    timeout=2.0,
    shutdown_timeout=1.5,
)
log = logging.getLogger("term")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False


def previous(signum, frame):
    print(f"previous handler got {signum}", flush=True)
    if mode == "previous-exits":
        sys.exit(7)


if mode.startswith("previous"):
    signal.signal(signal.SIGTERM, previous)
if mode != "default":
    install_signal_handlers()
for i in range(count):
    log.info("event %d", i, extra={"seq": i})

# The main thread waits the way a worker's main loop does: with a timeout.
# (Python runs a signal handler in the main thread between bytecodes, or when
# a blocking call there is interrupted. A signal that lands just before an
# unbounded blocking call, e.g. sys.stdin.read(), waits until that call returns.)
stdin_closed = threading.Event()


def watch_stdin():
    sys.stdin.read()
    stdin_closed.set()


threading.Thread(target=watch_stdin, daemon=True).start()
print("ready", flush=True)
while not stdin_closed.wait(0.1):  # until SIGTERM, or the test closes stdin
    pass
print("stdin closed", flush=True)
"""


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "term.py"
    path.write_text(SCRIPT)
    return path


def run(script: Path, mode: str, url: str, spill_dir: Path, count: int = N) -> Proc:
    proc = Proc(
        [sys.executable, str(script), mode, url, str(spill_dir), str(count)], env=child_env()
    )
    proc.wait_for("^ready$", timeout=15)
    return proc


def seqs(server: FaultServer) -> list[int]:
    return sorted(e["seq"] for e in server.events() if e.get("logger") == "term")


# -- in a subprocess, with a real SIGTERM ----------------------------------------


def test_without_it_sigterm_loses_what_is_queued(
    script: Path, server: FaultServer, tmp_path: Path
) -> None:
    """The problem: Python's default SIGTERM skips logging.shutdown altogether."""
    with run(script, "default", server.url(), tmp_path / "spill") as proc:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == -signal.SIGTERM
    assert seqs(server) == []
    assert not any((tmp_path / "spill").glob("*.lship"))


def test_sigterm_delivers_everything_when_the_endpoint_is_up(
    script: Path, server: FaultServer, tmp_path: Path
) -> None:
    with run(script, "install", server.url(), tmp_path / "spill") as proc:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 128 + signal.SIGTERM, proc.describe()
    assert "stdin closed" not in proc.stdout
    assert seqs(server) == list(range(N))
    assert len(server.uuids()) == N


def test_sigterm_spills_when_the_endpoint_is_down_and_the_next_process_delivers(
    script: Path, server: FaultServer, tmp_path: Path
) -> None:
    spill = tmp_path / "spill"
    url = server.url()
    server.down()
    with run(script, "install", url, spill) as proc:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 128 + signal.SIGTERM, proc.describe()
    assert any(spill.glob("*.lship")), "nothing was spilled"

    # The restarted container: it logs nothing, and replays what the first one spilled.
    server.up()
    with run(script, "install", url, spill, count=0) as proc:
        assert server.wait_for(lambda s: len(seqs(s)) >= N, 15), proc.describe()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 128 + signal.SIGTERM, proc.describe()
    assert seqs(server) == list(range(N))  # each exactly once
    assert len(server.uuids()) == N


def test_a_second_sigterm_during_exit_does_not_cut_delivery_short(
    script: Path, server: FaultServer, tmp_path: Path, make_handler: Any
) -> None:
    """Once exit handlers run, a repeated SIGTERM must not interrupt the spill."""
    spill = tmp_path / "spill"
    server.then(STALL)  # the exit's one delivery attempt hangs until after the exit
    with run(script, "install", server.url(), spill) as proc:
        proc.send_signal(signal.SIGTERM)
        assert server.wait_for(lambda s: s.arrivals >= 1, 10), proc.describe()
        proc.send_signal(signal.SIGTERM)  # logging.shutdown is now flushing
        assert proc.wait(10) == 128 + signal.SIGTERM, proc.describe()
    assert "Traceback" not in proc.stderr, proc.describe()

    handler = make_handler(server.url(), spill=True, spill_dir=str(spill))
    assert server.wait_for(lambda s: len(seqs(s)) >= N, 15), handler.stats()
    assert seqs(server) == list(range(N))


@pytest.mark.parametrize(("mode", "code"), [("previous", 128 + 15), ("previous-exits", 7)])
def test_the_handler_installed_before_is_called_first(
    script: Path, server: FaultServer, tmp_path: Path, mode: str, code: int
) -> None:
    with run(script, mode, server.url(), tmp_path / "spill") as proc:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == code, proc.describe()
    assert f"previous handler got {int(signal.SIGTERM)}" in proc.stdout
    assert seqs(server) == list(range(N))


def test_a_normal_exit_is_unchanged(script: Path, server: FaultServer, tmp_path: Path) -> None:
    with run(script, "install", server.url(), tmp_path / "spill") as proc:
        proc.close_stdin()
        assert proc.wait(10) == 0, proc.describe()
    assert "stdin closed" in proc.stdout
    assert seqs(server) == list(range(N))


# -- in this process: how it installs ----------------------------------------------


@pytest.fixture
def saved_handlers() -> Iterator[None]:
    sigs = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
    saved = {s: signal.getsignal(s) for s in sigs}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


@pytest.mark.usefixtures("saved_handlers")
def test_a_signal_raises_system_exit_with_128_plus_signum() -> None:
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    install_signal_handlers([signal.SIGUSR1])
    with pytest.raises(SystemExit) as e:
        signal.raise_signal(signal.SIGUSR1)
    assert e.value.code == 128 + signal.SIGUSR1


@pytest.mark.usefixtures("saved_handlers")
def test_chains_the_previous_handler_once_however_often_installed() -> None:
    calls: list[int] = []

    def previous(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)

    signal.signal(signal.SIGUSR1, previous)
    install_signal_handlers(signal.SIGUSR1)
    installed = signal.getsignal(signal.SIGUSR1)
    install_signal_handlers(signal.SIGUSR1)
    install_signal_handlers((signal.SIGUSR1, signal.SIGUSR1))
    assert signal.getsignal(signal.SIGUSR1) is installed  # idempotent
    with pytest.raises(SystemExit) as e:
        signal.raise_signal(signal.SIGUSR1)
    assert calls == [signal.SIGUSR1]
    assert e.value.code == 128 + signal.SIGUSR1


@pytest.mark.usefixtures("saved_handlers")
def test_an_exception_from_the_previous_handler_propagates() -> None:
    def previous(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGUSR2, previous)
    install_signal_handlers([signal.SIGUSR2])
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGUSR2)


@pytest.mark.usefixtures("saved_handlers")
def test_leaves_an_ignored_signal_ignored() -> None:
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    install_signal_handlers([signal.SIGUSR1, signal.SIGUSR2])
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN
    assert callable(signal.getsignal(signal.SIGUSR2))
    signal.raise_signal(signal.SIGUSR1)  # still ignored: nothing happens


@pytest.mark.usefixtures("saved_handlers")
def test_the_default_is_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    install_signal_handlers()
    assert callable(signal.getsignal(signal.SIGTERM))
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


@pytest.mark.usefixtures("saved_handlers")
def test_only_from_the_main_thread() -> None:
    errors: list[BaseException] = []

    def other() -> None:
        try:
            install_signal_handlers()
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=other)
    t.start()
    t.join(10)
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert "main thread" in str(errors[0])


@pytest.mark.parametrize(
    ("signals", "error"),
    [
        ([signal.SIGKILL], ValueError),
        ([signal.SIGSTOP], ValueError),
        ([100_000], ValueError),
        (["SIGTERM"], TypeError),
        ([True], TypeError),
    ],
)
@pytest.mark.usefixtures("saved_handlers")
def test_refuses_what_is_not_a_catchable_signal(signals: list[object], error: type) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(error, match="signals"):
        install_signal_handlers([signal.SIGTERM, *signals])
    assert signal.getsignal(signal.SIGTERM) is before  # nothing half-installed


# A signal handler that logs (and reads stats()) while the main thread logs: the
# handler runs between two bytecodes of the main thread, possibly inside a function
# that holds the ring's lock. Then, with durability="crash", a log call made from
# a __repr__ the region's writer runs while it holds that lock.
STORM = r"""
import json, logging, signal, sys, threading, time
import logship

url, folder, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
handler = logship.ShipHandler(url=url, spill_dir=folder, durability="crash")
log = logging.getLogger("storm")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False
nested = [0]


def on_alarm(signum, frame):
    nested[0] += 1
    log.warning("from the signal handler %d", nested[0])
    handler.stats()  # as a handler that dumps them would


class Loud:
    # Packed with its repr into the region, under the ring's lock: and it logs.
    def __repr__(self):
        if threading.current_thread() is threading.main_thread():  # a worker's call is refused
            nested[0] += 1
            log.info("from a repr")
        return "<loud>"


class Odd(logging.Filter):
    def filter(self, record):
        if record.msg == "odd":
            record.funcName = Loud()
        return True


log.addFilter(Odd())
log.info("odd")
signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.004, 0.004)
calls, t0 = 1, time.monotonic()
while time.monotonic() - t0 < seconds:
    log.info("main %d", calls)
    calls += 1
    if calls % 50 == 0:
        handler.stats()
signal.setitimer(signal.ITIMER_REAL, 0)
print(json.dumps({"calls": calls, "nested": nested[0], "stats": handler.stats()}), flush=True)
"""


def test_logging_from_a_signal_handler_or_under_the_lock_never_deadlocks(tmp_path: Path) -> None:
    server = FaultServer().start()
    try:
        with Proc(
            [sys.executable, "-c", STORM, server.url(), str(tmp_path / "spill"), "1.5"],
            env=child_env(),
        ) as p:
            p.wait_for(r'^\{"calls"', timeout=60)  # a deadlock never prints
            report = json.loads(p.stdout.strip().splitlines()[-1])
    finally:
        server.stop()
    stats = report["stats"]
    assert stats["emitted"] == report["calls"] + report["nested"], report
    assert (
        stats["emitted"] + stats["adopted"]
        == stats["shipped"] + stats["dropped"] + stats["rejected"] + stats["pending"]
    ), stats
    assert stats["dropped"] >= 1  # at least the one logged from inside the region's writer
