"""Case 1: the latency of one log call, as the application's thread sees it.

Times each of ``--calls`` calls of ``logger.info("user %s did %s", i,
"thing", extra={"request_id": i})`` with ``time.perf_counter_ns`` after
``--warmup`` untimed calls. With ``--exception-every K`` every K-th call is
``logger.exception(...)`` inside an ``except`` block instead; those calls are
also summarised on their own. A peer of ``peers.py`` is abandoned once the
calls are timed: what it still holds is not waited for.

    python benchmarks/latency.py --handler null|ship|down|PEER [--url URL] [--exception-every 100]
"""

from __future__ import annotations

import gc
import time
from typing import Any

from _common import (
    PEER_KINDS,
    bench_handler,
    bench_logger,
    case_parser,
    emit_result,
    flush_shipped,
    handler_stats,
    latency_summary,
    timed_calls,
)

# After the measured calls, how long a live ShipHandler may take to deliver them.
_FLUSH_TIMEOUT = 20.0


def main() -> None:
    """Run the case and print its result."""
    parser = case_parser(__doc__)
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--exception-every", type=int, default=0)
    args = parser.parse_args()
    with bench_handler(args) as handler:
        logger = bench_logger(handler)
        timed_calls(logger, 0, args.warmup, args.exception_every)
        if args.handler == "ship":
            flush_shipped(handler, _FLUSH_TIMEOUT)  # start from an empty pipeline
        gc.collect()
        t0 = time.perf_counter()
        samples, exc_samples = timed_calls(logger, args.warmup, args.calls, args.exception_every)
        loop_s = time.perf_counter() - t0
        delivered = flush_shipped(handler, _FLUSH_TIMEOUT) if args.handler == "ship" else None
        result: dict[str, Any] = {
            "case": "latency",
            "handler": args.handler,
            "exception_every": args.exception_every,
            "calls": args.calls,
            "loop_s": loop_s,
            "calls_per_s": args.calls / loop_s,
            "all": latency_summary(samples),
            "exceptions": latency_summary(exc_samples) if exc_samples else None,
            "flushed": delivered,
            "stats": handler_stats(handler),
        }
        emit_result(result, abandon=args.handler in PEER_KINDS)


if __name__ == "__main__":
    main()
