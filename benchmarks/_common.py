"""What the benchmark's processes share: a case run in a fresh subprocess, the receiver, and
:func:`case`, which runs a case script.

A case runs as ``sys.executable benchmarks/<case>.py ...`` with a hard
timeout. A case script is its measurement: :func:`case` parses the options
every case takes and the script's own, builds the handler, calls the
measuring function, and prints its result as one JSON line, the last such
line (a peer may print after it). ``run.py`` imports this module too, so only
the standard library is imported at its top (psutil where RSS is read).
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import math
import os
import resource
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

from peers import BY_KIND, PEER_KINDS, Closer

#: This folder, where every child runs: ``-m`` and ``-c`` put the working directory first on
#: sys.path, and from the checkout's root they would import its logship/, not the wheel measured.
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
#: The benchmark's receiver: every handler's wire format, and outages.
PEER_RECEIVER = (sys.executable, os.path.join(HERE, "peer_receivers.py"), "--port", "0")
_LISTENING = "logship receive: listening on "

LOGGER_NAME = "bench"
MiB = 2**20
#: The call every case makes: a message with two arguments, and one ``extra`` field.
MESSAGE = ("user %s did %s", "thing")
#: The same call with a card number and a password in it: RedactFilter's slow path.
SECRET_MESSAGE = ("user %s paid with 4111 1111 1111 1111, password=%s", "hunter2")
#: logship speaking an aggregator's own protocol, compared with the peer that speaks it.
SHIP_PROTOCOLS = {"ship-otlp": "otlp", "ship-forward": "forward"}
SHIP_KINDS = ("ship", *SHIP_PROTOCOLS)
#: The floor, ShipHandlers to the live receiver, one to a port where nothing listens, the peers.
HANDLER_KINDS = ("null", *SHIP_KINDS, "down", *PEER_KINDS)
#: The kinds that ship to a live receiver at ``--url``.
LIVE_KINDS = (*SHIP_KINDS, *PEER_KINDS)
#: A peer has no stats() to say it is done: it is taken as done once nothing
#: has arrived for the longest it holds an event plus this many seconds.
SETTLE_MARGIN = 2.0
#: What the process does as it ends, or when it abandons a peer: remove its
#: temporary folders, stop a receiver (or the fleet) of its own.
AT_EXIT: list[Closer] = []


def _cleanup() -> None:
    while AT_EXIT:
        AT_EXIT.pop()()


@atexit.register
def _at_exit() -> None:
    if AT_EXIT:  # a handler left open (shutdown.py) delivers or spills before its folder goes
        logging.shutdown()
        _cleanup()


Result = dict[str, Any]
#: A measuring function: its result, or a generator that yields it and, once
#: the handler is closed, adds what only a closed handler shows.
Measure = Callable[[argparse.Namespace, logging.Handler, logging.Logger], Any]


def case(
    measure: Measure,
    doc: str | None,
    close: bool = True,
    abandon: bool = False,
    before: Callable[[argparse.Namespace], None] | None = None,
    **options: Any,
) -> None:
    """Run a case script: parse the options every case takes and ``options`` (name: default, or
    (default, help)), call ``before``, build the handler, measure, print the result with the
    handler's ``stats()`` unless it has its own. With ``abandon``, a peer's process ends
    without closing the handler: the case has what it needs and must not wait for the peer to
    deliver (or fail to deliver) what it holds. Without ``close``, the handler is left to the
    interpreter's exit."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--handler", choices=HANDLER_KINDS, required=True)
    parser.add_argument("--url", help="the live receiver (default: one of the case's own)")
    parser.add_argument("--overflow", help="ShipHandler overflow policy (default: its own)")
    parser.add_argument("--durability", help="ShipHandler durability (default: its own)")
    parser.add_argument(
        "--no-trace-context", action="store_true", help="ShipHandler with trace_context=False"
    )
    parser.add_argument("--spill-dir", help="the ShipHandler's spill folder, kept after")
    for name, spec in options.items():
        default, help_ = spec if isinstance(spec, tuple) else (spec, None)
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=help_)
        else:
            kind = type(default) if default is not None else str
            parser.add_argument(flag, type=kind, default=default, help=help_)
    args = parser.parse_args()
    if before is not None:
        before(args)
    if args.handler in LIVE_KINDS and not args.url:  # run by hand: a receiver of its own
        own = ExitStack()
        args.url = own.enter_context(receiver())
        AT_EXIT.append(own.close)
    try:
        handler, close_handler = make_handler(args)
    except ImportError as e:  # a peer not installed: its cases are skipped, saying why
        if args.handler not in BY_KIND:
            raise
        from install import not_installed, read_failures

        why = not_installed(BY_KIND[args.handler].packages, read_failures())
        emit_result({"skipped": why or f"{type(e).__name__}: {e}"}, abandon=True)
    try:
        out = measure(args, handler, bench_logger(handler))
        result = next(out) if isinstance(out, Generator) else out
        result.setdefault("stats", handler_stats(handler))
        if abandon and args.handler in PEER_KINDS:
            emit_result(result, abandon=True)
    finally:
        if close:
            close_handler()
    if isinstance(out, Generator):
        next(out, None)
    emit_result(result)


