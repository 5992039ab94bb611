"""``logship demo``: a receiver in a subprocess, an application logging to it, events flowing.

The application side is this process: a :class:`~logship.ShipHandler` on a
few loggers, fed at a steady pace so the live progress line is worth
watching. At the end the receiver's own counts (``GET /_logship/stats``)
must show every emitted event, or the exit status is 1. Every wait has a
deadline: the demo cannot hang.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any, TextIO

import logship
from logship.cli.argtypes import seconds, whole_number
from logship.cli.httpd import STATS_PATH

_LISTENING = re.compile(r"logship receive: listening on (http://\S+)")
_START_TIMEOUT = 15.0
_STOP_TIMEOUT = 5.0
_FLUSH_TIMEOUT = 10.0
_TICK = 0.02  # pacing step between bursts of events


class DemoError(Exception):
    """The demo could not run (the receiver did not start)."""


# -- the receiver subprocess ----------------------------------------------------


def start_receiver(timeout: float = _START_TIMEOUT) -> tuple[subprocess.Popen[str], str]:
    """Start ``logship receive --port 0 --quiet``; return the process and its URL."""
    # The child must import this very logship, installed or not. `-m` puts the
    # working directory first on sys.path, so the child starts in the folder
    # that holds this package (site-packages, or a source tree), not where the
    # demo was started, which may be a checkout holding another logship.
    root = os.path.dirname(os.path.dirname(os.path.abspath(logship.__file__)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "logship", "receive", "--port", "0", "--quiet"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
    )
    stdout = proc.stdout
    assert stdout is not None
    first: queue.Queue[str] = queue.Queue()
    # readline() has no timeout; a thread makes the deadline possible everywhere.
    reader = threading.Thread(target=lambda: first.put(stdout.readline()), daemon=True)
    reader.start()
    try:
        line = first.get(timeout=timeout)
    except queue.Empty:
        line = ""
    match = _LISTENING.match(line)
    if match is None:
        stop_receiver(proc)
        reader.join(1.0)
        raise DemoError(f"the receiver did not start within {timeout:.0f} s (it said {line!r})")
    return proc, match.group(1)


def stop_receiver(proc: subprocess.Popen[str], timeout: float = _STOP_TIMEOUT) -> str:
    """Terminate the receiver (kill it if it lingers); return what it printed."""
    if proc.poll() is None:
        proc.terminate()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            return ""  # unkillable; nothing more we can do without hanging
    return out or ""


def receiver_counts(url: str, timeout: float = 5.0) -> dict[str, int]:
    """The receiver's counts, read over HTTP."""
    # No proxy: the receiver is local, whatever http_proxy says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url + STATS_PATH, timeout=timeout) as resp:
        counts: dict[str, int] = json.loads(resp.read())
    return counts


# -- the application ------------------------------------------------------------

_ROUTES = ("/orders", "/cart", "/login", "/search", "/invoices")
_LEVELS = (
    logging.INFO,
    logging.INFO,
    logging.DEBUG,
    logging.INFO,
    logging.WARNING,
    logging.INFO,
    logging.ERROR,
)


def _charge(order: int, cents: int) -> None:
    if cents > 10_000:
        raise ValueError(f"order {order}: amount {cents} exceeds the card limit")


def _emit(loggers: list[logging.Logger], i: int) -> None:
    logger = loggers[i % len(loggers)]
    level = _LEVELS[i % len(_LEVELS)]
    route = _ROUTES[i % len(_ROUTES)]
    millis = 3 + (i * 37) % 250
    status = 500 if level == logging.ERROR else 404 if level == logging.WARNING else 200
    logger.log(
        level,
        "%s %s -> %d in %d ms",
        "POST" if i % 3 == 0 else "GET",
        route,
        status,
        millis,
        extra={"request_id": f"req-{i:06d}", "duration_ms": millis},
    )


def _emit_exception(logger: logging.Logger) -> None:
    try:
        _charge(4242, 12_500)
    except ValueError:
        logger.exception("payment failed", extra={"request_id": "req-payment"})


def _progress_line(stats: dict[str, Any], total: int, elapsed: float) -> str:
    rate = stats["shipped"] / elapsed if elapsed > 0 else 0.0
    return (
        f"emitted {stats['emitted']:>7}/{total}   shipped {stats['shipped']:>7}"
        f"   {rate:>8.0f} events/s"
    )


