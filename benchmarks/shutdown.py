"""Exit: log 10,000 events, then let the interpreter exit normally (table 5).

The handler is never closed: what it does at a normal exit is the subject.
The result carries ``last_call_at`` (``time.monotonic()``, which the parent
shares); ``run.py`` notes when the process ended and reads the receiver's
count after. With ``--handler null``: the interpreter's own exit.

    python benchmarks/shutdown.py --handler null|ship|PEER [--url URL] [--spill-dir DIR]
"""

from __future__ import annotations

import time

import _common as c


def main() -> None:
    """Run the case, print its result, and exit."""
    parser = c.case_parser(__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--spill-dir", help="the ShipHandler's spill folder, a peer's working one")
    args = parser.parse_args()
    handler, _close = c.make_handler(args, args.spill_dir)  # never called: exit does what it does
    logger = c.bench_logger(handler)
    t0 = time.perf_counter()
    c.log_events(logger, 0, args.events)
    last_call_at = time.monotonic()
    c.emit_result(
        {
            "case": "shutdown",
            "handler": args.handler,
            "events": args.events,
            "loop_s": time.perf_counter() - t0,
            "last_call_at": last_call_at,
        }
    )


if __name__ == "__main__":
    main()