def make_handler(args: argparse.Namespace, **options: Any) -> tuple[logging.Handler, Closer]:
    """The handler ``--handler`` asks for, and what closes it. Without ``--spill-dir``, a
    private temporary one (set in ``args``, removed as the process ends), so that nothing a
    run leaves is replayed by the next. A peer runs in it, so what it writes (logzio's
    backups) stays out of the repository."""
    if args.handler == "null":
        return logging.NullHandler(), lambda: None
    if not args.spill_dir:
        args.spill_dir = tempfile.mkdtemp(prefix="logship-bench-")
        AT_EXIT.append(lambda folder=args.spill_dir: shutil.rmtree(folder, ignore_errors=True))
    if args.handler in BY_KIND:
        os.chdir(args.spill_dir)
        return BY_KIND[args.handler].build(args.url)
    import logship  # only ShipHandler cases pay for the import

    url = args.url
    if args.handler == "ship-forward":
        url = f"tcp://{urllib.parse.urlsplit(url).hostname}:{receiver_stats(url)['forward_port']}"
    if args.handler == "down":
        # A port bound, never listening (connect is refused), held so no one else takes it.
        dead = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        dead.bind(("127.0.0.1", 0))
        AT_EXIT.append(dead.close)
        url = f"http://127.0.0.1:{dead.getsockname()[1]}/bench"
        # Nothing can be delivered; do not spend the default 5 s trying at close().
        options.setdefault("shutdown_timeout", 0.5)
    if args.handler in SHIP_PROTOCOLS:
        options["protocol"] = SHIP_PROTOCOLS[args.handler]
    given = ("overflow", "durability", "balance")
    options |= {k: getattr(args, k) for k in given if getattr(args, k, None)}
    if getattr(args, "no_trace_context", False):
        options["trace_context"] = False
    ship = logship.ShipHandler(url=url, spill_dir=args.spill_dir, **options)
    return ship, ship.close


