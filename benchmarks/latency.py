"""The latency of one log call, as the application's thread sees it (tables 1 and 11).

``--calls`` calls timed one by one after ``--warmup`` untimed ones. What is
measured and why: ``docs/performance.md``.
"""

from __future__ import annotations

import contextlib
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


def recording_span(wanted: bool) -> contextlib.AbstractContextManager[Any]:
    """A recording span of OpenTelemetry's SDK, current around the calls, when ``wanted``:
    every event then carries its ids, read on the calling thread."""
    if not wanted:
        return contextlib.nullcontext()
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider().get_tracer("bench").start_as_current_span("request")


def measure(args: Any, handler: logging.Handler, logger: logging.Logger) -> c.Result:
    message = c.SECRET_MESSAGE if args.secret else c.MESSAGE
    shipping = args.handler in c.SHIP_KINDS
    if args.redact:
        import logship

        handler.addFilter(logship.RedactFilter())
    with recording_span(args.span):
        c.timed_calls(logger, 0, args.warmup, args.exception_every, message)
        if shipping:
            handler.flush(_FLUSH_TIMEOUT)  # start from an empty pipeline
        gc.collect()
        t0 = time.perf_counter()
        samples, exc = c.timed_calls(logger, args.warmup, args.calls, args.exception_every, message)
        loop_s = time.perf_counter() - t0
    # Delivered before the filter is timed alone, so the worker does not compete.
    flushed = handler.flush(_FLUSH_TIMEOUT) if shipping else None
    return {
        "calls_per_s": args.calls / loop_s,
        "all": c.latency_summary(samples),
        "exceptions": c.latency_summary(exc) if exc else None,
        "filter": filter_only(args.calls, message) if args.redact else None,
        "flushed": flushed,
    }


if __name__ == "__main__":
    c.case(
        measure,
        __doc__,
        abandon=True,
        calls=50_000,
        warmup=2_000,
        exception_every=0,
        redact=(False, "add a logship.RedactFilter"),
        secret=(False, "secrets in every message"),
        span=(False, "inside a recording OpenTelemetry span (its SDK)"),
    )
