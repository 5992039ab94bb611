"""The cost of ``logship.RedactFilter`` per log call, against a NullHandler floor.

Times ``logger.info("user %s did %s", i, "thing", extra={"request_id": i})``
call by call (the workload of ``latency.py``) through a NullHandler, a
ShipHandler, and a ShipHandler with a ``RedactFilter``; with ``--secret``
the message also carries ``password=…`` and a card number, so every call
takes the filter's slow path (its regular expressions).

Run with no ``--handler`` it is standalone: it starts a receiver, runs each
case in its own subprocess, interleaved, ``--repeat`` times, and prints the
medians::

    .venv/bin/python benchmarks/redact.py [--repeat 5]

With ``--handler`` it is one case, printing one JSON object, as ``run.py``
runs it::

    python benchmarks/redact.py --handler null|ship [--url URL] [--redact] [--secret]
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import time
from typing import Any

from _common import (
    HANDLER_KINDS,
    bench_handler,
    bench_logger,
    emit_result,
    flush_shipped,
    handler_stats,
    latency_summary,
)
from _report import Table, median_of, ratio

# After the measured calls, how long a live ShipHandler may take to deliver them.
_FLUSH_TIMEOUT = 20.0

#: The cases of this benchmark, as run.py names them: key, arguments, needs a receiver.
CASES: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("redact/null", ("--handler", "null"), False),
    ("redact/ship", ("--handler", "ship"), True),
    ("redact/ship+redact", ("--handler", "ship", "--redact"), True),
    ("redact/ship+redact-secret", ("--handler", "ship", "--redact", "--secret"), True),
)


def timed_calls(logger: logging.Logger, start: int, n: int, secret: bool) -> list[int]:
    """Make ``n`` timed calls; return each one's nanoseconds."""
    perf = time.perf_counter_ns
    info = logger.info
    samples = [0] * n
    if secret:
        for k in range(n):
            i = start + k
            t0 = perf()
            info(
                "user %s paid with 4111 1111 1111 1111, password=%s",
                i,
                "hunter2",
                extra={"request_id": i},
            )
            samples[k] = perf() - t0
        return samples
    for k in range(n):
        i = start + k
        t0 = perf()
        info("user %s did %s", i, "thing", extra={"request_id": i})
        samples[k] = perf() - t0
    return samples


def filter_only(n: int, secret: bool) -> dict[str, float]:
    """The filter's own cost: ``RedactFilter.filter`` on fresh records, timed call by call."""
    import logship

    f = logship.RedactFilter()
    perf = time.perf_counter_ns
    msg = "user %s paid with 4111 1111 1111 1111, password=%s" if secret else "user %s did %s"
    samples = [0] * n
    for k in range(n):
        record = logging.LogRecord("bench", logging.INFO, __file__, 1, msg, (k, "thing"), None)
        record.request_id = k
        t0 = perf()
        f.filter(record)
        samples[k] = perf() - t0
    return latency_summary(samples)


def run_case(args: argparse.Namespace) -> None:
    """One case: time the calls, print the JSON result."""
    with bench_handler(args) as handler:
        if args.redact:
            import logship

            handler.addFilter(logship.RedactFilter())
        logger = bench_logger(handler)
        timed_calls(logger, 0, args.warmup, args.secret)
        if args.handler == "ship":
            flush_shipped(handler, _FLUSH_TIMEOUT)  # start from an empty pipeline
        gc.collect()
        t0 = time.perf_counter()
        samples = timed_calls(logger, args.warmup, args.calls, args.secret)
        loop_s = time.perf_counter() - t0
        delivered = flush_shipped(handler, _FLUSH_TIMEOUT) if args.handler == "ship" else None
        result = {
            "case": "redact",
            "handler": args.handler,
            "redact": args.redact,
            "secret": args.secret,
            "calls": args.calls,
            "loop_s": loop_s,
            "calls_per_s": args.calls / loop_s,
            "all": latency_summary(samples),
            "filter": filter_only(args.calls, args.secret) if args.redact else None,
            "flushed": delivered,
            "stats": handler_stats(handler),
        }
    emit_result(result)


def redact_table(results: dict[str, Any]) -> Table:
    """The table: p50 and mean per call, and over the NullHandler and the plain ShipHandler."""
    t = Table(
        "Redaction: per-call latency with RedactFilter (µs)",
        ("case", "p50", "p99", "mean", "p50 x null", "p50 x ship", "filter p50", "filter mean"),
    )
    rows = (
        ("NullHandler", "redact/null"),
        ("ShipHandler → receiver", "redact/ship"),
        ("ShipHandler + RedactFilter", "redact/ship+redact"),
        ("ShipHandler + RedactFilter, secret in message", "redact/ship+redact-secret"),
    )

    def median(key: str) -> dict[str, Any] | None:
        entry = results.get(key)
        return entry["median"] if entry else None

    null, ship = median("redact/null"), median("redact/ship")
    for label, key in rows:
        r = median(key)
        if r is None:
            if key in results:
                t.add_failed(label)
            continue
        s, f = r["all"], r.get("filter") or {}
        t.add(
            label,
            s["p50"],
            s["p99"],
            s["mean"],
            ratio(s["p50"], (null or {}).get("all", {}).get("p50")),
            ratio(s["p50"], (ship or {}).get("all", {}).get("p50")),
            f.get("p50"),
            f.get("mean"),
        )
    t.notes.append(
        "  filter: RedactFilter.filter() alone on fresh records (the same message and extra=)."
    )
    return t


def standalone(repeat: int) -> None:
    """Run every case ``repeat`` times, interleaved, and print the table of medians."""
    from _harness import receiver
    from _harness import run_case as run_script

    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, _args, _live in CASES}
    for r in range(repeat):
        for key, case_args, live in CASES:
            print(f"[{r + 1}/{repeat}] {key}", file=sys.stderr, flush=True)
            if live:
                with receiver() as url:
                    result = run_script("redact.py", [*case_args, "--url", url], 90)
            else:
                result = run_script("redact.py", list(case_args), 90)
            if "error" in result:
                print(f"  {result['error']}\n{result.get('stderr', '')}", file=sys.stderr)
            runs[key].append(result)
    results = {}
    for key, rs in runs.items():
        good = [x for x in rs if "error" not in x]
        results[key] = {"median": median_of(good) if good else None, "runs": rs}
    print(redact_table(results).text())


def main() -> None:
    """Parse the command line; one case with ``--handler``, else all of them."""
    parser = argparse.ArgumentParser(description=__doc__)
    # case_parser()'s options, with --handler optional: without it, run them all.
    parser.add_argument("--handler", choices=HANDLER_KINDS)
    parser.add_argument("--url", help="the live receiver (with --handler ship)")
    parser.add_argument("--overflow", help="ShipHandler overflow policy (default: its own)")
    parser.add_argument("--redact", action="store_true", help="add a RedactFilter")
    parser.add_argument("--secret", action="store_true", help="a message with secrets")
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3, help="standalone: runs per case")
    args = parser.parse_args()
    if args.handler is None:
        standalone(max(1, args.repeat))
    else:
        run_case(args)


if __name__ == "__main__":
    main()
