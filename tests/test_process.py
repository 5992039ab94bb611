"""Process life (SPEC sections 2 and 6): interpreter exit, fork, dictConfig, recursion, close.

Exit and the lock-holding forks run in real subprocesses (scripts in
``tests/scripts``) so that a hang is a failed deadline, never a hung pytest.
The other forks are real ``os.fork()`` calls of the test process; the child
always leaves through ``os._exit``.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

from conftest import attach, check_identity, wait_until
from faultserver import STALL, status
from procs import REPO, plain_env

SCRIPTS = os.path.join(REPO, "tests", "scripts")


# -- helpers -------------------------------------------------------------------


class Script:
    """A script from tests/scripts running in a subprocess, read line by line with deadlines."""

    def __init__(self, name: str, *args: object) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(SCRIPTS, name), *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=plain_env(),
        )
        self._buf = b""
        self.stderr = ""

    def read_line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise AssertionError(f"no line from the script in {timeout} s: {self.stderr}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    self.finish(5)
                    raise AssertionError(f"the script ended early: {self.stderr}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float) -> tuple[int, list[str]]:
        """Wait for the exit; return the exit code and the remaining stdout lines."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the script did not exit within {timeout} s") from None
        self.stderr = err.decode(errors="replace")
        rest = (self._buf + out).decode().splitlines()
        self._buf = b""
        return self.proc.returncode, rest

    def kill(self) -> None:
        self.proc.kill()
        _, err = self.proc.communicate()
        self.stderr = err.decode(errors="replace")


def run_script(*args: object, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, os.path.join(SCRIPTS, str(args[0])), *map(str, args[1:])],
        env=plain_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fork(child: Callable[[], dict[str, Any]]) -> tuple[int, int]:
    """Run ``child()`` in a forked child; return its pid and the pipe carrying its result."""
    r, w = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a process with threads: that is the point here.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(r)
            payload = json.dumps(child()).encode()
            code = 0
        except BaseException as e:
            payload = json.dumps({"error": repr(e)}).encode()
        finally:
            try:
                os.write(w, payload)
            finally:
                os._exit(code)
    os.close(w)
    return pid, r


def collect(pid: int, fd: int, timeout: float) -> tuple[dict[str, Any], int]:
    """Read a forked child's result and reap it, killing it at the deadline."""
    deadline = time.monotonic() + timeout
    data = b""
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError(f"the forked child did not finish within {timeout} s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                data += chunk
    finally:
        os.close(fd)
    _, wstatus = os.waitpid(pid, 0)  # it has closed the pipe in os._exit
    return json.loads(data), os.waitstatus_to_exitcode(wstatus)


def logship_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("logship-")]


# -- (a), (b): interpreter exit -----------------------------------------------------


