"""What the benchmark cases (the child processes) share.

Each case script builds its handler with :func:`bench_handler`, logs the one
workload of :func:`log_events` (or times it call by call with
:func:`timed_calls`), and prints one JSON object with :func:`emit_result`;
``run.py`` reads it back.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import shutil
import socket
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, cast

import psutil
from _harness import receiver, receiver_stats
from peers import BY_KIND, PEER_KINDS, Closer

if TYPE_CHECKING:
    import logship

LOGGER_NAME = "bench"
MiB = 2**20
#: The call every case makes: a message with two arguments, and one ``extra`` field.
MESSAGE = ("user %s did %s", "thing")
#: The same call with a card number and a password in it: RedactFilter's slow path.
SECRET_MESSAGE = ("user %s paid with 4111 1111 1111 1111, password=%s", "hunter2")
#: logship speaking an aggregator's own protocol, by kind: compared with the peer
#: that speaks it (``ship-otlp`` with the OpenTelemetry SDK's exporter,
#: ``ship-forward``, to the receiver's forward port, with fluent-logger).
SHIP_PROTOCOLS = {"ship-otlp": "otlp", "ship-forward": "forward"}
#: The kinds that are a ShipHandler delivering to the live receiver.
SHIP_KINDS = ("ship", *SHIP_PROTOCOLS)
#: Handler kinds a case accepts: a NullHandler floor, a ShipHandler to a
#: live receiver (``--url``), a ShipHandler to a port where nothing listens,
#: or one of the peers of ``peers.py`` to a live ``peer_receivers.py``.
HANDLER_KINDS = ("null", *SHIP_KINDS, "down", *PEER_KINDS)
#: The kinds that ship to a live receiver at ``--url``.
LIVE_KINDS = (*SHIP_KINDS, *PEER_KINDS)
#: A peer has no stats() to say it is done: it is taken as done once nothing
#: has arrived for the longest it holds an event plus this many seconds.
SETTLE_MARGIN = 2.0
_POLL_INTERVAL = 0.01
#: What an abandoned process still does before it ends (temporary folders, its own receiver).
_AT_ABANDON: list[Closer] = []


def case_parser(description: str | None) -> argparse.ArgumentParser:
    """The options every case takes: the handler kind, its URL, overflow and durability."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--handler", choices=HANDLER_KINDS, required=True)
    parser.add_argument(
        "--url", help="the live receiver (default: a peer_receivers.py of the case's own)"
    )
    parser.add_argument("--overflow", help="ShipHandler overflow policy (default: its own)")
    parser.add_argument("--durability", help="ShipHandler durability (default: its own)")
    return parser


def settle_quiet(kind: str) -> float | None:
    """How long nothing must arrive before a peer counts as done; None for a ShipHandler."""
    peer = BY_KIND.get(kind)
    return None if peer is None else peer.holds_s + SETTLE_MARGIN