def _log_paced(
    handler: logship.ShipHandler, total: int, duration: float, out: TextIO
) -> tuple[int, float]:
    """Log ``total`` events over ``duration`` s; return (emitted, start).

    The one in the middle is an error with its traceback: one of the
    ``total``, so that what the demo reports is what was asked.
    """
    app = logging.getLogger("demo")
    app.setLevel(logging.DEBUG)
    app.propagate = False
    app.addHandler(handler)
    loggers = [logging.getLogger(f"demo.{name}") for name in ("web", "db", "billing", "worker")]
    tty = out.isatty()
    report_every = 0.1 if tty else 0.5
    start = time.monotonic()
    next_report = start
    emitted = 0
    try:
        while True:
            now = time.monotonic()
            due = total if duration <= 0 else min(total, int(total * (now - start) / duration) + 1)
            while emitted < due:
                if emitted == total // 2:
                    _emit_exception(loggers[2])
                else:
                    _emit(loggers, emitted)
                emitted += 1
            done = emitted >= total
            if now >= next_report or done:
                line = _progress_line(handler.stats(), total, now - start)
                out.write(f"\r{line}" if tty else f"{line}\n")
                out.flush()
                next_report = now + report_every
            if done:
                break
            time.sleep(_TICK)  # pacing, so that the flow is visible; not a wait on a condition
    finally:
        app.removeHandler(handler)
    if tty:
        out.write("\n")
    return handler.stats()["emitted"], start


def run_demo(events: int, duration: float, out: TextIO) -> int:
    """Run the whole demo, writing to ``out``; return the exit status."""
    try:
        proc, url = start_receiver()
    except (DemoError, OSError) as e:
        print(f"logship demo: {e}", file=sys.stderr)
        return 1
    try:
        out.write(f"logship demo: receiver (pid {proc.pid}) listening on {url}\n")
        out.write(
            f"logship demo: logging {events} events (one of them an error with its traceback)"
            f" to {url}/demo\n"
        )
        out.flush()
        with tempfile.TemporaryDirectory(prefix="logship-demo-") as spill_dir:
            # A private spill folder: nothing from the user's own cache is replayed here.
            handler = logship.ShipHandler(
                url=f"{url}/demo", fields={"service": "demo"}, spill_dir=spill_dir
            )
            try:
                emitted, start = _log_paced(handler, events, duration, out)
                delivered = handler.flush(_FLUSH_TIMEOUT)
                elapsed = time.monotonic() - start
                stats = handler.stats()
            finally:
                handler.close()
        try:
            counts: dict[str, int] | None = receiver_counts(url)
        except (OSError, ValueError) as e:
            out.write(f"logship demo: cannot read the receiver's counts: {e}\n")
            counts = None
    finally:
        receiver_said = stop_receiver(proc).strip()
    return _summary(out, emitted, delivered, elapsed, stats, counts, receiver_said)


def _summary(
    out: TextIO,
    emitted: int,
    delivered: bool,
    elapsed: float,
    stats: dict[str, Any],
    counts: dict[str, int] | None,
    receiver_said: str,
) -> int:
    unique = counts["unique"] if counts else 0
    rate = emitted / elapsed if elapsed > 0 else 0.0
    shown = " ".join(f"{k}={v}" for k, v in stats.items() if not k.startswith("last_"))
    lines = [
        "",
        f"  emitted    {emitted}",
        f"  shipped    {stats['shipped']}" + ("" if delivered else " (flush timed out)"),
        f"  received   {unique} unique, {counts['duplicates'] if counts else 0} duplicates"
        f" in {counts['requests'] if counts else 0} requests",
        f"  elapsed    {elapsed:.2f} s, {rate:.0f} events/s",
        f"  handler    {shown}",
    ]
    if receiver_said:
        lines.append(f"  receiver   {receiver_said.splitlines()[-1]}")
    ok = counts is not None and unique == emitted
    if ok:
        lines.append(f"all {emitted} events arrived")
    else:
        lines.append(f"MISSING: {unique} of {emitted} events arrived")
    out.write("\n".join(lines) + "\n")
    out.flush()
    return 0 if ok else 1


# -- command line ---------------------------------------------------------------


def add_parser(subparsers: Any) -> None:
    """Register ``logship demo`` on the main parser's subparsers."""
    p = subparsers.add_parser(
        "demo",
        help="start a receiver and an application that logs to it, and show events flowing",
        description="Start 'logship receive' in a subprocess, log events to it from this "
        "process through a ShipHandler, and check that every one arrived.",
    )
    p.add_argument(
        "--events",
        type=whole_number(1, None, "a positive number"),
        default=5000,
        metavar="N",
        help="how many (default 5000)",
    )
    p.add_argument(
        "--duration",
        type=seconds(0.0, 20.0),
        default=3.0,
        metavar="SECONDS",
        help="spread the events over this long (default 3; 0 logs them at once)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 only if every event arrived."""
    return run_demo(args.events, args.duration, sys.stdout)