def test_exit_delivers_everything_without_an_explicit_close(server):
    result = run_script("exit_log.py", server.url(), 3000, 5.0, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "logged"
    assert server.wait_for_uuids(3000, timeout=5)
    events = server.events()
    assert len({e["uuid"] for e in events}) == 3000
    assert {e["message"] for e in events} == {f"exit {i}" for i in range(3000)}


def test_exit_with_a_stalled_endpoint_takes_no_longer_than_shutdown_timeout(server):
    server.default = STALL
    shutdown_timeout = 1.0
    script = Script("exit_log.py", server.url(), 100, shutdown_timeout)
    assert script.read_line(timeout=20) == "logged"
    logged = time.monotonic()
    code, _ = script.finish(timeout=shutdown_timeout + 10)
    elapsed = time.monotonic() - logged
    assert code == 0, script.stderr
    assert elapsed < shutdown_timeout + 1.5, elapsed
    assert server.arrivals >= 1  # the worker was really stuck on the endpoint


# -- (c), (d), (e): fork ------------------------------------------------------------


def assert_each_once(events: list[dict[str, Any]], messages: set[str]) -> None:
    uuids = Counter(e["uuid"] for e in events)
    assert [u for u, n in uuids.items() if n > 1] == []
    seen = Counter(e["message"] for e in events)
    assert set(seen) == messages, (messages - set(seen), set(seen) - messages)
    assert [m for m, n in seen.items() if n > 1] == []


def test_fork_child_ships_its_own_events_and_never_the_parents(server, make_handler):
    h = make_handler(server.url())
    log = attach(h, "forked")
    for i in range(100):
        log.info("pre %d", i)
    assert server.wait_for_requests(1)  # the parent's worker runs and delivers
    for i in range(100, 200):
        log.info("pre %d", i)  # some of these are still queued at the fork

    def child() -> dict[str, Any]:
        for i in range(500):
            log.info("child %d", i)
        return {"flushed": h.flush(5), "stats": h.stats(), "pid": os.getpid()}

    pid, fd = fork(child)
    for i in range(500):
        log.info("parent %d", i)
    result, code = collect(pid, fd, timeout=15)
    assert code == 0 and result.get("flushed") is True, result
    assert h.flush(10)

    child_stats = result["stats"]
    check_identity(child_stats)
    assert child_stats["emitted"] == 500  # starts from zero, not from the parent's 200
    assert child_stats["shipped"] == 500 and child_stats["dropped"] == 0

    parent_stats = h.stats()
    check_identity(parent_stats)
    assert parent_stats["emitted"] == 700 and parent_stats["shipped"] == 700

    events = server.events()
    assert_each_once(
        events,
        {f"pre {i}" for i in range(200)}
        | {f"child {i}" for i in range(500)}
        | {f"parent {i}" for i in range(500)},
    )
    by_pid = {e["pid"] for e in events if e["message"].startswith("child ")}
    assert by_pid == {result["pid"]}
    assert {e["pid"] for e in events if not e["message"].startswith("child ")} == {os.getpid()}


def test_fork_while_a_batch_is_in_flight(server, make_handler):
    server.then(STALL)  # the parent's first request hangs until released
    h = make_handler(server.url())
    log = attach(h, "midbatch")
    for i in range(50):
        log.info("pre %d", i)
    assert server.wait_for(lambda s: s.arrivals >= 1)  # the request is held by the server
    for i in range(50, 100):
        log.info("pre %d", i)

    def child() -> dict[str, Any]:
        for i in range(100):
            log.info("child %d", i)
        return {"flushed": h.flush(5), "stats": h.stats(), "pid": os.getpid()}

    pid, fd = fork(child)
    result, code = collect(pid, fd, timeout=15)
    # The child delivered while the parent's request was still stalled.
    assert code == 0 and result.get("flushed") is True, result
    assert result["stats"]["emitted"] == 100 and result["stats"]["shipped"] == 100
    server.release.set()
    assert h.flush(10)
    stats = h.stats()
    check_identity(stats)
    assert stats["shipped"] == 100 and stats["dropped"] == 0
    assert_each_once(
        server.events(), {f"pre {i}" for i in range(100)} | {f"child {i}" for i in range(100)}
    )


def run_fork_locks(server, mode: str) -> dict[str, Any]:
    result = run_script("fork_locks.py", server.url(), mode, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_fork_while_other_threads_hold_the_handler_and_ring_locks(server):
    out = run_fork_locks(server, "locks")
    child = out["child"]
    assert child is not None, "the child deadlocked before reporting"
    assert child.get("flushed") is True, child
    assert out["exit"] == 0, "the child did not exit (deadlock at exit?)"
    assert child["stats"]["emitted"] == 200 and child["stats"]["shipped"] == 200
    assert server.wait_for_uuids(220, timeout=5)
    child_events = [e for e in server.events() if e["message"].startswith("child ")]
    assert len({e["uuid"] for e in child_events}) == 200
    assert {e["pid"] for e in child_events} == {child["pid"]}


def test_fork_while_a_thread_is_inside_the_warners_lock(server):
    # Rule 7: every lock of logship's own is re-created in the child, the
    # rate-limited warner's too (the child's worker warns about the 503).
    server.then(status(503))  # the child's first request: its worker has something to say
    out = run_fork_locks(server, "warner")
    child = out["child"]
    assert child is not None, "the child deadlocked before reporting"
    assert child.get("flushed") is True, child
    assert out["exit"] == 0, "the child did not exit (deadlock at exit)"


# -- (f): dictConfig while stuck ---------------------------------------------------------


def test_dictconfig_while_the_worker_is_stuck_returns_in_bounded_time(server):
    server.then(STALL)  # only the first handler's first request hangs
    script = Script("dictconfig_stall.py", server.url())
    assert script.read_line(timeout=20) == "logged"
    assert server.wait_for(lambda s: s.arrivals >= 1, timeout=10)
    script.send("go")
    line = script.read_line(timeout=10)  # shutdown_timeout (1 s) + 1 s, with room to report
    assert line.startswith("elapsed "), line
    assert float(line.split()[1]) < 1.0 + 1.0
    code, _ = script.finish(timeout=10)
    assert code == 0, script.stderr
    # The new handler works: what it got is delivered at exit.
    after = [e for e in server.events() if e["message"].startswith("after ")]
    assert len({e["uuid"] for e in after}) == 20
    assert {e["config"] for e in after} == {"second"}


# -- (g): recursion guard and feedback loop -----------------------------------------------


class Collect(logging.Handler):
    """Remembers (logger name, thread ident, message) of every record it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int | None, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.name, record.thread, record.getMessage()))


def test_worker_and_logship_records_are_not_shipped_but_app_ones_are(
    server, make_handler, tmp_path
):
    # The first batch is rejected: the worker writes a dead letter under filelock.
    server.then(status(400))
    h = make_handler(server.url(), spill_dir=str(tmp_path))
    collect_all = Collect()
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    root.addHandler(h)
    root.addHandler(collect_all)

    logging.getLogger("guard.app").info("rejected")
    assert wait_until(lambda: any(s[0] == "logship" for s in collect_all.seen))  # rejection said
    app_records = [
        ("guard.app", "hello"),
        ("urllib3.connectionpool", "from app"),
        ("requests", "from app"),
        ("filelock", "from app"),
        ("logshipper", "a logger that is not logship's"),
    ]
    for name, message in app_records:
        logging.getLogger(name).debug(message)
    logging.getLogger("logship").warning("logship's own, from the app thread")
    logging.getLogger("logship.worker").error("logship's own, from the app thread")
    assert h.flush(5)

    main = threading.get_ident()
    on_worker = {name for name, thread, _ in collect_all.seen if thread != main}
    assert "urllib3.connectionpool" in on_worker  # the worker really logged at DEBUG
    assert "filelock" in on_worker

    shipped = [(e["logger"], e["message"]) for e in server.events()]
    assert sorted(shipped) == sorted(app_records)
    stats = h.stats()
    check_identity(stats)
    assert stats["rejected"] == 1 and stats["shipped"] == len(app_records)


def test_no_feedback_loop_with_the_handler_on_the_root_logger_at_debug(server, make_handler):
    h = make_handler(server.url())
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    root.addHandler(h)
    log = logging.getLogger("loop")
    for i in range(10):
        log.info("loop %d", i)
    assert h.flush(5)
    settled = len(server.requests)
    # Nothing else is sent: the worker's own DEBUG records do not come back as events.
    assert not server.wait_for(lambda s: len(s.requests) > settled, timeout=0.5)
    stats = h.stats()
    check_identity(stats)
    assert stats["shipped"] == 10 and stats["emitted"] == 10
    assert sorted(e["message"] for e in server.events()) == sorted(f"loop {i}" for i in range(10))


# -- (h): close and flush ------------------------------------------------------------------


def test_close_is_idempotent_and_an_event_after_close_is_dropped(server, make_handler):
    h = make_handler(server.url())
    log = attach(h)
    log.info("before")
    assert h.flush(5)
    h.close()
    h.close()
    log.info("after close")  # never raises
    h.handle(logging.LogRecord("app", logging.INFO, __file__, 1, "direct", None, None))
    stats = h.stats()
    check_identity(stats)
    assert stats["emitted"] == 3 and stats["shipped"] == 1 and stats["dropped"] == 2
    assert stats["pending"] == 0
    assert [e["message"] for e in server.events()] == ["before"]


def test_flush_on_a_never_used_handler_returns_true_and_starts_nothing(server, make_handler):
    before = set(logship_threads())
    h = make_handler(server.url())
    assert h.flush() is True
    assert h.flush(0) is True
    assert set(logship_threads()) == before
    h.close()
    attach(h).info("after close")
    stats = h.stats()
    check_identity(stats)
    assert stats["emitted"] == 1 and stats["dropped"] == 1
    assert set(logship_threads()) == before


def test_close_with_the_server_down_is_bounded_and_counts_the_undelivered(server, make_handler):
    server.down()
    h = make_handler(server.url(), shutdown_timeout=1.0)
    log = attach(h)
    for i in range(50):
        log.info("undeliverable %d", i)
    start = time.monotonic()
    h.close()
    elapsed = time.monotonic() - start
    assert elapsed < 1.0 + 0.5, elapsed
    stats = h.stats()
    check_identity(stats)
    assert stats["shipped"] == 0 and stats["dropped"] == 50 and stats["pending"] == 0
    assert stats["queued"] == 0
