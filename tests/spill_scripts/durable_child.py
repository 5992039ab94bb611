"""A process that logs a numbered stream and says, after each log call returns, which one.

argv: CONFIG, JSON with ``url``, ``spill_dir``, ``opts`` (more handler options),
``count`` (events ``"ev N ..."``, N from 0), ``rate`` (events a second at most;
0: as fast as it goes), ``pad`` (random hex digits after N), ``report`` (a file:
after each call returns, ``N`` and a newline are appended to it, with one
``write``), ``fsize`` (optional: ``RLIMIT_FSIZE`` in bytes, with SIGXFSZ
ignored), ``hold`` (wait for a line on stdin before the first event) and
``then``:

``"hang"``
    after the last event, print ``LOGGED {stats}`` and wait for a line on
    stdin (the test kills it meanwhile), then exit without closing.
``"drain"``
    after the last event, print ``LOGGED {stats}``, wait for a line on stdin,
    then until nothing is pending (or 30 s), print ``STATS {stats}``, close.

With ``count`` 0 it replays: it waits until nothing is pending and the
folder holds no spill file and no region (or 30 s), prints ``STATS {stats}``
and closes.

It prints ``STARTED`` once the handler is built. ``{stats}`` is ``stats()``
without ``last_error``, plus ``warnings``: what the ``logship`` logger said.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import secrets
import sys
import threading
import time
from typing import Any

import logship
from logship.worker.spill import folder as sf

# What the logship logger says (never flushed: it holds far more than a run says).
SAID = logging.handlers.BufferingHandler(capacity=1 << 20)
SAID.setLevel(logging.WARNING)


def stats_line(handler: logship.ShipHandler) -> str:
    out = {k: v for k, v in handler.stats().items() if k != "last_error"}
    return json.dumps({**out, "warnings": [r.getMessage() for r in SAID.buffer]})


def main() -> None:
    cfg: dict[str, Any] = json.loads(sys.argv[1])
    logging.getLogger("logship").addHandler(SAID)
    if cfg.get("fsize"):
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(cfg["fsize"]),) * 2)
    handler = logship.ShipHandler(url=cfg["url"], spill_dir=cfg["spill_dir"], **cfg["opts"])
    log = logging.getLogger("child")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    print("STARTED", flush=True)
    pause = threading.Event()
    if not cfg["count"]:
        folder = cfg["spill_dir"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
            handler.stats()["pending"] or sf.has_spilled(folder) or sf.has_regions(folder)
        ):
            pause.wait(0.01)
        print("STATS", stats_line(handler), flush=True)
        handler.close()
        return
    if cfg.get("hold"):
        sys.stdin.readline()
    report = os.open(cfg["report"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    count, rate, pad = int(cfg["count"]), float(cfg.get("rate", 0)), int(cfg.get("pad", 0))
    start = time.monotonic()
    for i in range(count):
        log.info("ev %d %s", i, secrets.token_hex(pad // 2) if pad else "", extra={"n": i})
        os.write(report, b"%d\n" % i)  # only now has the call returned
        if rate and i % 10 == 9:
            pause.wait(max(0.0, start + (i + 1) / rate - time.monotonic()))
    print("LOGGED", stats_line(handler), flush=True)
    sys.stdin.readline()
    if cfg.get("then") == "drain":
        deadline = time.monotonic() + 30
        while handler.stats()["pending"] and time.monotonic() < deadline:
            pause.wait(0.01)
        print("STATS", stats_line(handler), flush=True)
        handler.close()
        return
    os._exit(0)


main()
