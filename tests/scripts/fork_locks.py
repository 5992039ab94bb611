"""Fork while other threads hold locks; the child must still log, flush and exit.

argv: URL MODE

- ``locks``: the parent has logged (its worker runs); one thread holds the
  handler's lock (``handler.acquire()``), another is inside the worker's
  ledger lock, the ring's lock and the UUID generator's lock.
- ``warner``: one thread is inside the lock of the handler's rate-limited
  warner (logship's diagnostics). The test makes the child's first request
  fail with 503, so the child's worker has something to warn about.

The child logs CHILD_EVENTS events, flushes, reports on a pipe, then exits
normally, so ``logging.shutdown`` flushes and closes the handler in the child.
The parent gives the child a deadline (a deadlock is reported, not waited
out), then prints one JSON line: {"child": {...}, "exit": code or null}.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import sys
import threading
import time
from typing import Any

import logship
from logship.pure import uuid7

CHILD_EVENTS = 200
REPORT_TIMEOUT = 5.0  # for the child's report (its flush takes at most 1.5 s)
EXIT_TIMEOUT = 3.0  # for the child's exit after its report (shutdown_timeout is 0.5 s)


def read_report(fd: int, deadline: float) -> dict[str, Any] | None:
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                return json.loads(data) if data else {"error": "no report"}
            data += chunk


def wait_exit(pid: int, deadline: float) -> int | None:
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.01)  # polling under a deadline


def hold(locks: list[Any], held: threading.Event, release: threading.Event) -> None:
    """Take every lock (anything with acquire/release) and keep them until released."""
    for lock in locks:
        lock.acquire()
    try:
        held.set()
        release.wait(30)
    finally:
        for lock in reversed(locks):
            lock.release()


def main() -> int:
    url, mode = sys.argv[1], sys.argv[2]
    handler = logship.ShipHandler(
        url=url,
        spill=False,
        flush_interval=0.05,
        retry_max_backoff=0.2,
        shutdown_timeout=0.5,
        timeout=5.0,
    )
    log = logging.getLogger("forklocks")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False

    release = threading.Event()
    groups: list[list[Any]] = []
    if mode == "locks":
        for i in range(20):
            log.info("parent %d", i)
        if not handler.flush(5):
            print(json.dumps({"error": "the parent could not deliver"}), flush=True)
            return 1
        groups.append([handler])  # hold() calls handler.acquire()
        ledger = handler._worker.ledger
        groups.append([ledger.lock, ledger.ring.lock, uuid7._lock])
    elif mode == "warner":
        groups.append([handler._warner._lock])
    else:
        raise SystemExit(f"unknown mode {mode!r}")

    threads = []
    for locks in groups:
        held = threading.Event()
        t = threading.Thread(target=hold, args=(locks, held, release), daemon=True)
        t.start()
        if not held.wait(5):
            print(json.dumps({"error": "could not take the locks"}), flush=True)
            return 1
        threads.append(t)

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            for i in range(CHILD_EVENTS):
                log.info("child %d", i)
            report = {"flushed": handler.flush(1.5), "stats": handler.stats(), "pid": os.getpid()}
        except BaseException as e:
            report = {"error": repr(e)}
        os.write(w, json.dumps(report).encode())
        os.close(w)
        # A normal exit: atexit runs logging.shutdown, which takes the handler's
        # lock (held in the parent at fork time), flushes and closes.
        raise SystemExit(0)

    os.close(w)
    start = time.monotonic()
    child = read_report(r, start + REPORT_TIMEOUT)
    os.close(r)
    code = wait_exit(pid, time.monotonic() + (EXIT_TIMEOUT if child is not None else 0.0))
    release.set()
    for t in threads:
        t.join(5)
    print(json.dumps({"child": child, "exit": code}), flush=True)
    handler.close()
    return 0


raise SystemExit(main())
