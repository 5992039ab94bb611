"""The latency of one log call, as the application's thread sees it (tables 1 and 11).

Times each of ``--calls`` calls of the benchmarks' call after ``--warmup``
untimed ones; ``--exception-every K`` makes every K-th a
``logger.exception(...)``, ``--redact`` adds a ``RedactFilter`` (also timed
alone) and ``--secret`` puts secrets in every message. A peer is abandoned
once the calls are timed. What is measured and why: ``docs/performance.md``.

    python benchmarks/latency.py --handler null|ship|down|PEER [--url URL]
        [--exception-every 100] [--redact [--secret]]
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

import _common as c

# After the measured calls, how long a live ShipHandler may take to deliver them.
_FLUSH_TIMEOUT = 20.0


def filter_only(n: int, message: tuple[str, str]) -> dict[str, float]:
    """``RedactFilter.filter`` alone on ``n`` fresh records of the timed call, each timed."""
    import logship

    f, perf, (msg, arg) = logship.RedactFilter(), time.perf_counter_ns, message
    samples = [0] * n
    for k in range(n):
        record = logging.LogRecord(c.LOGGER_NAME, logging.INFO, __file__, 1, msg, (k, arg), None)
        record.request_id = k
        t0 = perf()
        f.filter(record)
        samples[k] = perf() - t0
    return c.latency_summary(samples)


def main() -> None:
    """Run the case and print its result."""
    parser = c.case_parser(__doc__)
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--exception-every", type=int, default=0)
    parser.add_argument("--redact", action="store_true", help="add a logship.RedactFilter")
    parser.add_argument("--secret", action="store_true", help="secrets in every message")
    args = parser.parse_args()
    message = c.SECRET_MESSAGE if args.secret else c.MESSAGE
    with c.bench_handler(args) as handler:
        if args.redact:
            import logship

            handler.addFilter(logship.RedactFilter())
        logger = c.bench_logger(handler)
        c.timed_calls(logger, 0, args.warmup, args.exception_every, message)
        if args.handler in c.SHIP_KINDS:
            c.flush_shipped(handler, _FLUSH_TIMEOUT)  # start from an empty pipeline
        gc.collect()
        t0 = time.perf_counter()
        samples, exc = c.timed_calls(logger, args.warmup, args.calls, args.exception_every, message)
        loop_s = time.perf_counter() - t0
        # Delivered before the filter is timed alone, so the worker does not compete.
        shipping = args.handler in c.SHIP_KINDS
        flushed = c.flush_shipped(handler, _FLUSH_TIMEOUT) if shipping else None
        result: dict[str, Any] = {
            "case": "latency",
            "handler": args.handler,
            "exception_every": args.exception_every,
            "redact": args.redact,
            "secret": args.secret,
            "calls": args.calls,
            "loop_s": loop_s,
            "calls_per_s": args.calls / loop_s,
            "all": c.latency_summary(samples),
            "exceptions": c.latency_summary(exc) if exc else None,
            "filter": filter_only(args.calls, message) if args.redact else None,
            "flushed": flushed,
            "stats": c.handler_stats(handler),
        }
        c.emit_result(result, abandon=args.handler in c.PEER_KINDS)


if __name__ == "__main__":
    main()