def bench_logger(handler: logging.Handler) -> logging.Logger:
    """The ``bench`` logger at INFO with ``handler`` as its only handler."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    # logship's own warnings (endpoint down, ...) must not reach stdout, where
    # the result goes; the parent shows stderr only when a case fails.
    logging.getLogger("logship").addHandler(logging.StreamHandler(sys.stderr))
    return logger


def log_events(logger: logging.Logger, start: int, stop: int) -> None:
    """The workload: :data:`MESSAGE` with ``request_id`` ``i`` in ``extra``, for i in the range."""
    info, (msg, arg) = logger.info, MESSAGE
    for i in range(start, stop):
        info(msg, i, arg, extra={"request_id": i})


def timed_calls(
    logger: logging.Logger,
    start: int,
    n: int,
    exception_every: int = 0,
    message: tuple[str, str] = MESSAGE,
) -> tuple[list[int], list[int]]:
    """``n`` calls of :func:`log_events`, each timed (ns); every ``exception_every``-th a
    ``logger.exception(...)`` in an ``except`` block. Every call's time, and those ones'."""
    perf = time.perf_counter_ns
    info, exception = logger.info, logger.exception
    msg, arg = message
    samples = [0] * n
    exc_samples: list[int] = []
    for k in range(n):
        i = start + k
        if exception_every and i % exception_every == 0:
            try:
                raise ValueError(f"request {i} failed")
            except ValueError:
                t0 = perf()
                exception("user %s failed %s", i, arg, extra={"request_id": i})
                t1 = perf()
            exc_samples.append(t1 - t0)
        else:
            t0 = perf()
            info(msg, i, arg, extra={"request_id": i})
            t1 = perf()
        samples[k] = t1 - t0
    return samples, exc_samples


def handler_stats(handler: logging.Handler) -> dict[str, Any] | None:
    """``handler.stats()`` for a ShipHandler, None for the others."""
    stats = getattr(handler, "stats", None)
    return dict(stats()) if stats is not None else None


def wait_for_receiver(
    handler: logging.Handler,
    args: argparse.Namespace,
    events: int,
    since: tuple[float, float],
    deadline: float,
    base: int = 0,
    until: Callable[[dict[str, Any]], bool] | None = None,
    extra_quiet: float = 0.0,
) -> Result:
    """Poll the receiver until it counted every event the handler kept (and its ``stats()``
    satisfy ``until``), or ``deadline``; without ``--url`` (the NullHandler), done at once. A
    peer, which has no ``stats()``, is done once the count has not grown for the longest it
    holds an event plus :data:`SETTLE_MARGIN` (and ``extra_quiet``): ``settled``. From
    ``since`` (``process_time()``, ``perf_counter()``) to ``done_at``, the last count: the
    events delivered per second and the CPU per event, the polling's own left out."""
    peer = BY_KIND.get(args.handler)
    quiet = None if peer is None else peer.holds_s + SETTLE_MARGIN + extra_quiet
    poll_cpu = 0.0
    unique, grew_at = -1, time.perf_counter()
    while True:
        c0 = time.thread_time()
        now_unique = receiver_stats(args.url)["unique"] - base if args.url else events
        stats = handler_stats(handler) or {}
        poll_cpu += time.thread_time() - c0
        t = time.perf_counter()
        if now_unique != unique:
            unique, grew_at = now_unique, t
        lost_by_handler = stats.get("dropped", 0) + stats.get("rejected", 0)
        done = unique >= events - lost_by_handler and (until is None or until(stats))
        settled = not done and quiet is not None and t - grew_at >= quiet
        if done or settled or t >= deadline:
            cpu0, t0 = since
            done_at = grew_at if settled else t
            return {
                "done_at": done_at,
                "elapsed_s": done_at - t0,
                # Delivered events only: an event the handler dropped does not count.
                "events_per_s": min(unique, events) / (done_at - t0),
                "cpu_us_per_event": (time.process_time() - cpu0 - poll_cpu) / events * 1e6,
                "received_unique": unique,
                "timed_out": not (done or settled),
                "settled": settled,
            }
        time.sleep(0.01)


def paced(
    first: int, stop: int, rate: float, chunk: int, step: Callable[[int, int], None]
) -> float:
    """Call ``step(start, stop)`` over ``range(first, stop)`` in chunks, ``rate`` calls per
    second (0: no pause); return when it began. A late chunk is followed by shorter pauses,
    not a slower rate."""
    t0 = time.perf_counter()
    for start in range(first, stop, chunk):
        if rate:
            pause = t0 + (start - first) / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        step(start, min(start + chunk, stop))
    return t0


