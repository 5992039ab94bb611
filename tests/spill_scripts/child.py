"""A process that logs through a spilling ShipHandler, for the spill tests.

argv: MODE CONFIG, where CONFIG is JSON with ``url``, ``spill_dir`` (null: the
default folder), ``opts`` (more handler options), ``tag`` (events are logged as
``"TAG N"``, followed by ``pad`` random hex digits when ``pad`` is set) and
mode-specific keys. Every report is one line on stdout; ``{stats}`` is JSON:
``stats()`` without ``last_error``, plus ``warnings`` (what the ``logship``
logger said so far) and, after waiting for something, ``ok``.

Modes:

``burst``
    Log ``count`` events in chunks of ``chunk``, after each chunk waiting
    (with a deadline) until ``stats()["queued"] <= queue_max``, so the ring
    never overflows. Print ``LOGGED {stats}``. Then, by ``then``:
    ``"exit"``: return, leaving ``logging.shutdown`` to flush and close;
    ``"die"``: wait until ``spilled >= spilled_min``, print ``SPILLED {stats}``
    and ``os._exit(0)`` without closing; ``"hold"``: the same, then wait for
    a line on stdin before ``os._exit(0)``; ``"drain"``: wait for a line on
    stdin, then until nothing is pending and no spill file is left (or
    ``timeout``), print ``STATS {stats}``, and close.
``stream``
    Log events continuously (``chunk`` at a time, at most ``rate`` events a
    second), printing ``EMITTED N`` (the last number logged) after each
    chunk, until a line arrives on stdin. Then print ``STOPPED N``; ``flush``
    for ``flush_timeout`` s; if ``drain`` is set also wait until nothing is
    pending and the folder holds no spill file; print ``STATS {stats}``; close.
``replay``
    Create the handler (it replays what the folder holds), wait until nothing
    is pending and the folder holds no spill file, print ``STATS {stats}``,
    close.
``fsize``
    Set ``RLIMIT_FSIZE`` to ``fsize`` bytes with SIGXFSZ ignored (a disk that
    is full for this process's files), then do what ``burst`` does.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import threading
import time
from typing import Any

import logship
from logship.worker.spill import folder as spillfolder

DEADLINE = 30.0


class Recorder(logging.Handler):
    """Keeps what the ``logship`` logger says."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def say(*parts: object) -> None:
    print(*parts, flush=True)


def wait_until(predicate: Any, timeout: float = DEADLINE) -> bool:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.002)
    return True


RECORDER = Recorder()


def stats_line(handler: logship.ShipHandler, **extra: Any) -> str:
    """The handler's counters, and what the ``logship`` logger said so far, as JSON."""
    out = {k: v for k, v in handler.stats().items() if k != "last_error"}
    return json.dumps({**out, "warnings": list(RECORDER.messages), **extra})


def spill_dir_of(handler: logship.ShipHandler) -> str:
    return handler._spill_dir or ""


def drained(handler: logship.ShipHandler) -> bool:
    return handler.stats()["pending"] == 0 and not spillfolder.has_spilled(spill_dir_of(handler))


def log_chunk(
    log: logging.Logger,
    handler: logship.ShipHandler,
    tag: str,
    start: int,
    n: int,
    qmax: int,
    pad: int = 0,
) -> None:
    for i in range(start, start + n):
        if pad:
            log.info("%s %d %s", tag, i, secrets.token_hex(pad // 2))
        else:
            log.info("%s %d", tag, i)
    if not wait_until(lambda: handler.stats()["queued"] <= qmax):
        say("STUCK", stats_line(handler))
        os._exit(3)


def main() -> None:
    mode, cfg = sys.argv[1], json.loads(sys.argv[2])
    logging.getLogger("logship").addHandler(RECORDER)
    if mode == "fsize":
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limit = int(cfg["fsize"])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    opts: dict[str, Any] = dict(cfg.get("opts") or {})
    if cfg.get("spill_dir"):
        opts["spill_dir"] = cfg["spill_dir"]
    handler = logship.ShipHandler(url=cfg["url"], **opts)
    log = logging.getLogger("child")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    tag = str(cfg.get("tag", "ev"))
    chunk = int(cfg.get("chunk", 10))
    qmax = int(cfg.get("queue_max", 1 << 30))
    pad = int(cfg.get("pad", 0))

    if mode in ("burst", "fsize"):
        count = int(cfg["count"])
        for start in range(0, count, chunk):
            log_chunk(log, handler, tag, start, min(chunk, count - start), qmax, pad)
        say("LOGGED", stats_line(handler))
        then = cfg.get("then", "exit")
        if then == "drain":
            sys.stdin.readline()
            ok = wait_until(lambda: drained(handler), float(cfg.get("timeout", DEADLINE)))
            say("STATS", stats_line(handler, ok=ok))
            handler.close()
            return
        if then in ("die", "hold"):
            target = int(cfg.get("spilled_min", 1))
            if not wait_until(lambda: handler.stats()["spilled"] >= target):
                say("STUCK", stats_line(handler))
                os._exit(3)
            say("SPILLED", stats_line(handler))
            if then == "hold":
                sys.stdin.readline()
            os._exit(0)
        return  # "exit": logging.shutdown flushes and closes the handler

    if mode == "stream":
        stop = threading.Event()

        def watch_stdin() -> None:
            sys.stdin.readline()
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
        period = chunk / float(cfg.get("rate", 5000))
        i = 0
        next_at = time.monotonic()
        while not stop.is_set():
            log_chunk(log, handler, tag, i, chunk, qmax, pad)
            i += chunk
            say("EMITTED", i - 1)
            next_at += period
            stop.wait(max(0.0, next_at - time.monotonic()))
        say("STOPPED", i - 1)
        handler.flush(float(cfg.get("flush_timeout", 20)))
        ok = True
        if cfg.get("drain"):
            ok = wait_until(lambda: drained(handler))
        say("STATS", stats_line(handler, ok=ok))
        handler.close()
        return

    if mode == "replay":
        ok = wait_until(lambda: drained(handler), float(cfg.get("timeout", DEADLINE)))
        say("STATS", stats_line(handler, ok=ok))
        handler.close()
        return

    raise SystemExit(f"unknown mode {mode!r}")


main()