def dead_endpoint() -> tuple[socket.socket, str]:
    """A URL where nothing listens: a port bound, never listening (connect is refused).

    Keep the socket open for as long as the URL is in use, so that no one
    else takes the port.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}/bench"


def make_handler(
    args: argparse.Namespace, spill_dir: str | None = None, **options: Any
) -> tuple[logging.Handler, Closer]:
    """The handler that ``--handler`` asks for, and what closes it and cleans up after it.

    A ShipHandler gets a private, temporary ``spill_dir`` so that nothing a
    run leaves behind is replayed by the next one, unless ``spill_dir`` names
    a folder, which is then the caller's to keep or remove; every other
    option is its default unless ``--overflow``, ``--durability`` or ``options`` say
    otherwise.
    A peer is built by ``peers.py`` with the temporary folder as the current
    one, so that whatever it writes (logzio's backups) stays out of the
    repository; closing it delivers what it holds, as its documentation says.
    """
    if args.handler == "null":
        return logging.NullHandler(), lambda: None
    if args.handler != "down" and not args.url:
        raise SystemExit(f"--handler {args.handler} needs --url")
    folder = spill_dir or tempfile.mkdtemp(prefix="logship-bench-")
    cleanup: list[Closer] = []
    if not spill_dir:
        cleanup.append(lambda: shutil.rmtree(folder, ignore_errors=True))
        _AT_ABANDON.append(cleanup[-1])
    if args.handler in BY_KIND:
        os.chdir(folder)
        handler, close = BY_KIND[args.handler].build(args.url)
    else:
        import logship  # only ShipHandler cases pay for the import

        url = args.url
        if args.handler == "ship-forward":
            host = urllib.parse.urlsplit(url).hostname
            url = f"tcp://{host}:{receiver_stats(url)['forward_port']}"
        if args.handler == "down":
            dead, url = dead_endpoint()
            cleanup.append(dead.close)
            # Nothing can be delivered; do not spend the default 5 s trying at close().
            options.setdefault("shutdown_timeout", 0.5)
        if args.overflow:
            options["overflow"] = args.overflow
        if args.handler in SHIP_PROTOCOLS:
            options["protocol"] = SHIP_PROTOCOLS[args.handler]
        if args.durability:
            options["durability"] = args.durability
        ship = logship.ShipHandler(url=url, spill_dir=folder, **options)
        handler, close = ship, ship.close

    def close_all() -> None:
        close()
        for step in cleanup:
            step()

    return handler, close_all


@contextmanager
def bench_handler(
    args: argparse.Namespace, spill_dir: str | None = None, **options: Any
) -> Iterator[logging.Handler]:
    """:func:`make_handler`'s handler, closed (and its temporary folder removed) after.

    A live kind run without ``--url`` (a case run by hand) gets a receiver of
    its own, stopped after the handler is closed.
    """
    own = ExitStack()
    _AT_ABANDON.append(own.close)
    try:
        if args.handler in LIVE_KINDS and not args.url:
            args.url = own.enter_context(receiver())
        handler, close = make_handler(args, spill_dir, **options)
        try:
            yield handler
        finally:
            close()
    finally:
        own.close()


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


def _fail(i: int) -> None:
    raise ValueError(f"request {i} failed")


def timed_calls(
    logger: logging.Logger,
    start: int,
    n: int,
    exception_every: int = 0,
    message: tuple[str, str] = MESSAGE,
) -> tuple[list[int], list[int]]:
    """Make ``n`` timed log calls; return every call's nanoseconds and the exception calls' ones.

    The calls are those of :func:`log_events` (with ``message`` instead of
    :data:`MESSAGE`); with ``exception_every`` K, every K-th is
    ``logger.exception(...)`` inside an ``except`` block instead.
    """
    perf = time.perf_counter_ns
    info, exception = logger.info, logger.exception
    msg, arg = message
    samples = [0] * n
    exc_samples: list[int] = []
    for k in range(n):
        i = start + k
        if exception_every and i % exception_every == 0:
            try:
                _fail(i)
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


def flush_shipped(handler: logging.Handler, timeout: float) -> bool:
    """Wait until a ShipHandler has delivered every event (True) or ``timeout`` passed."""
    return bool(cast("logship.ShipHandler", handler).flush(timeout))


def wait_for_receiver(
    handler: logging.Handler,
    url: str,
    base: int,
    events: int,
    deadline: float,
    until: Callable[[dict[str, Any]], bool] | None = None,
    quiet: float | None = None,
) -> dict[str, Any]:
    """Poll the receiver until it counted every event the handler kept, or ``deadline``.

    With ``until``, the handler's ``stats()`` must also satisfy it. With
    ``quiet`` (a peer, which has no ``stats()``), it also stops once the
    count has not grown for that many seconds, and the events still missing
    are taken as lost (``settled``). Returns when the poll saw the last event
    (``done_at``), the receiver's unique count, and the CPU seconds the
    polling itself cost this thread.
    """
    poll_cpu = 0.0
    unique, grew_at = -1, time.perf_counter()
    while True:
        c0 = time.thread_time()
        now_unique = receiver_stats(url)["unique"] - base
        stats = handler_stats(handler) or {}
        poll_cpu += time.thread_time() - c0
        t = time.perf_counter()
        if now_unique != unique:
            unique, grew_at = now_unique, t
        lost_by_handler = stats.get("dropped", 0) + stats.get("rejected", 0)
        done = unique >= events - lost_by_handler and (until is None or until(stats))
        settled = not done and quiet is not None and t - grew_at >= quiet
        if done or settled or t >= deadline:
            return {
                "done_at": grew_at if settled else t,
                "unique": unique,
                "poll_cpu_s": poll_cpu,
                "timed_out": not (done or settled),
                "settled": settled,
            }
        time.sleep(_POLL_INTERVAL)


def paced(events: int, rate: float, chunk: int, step: Callable[[int, int], None]) -> float:
    """Call ``step(start, count)`` for ``events`` in chunks, ``rate`` per second; return the start.

    Each chunk starts when it is due, counted from the first (0: no pause),
    so a late chunk is followed by shorter pauses, not a slower rate.
    """
    t0 = time.perf_counter()
    for start in range(0, events, chunk):
        if rate:
            pause = t0 + start / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        step(start, min(chunk, events - start))
    return t0


def folder_usage(folder: str) -> dict[str, Any]:
    """The names (sorted) and total bytes of the files in ``folder``; none if it is missing."""
    try:
        entries = [e for e in os.scandir(folder) if e.is_file()]
    except FileNotFoundError:
        entries = []
    return {
        "files": sorted(e.name for e in entries),
        "bytes": sum(e.stat().st_size for e in entries),
    }


def rss_bytes() -> int:
    """This process's resident set size now."""
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


def emit_result(result: dict[str, Any], abandon: bool = False) -> None:
    """Print the case's result as one line of stdout, for ``run.py``.

    With ``abandon`` the process then ends at once, closing nothing (but
    removing the temporary folders it made and stopping a receiver of its
    own): for a case that measured what it needed and must not wait for a
    peer to deliver (or fail to deliver) what it still holds.
    """
    result.setdefault("pid", os.getpid())
    result.setdefault("python", sys.version.split()[0])
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    if abandon:
        for step in reversed(_AT_ABANDON):
            step()
        sys.stderr.flush()
        os._exit(0)