def rss_bytes() -> int:
    """This process's resident set size now."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (``ru_maxrss``, KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def latency_summary(samples_ns: Sequence[int]) -> dict[str, float]:
    """p50, p99, p99.9, max and mean of per-call times, in microseconds (zeros when none)."""
    ordered = sorted(samples_ns) or [0]
    n = len(samples_ns)

    def pct(p: float) -> float:
        # Nearest rank: the smallest sample with at least p% of samples at or below it.
        return ordered[max(0, math.ceil(p / 100 * n) - 1)] / 1000

    return {
        "n": n,
        "p50": pct(50),
        "p99": pct(99),
        "p99.9": pct(99.9),
        "max": ordered[-1] / 1000,
        "mean": sum(ordered) / len(ordered) / 1000,
    }


def emit_result(result: Result, abandon: bool = False) -> None:
    """Print the result as one line of stdout for ``run.py``; with ``abandon``, end the
    process at once, closing nothing but what :data:`AT_EXIT` holds."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    if abandon:
        _cleanup()
        sys.stderr.flush()
        os._exit(0)


def run_case(script: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run ``benchmarks/<script>`` in a fresh interpreter and return its JSON result.

    A case that fails, times out or prints no result yields ``{"error": ...}``
    (with the tail of its stderr) instead of raising, so one broken case does
    not cost the others; one that timed out after printing its result keeps it
    as ``partial``. ``exited_at`` is when the process was seen to end, or was
    killed (``time.monotonic()``, which every process on the machine shares).
    """
    cmd = [sys.executable, os.path.join(HERE, script), *args]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE)
    except subprocess.TimeoutExpired as e:
        return {
            "error": f"timed out after {timeout:.0f} s",
            "exited_at": time.monotonic(),  # killed just now
            "stderr": _tail(e.stderr),
            "partial": _last_json(e.stdout),
        }
    exited_at, wall = time.monotonic(), time.perf_counter() - t0
    result = _last_json(proc.stdout)
    if proc.returncode != 0 or result is None:
        error = f"exit status {proc.returncode}" if proc.returncode else "no JSON result"
        return {"error": error, "stderr": _tail(proc.stderr)}
    return {**result, "wall_s": wall, "exited_at": exited_at}


def _lines(text: str | bytes | None) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return (text or "").splitlines()


def _last_json(text: str | bytes | None) -> dict[str, Any] | None:
    for line in reversed(_lines(text)):
        try:
            value = json.loads(line) if line.startswith("{") else None
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _tail(text: str | bytes | None, lines: int = 15) -> str:
    return "\n".join(_lines(text)[-lines:])


def receiver_stats(url: str) -> dict[str, int]:
    """The counters of the receiver serving ``url`` (``GET /_logship/stats``)."""
    parts = urllib.parse.urlsplit(url)
    with urllib.request.urlopen(f"{parts.scheme}://{parts.netloc}/_logship/stats", timeout=2) as r:
        data: dict[str, int] = json.load(r)
    return data


@contextmanager
def receiver(command: Sequence[str] = PEER_RECEIVER) -> Iterator[str]:
    """Start a fresh receiver process; yield the URL to ship to; stop it after.

    Raises ``RuntimeError``, with the tail of its stderr, when it does not start.
    """
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=errors,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=HERE,
        )
        try:
            # Nothing more is printed after the first line: the pipe need not be drained.
            ready = select.select([proc.stdout], [], [], 15.0)[0]
            first = proc.stdout.readline() if ready and proc.stdout else ""
            if not first.startswith(_LISTENING):
                errors.seek(0)
                raise RuntimeError(
                    f"the receiver did not start (first line {first!r}):\n{_tail(errors.read())}"
                )
            yield first[len(_LISTENING) :].strip().rstrip("/") + "/bench"
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
