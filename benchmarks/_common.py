"""Helpers shared by the benchmark cases (the child processes).

Each case script builds its handler with :func:`bench_handler`, logs the one
workload of :func:`log_events` (or times it call by call), and prints one
JSON object with :func:`emit_result`; ``run.py`` reads it back.
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
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import psutil

if TYPE_CHECKING:
    import logship

LOGGER_NAME = "bench"
STATS_PATH = "/_logship/stats"
_POLL_INTERVAL = 0.01

#: Handler kinds a case accepts: a NullHandler floor, a ShipHandler to a
#: live receiver (``--url``), or a ShipHandler to a port where nothing listens.
HANDLER_KINDS = ("null", "ship", "down")


def case_parser(description: str | None) -> argparse.ArgumentParser:
    """The options every case takes: the handler kind, its URL and overflow."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--handler", choices=HANDLER_KINDS, required=True)
    parser.add_argument("--url", help="the live receiver (with --handler ship)")
    parser.add_argument("--overflow", help="ShipHandler overflow policy (default: its own)")
    return parser


def dead_endpoint() -> tuple[socket.socket, str]:
    """A URL where nothing listens: a port bound, never listening (connect is refused).

    Keep the socket open for as long as the URL is in use, so that no one
    else takes the port.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}/bench"


@contextmanager
def bench_handler(
    args: argparse.Namespace, spill_dir: str | None = None, **options: Any
) -> Iterator[logging.Handler]:
    """The handler that ``--handler`` asks for, closed (and its spill folder removed) after.

    A ShipHandler gets a private, temporary ``spill_dir`` so that nothing a
    run leaves behind is replayed by the next one, unless ``spill_dir`` names
    a folder, which is then the caller's to keep or remove; every other
    option is its default unless ``--overflow`` or ``options`` say otherwise.
    """
    if args.handler == "null":
        yield logging.NullHandler()
        return
    import logship  # only ShipHandler cases pay for the import

    dead: socket.socket | None = None
    if args.handler == "down":
        dead, url = dead_endpoint()
        # Nothing can be delivered; do not spend the default 5 s trying at close().
        options.setdefault("shutdown_timeout", 0.5)
    elif args.url:
        url = args.url
    else:
        raise SystemExit("--handler ship needs --url")
    if args.overflow:
        options["overflow"] = args.overflow
    folder = spill_dir or tempfile.mkdtemp(prefix="logship-bench-")
    handler = logship.ShipHandler(url=url, spill_dir=folder, **options)
    try:
        yield handler
    finally:
        handler.close()
        if spill_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
        if dead is not None:
            dead.close()


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
    """The workload: one INFO call with two arguments and one ``extra`` field per event."""
    info = logger.info
    for i in range(start, stop):
        info("user %s did %s", i, "thing", extra={"request_id": i})


def _fail(i: int) -> None:
    raise ValueError(f"request {i} failed")


def timed_calls(
    logger: logging.Logger, start: int, n: int, exception_every: int = 0
) -> tuple[list[int], list[int]]:
    """Make ``n`` timed log calls; return every call's nanoseconds and the exception calls' ones.

    The calls are those of :func:`log_events`; with ``exception_every`` K,
    every K-th is ``logger.exception(...)`` inside an ``except`` block instead.
    """
    perf = time.perf_counter_ns
    info, exception = logger.info, logger.exception
    samples = [0] * n
    exc_samples: list[int] = []
    for k in range(n):
        i = start + k
        if exception_every and i % exception_every == 0:
            try:
                _fail(i)
            except ValueError:
                t0 = perf()
                exception("user %s failed %s", i, "thing", extra={"request_id": i})
                t1 = perf()
            exc_samples.append(t1 - t0)
        else:
            t0 = perf()
            info("user %s did %s", i, "thing", extra={"request_id": i})
            t1 = perf()
        samples[k] = t1 - t0
    return samples, exc_samples


def handler_stats(handler: logging.Handler) -> dict[str, Any] | None:
    """``handler.stats()`` for a ShipHandler, None for the NullHandler."""
    stats = getattr(handler, "stats", None)
    return dict(stats()) if stats is not None else None


def flush_shipped(handler: logging.Handler, timeout: float) -> bool:
    """Wait until a ShipHandler has delivered every event (True) or ``timeout`` passed."""
    return bool(cast("logship.ShipHandler", handler).flush(timeout))


def receiver_stats(url: str, timeout: float = 2.0) -> dict[str, int]:
    """The counters of the receiver serving ``url`` (``GET /_logship/stats``)."""
    parts = urllib.parse.urlsplit(url)
    with urllib.request.urlopen(
        f"{parts.scheme}://{parts.netloc}{STATS_PATH}", timeout=timeout
    ) as r:
        data: dict[str, int] = json.load(r)
    return data


def wait_for_receiver(
    handler: logging.Handler,
    url: str,
    base: int,
    events: int,
    deadline: float,
    until: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """Poll the receiver until it counted every event the handler kept, or ``deadline``.

    With ``until``, the handler's ``stats()`` must also satisfy it. Returns
    when the poll saw the last event (``done_at``), the receiver's unique
    count, and the CPU seconds the polling itself cost this thread.
    """
    poll_cpu = 0.0
    while True:
        c0 = time.thread_time()
        unique = receiver_stats(url)["unique"] - base
        stats = handler_stats(handler) or {}
        poll_cpu += time.thread_time() - c0
        t = time.perf_counter()
        lost_by_handler = stats.get("dropped", 0) + stats.get("rejected", 0)
        done = unique >= events - lost_by_handler and (until is None or until(stats))
        if done or t >= deadline:
            return {
                "done_at": t,
                "unique": unique,
                "poll_cpu_s": poll_cpu,
                "timed_out": not done,
            }
        time.sleep(_POLL_INTERVAL)


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
    """p50, p99, p99.9, max and mean of per-call times, in microseconds."""
    ordered = sorted(samples_ns)
    n = len(ordered)

    def pct(p: float) -> float:
        # Nearest rank: the smallest sample with at least p% of samples at or below it.
        return ordered[max(0, math.ceil(p / 100 * n) - 1)] / 1000

    return {
        "n": n,
        "p50": pct(50),
        "p99": pct(99),
        "p99.9": pct(99.9),
        "max": ordered[-1] / 1000,
        "mean": sum(ordered) / n / 1000,
    }


def emit_result(result: dict[str, Any]) -> None:
    """Print the case's result as the last line of stdout, for ``run.py``."""
    result.setdefault("pid", os.getpid())
    result.setdefault("python", sys.version.split()[0])
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
