"""Replaying a spill folder to a live receiver, from a fresh process (table 9).

Counts the events in ``--spill-dir`` as ``logship spill status`` does, then
builds a ShipHandler at its defaults on that folder and logs nothing: it
replays from its construction. Waits until the receiver counted every event
and ``stats()["replayed"]`` agrees, then until no spill file is left.

    python benchmarks/replay.py --handler ship --url URL --spill-dir DIR
"""

from __future__ import annotations

import time

import _common as c
from _harness import receiver_stats

from logship.cli import spillinspect as si
from logship.worker.spill import folder as spillfolder
from logship.worker.spill import safefiles as safe

# The folder's lock file stays after the last spill file goes; it holds no events.
_NOT_SPILL = frozenset({safe.LOCK_NAME})


def wait_for_empty(folder: str, deadline: float) -> float | None:
    """Wait until ``folder`` holds no spill file; when that was seen, or None at ``deadline``."""
    while True:
        t = time.perf_counter()
        if not spillfolder.has_spilled(folder):
            return t
        if t >= deadline:
            return None
        time.sleep(0.01)


def main() -> None:
    """Run the case and print its result."""
    parser = c.case_parser(__doc__)
    parser.add_argument("--spill-dir", required=True, help="the folder spill.py left")
    parser.add_argument("--deadline", type=float, default=40.0, help="seconds to wait for it all")
    args = parser.parse_args()
    if args.handler != "ship":
        parser.error("replay needs --handler ship and --url")
    on_disk = si.summarize(args.spill_dir, set())
    if not on_disk.events:
        raise SystemExit(f"nothing spilled in {args.spill_dir}: the spill case failed?")
    n = on_disk.events
    base = receiver_stats(args.url)["unique"]
    cpu0, t0 = time.process_time(), time.perf_counter()
    with c.bench_handler(args, spill_dir=args.spill_dir) as handler:
        waited = c.wait_for_receiver(
            handler,
            args.url,
            base,
            n,
            t0 + args.deadline,
            until=lambda stats: stats["replayed"] >= n,
        )
        cpu = time.process_time() - cpu0 - waited["poll_cpu_s"]
        emptied_at = wait_for_empty(args.spill_dir, waited["done_at"] + 5.0)
        running = c.handler_stats(handler)
    stats = c.handler_stats(handler)
    left = c.folder_usage(args.spill_dir)
    elapsed = waited["done_at"] - t0
    c.emit_result(
        {
            "case": "replay",
            "handler": args.handler,
            "on_disk_events": n,
            "on_disk_bytes": on_disk.bytes,
            "on_disk_files": on_disk.files,
            "elapsed_s": elapsed,
            "events_per_s": min(waited["unique"], n) / elapsed,
            "cpu_us_per_event": cpu / n * 1e6,
            "received_unique": waited["unique"],
            "timed_out": waited["timed_out"],
            # From the last event counted to the last spill file gone.
            "emptied_after_s": None if emptied_at is None else emptied_at - waited["done_at"],
            "left_files": [f for f in left["files"] if f not in _NOT_SPILL],
            "left_bytes": left["bytes"],
            "stats_running": running,
            "stats": stats,
            "receiver": receiver_stats(args.url),
        }
    )


if __name__ == "__main__":
    main()
