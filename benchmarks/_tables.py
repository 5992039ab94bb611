"""The report's tables, built from the cases' results (medians and single runs).

Every figure is set against the NullHandler case measured in the same run;
the targets are printed next to the figures, never asserted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from _report import Table, cell, median_of, ratio, verdict

#: Targets, printed next to the figures.
P50_RATIO_TARGET = 1.3
THROUGHPUT_TARGET = 50_000
CAPACITY = 10_000  # ShipHandler's default, which the memory case relies on
#: RSS counts as flat when doubling the events logged (100k to 200k) grows it
#: by at most this fraction; pinning the events would double it (+100%).
PLATEAU_LATE_GROWTH = 0.25


def _figure(run: dict[str, Any] | None, *path: str) -> float | None:
    """The number at ``path`` in a result, or None when it is missing."""
    value: Any = run
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _get(results: dict[str, Any], key: str) -> dict[str, Any] | None:
    entry = results.get(key)
    return entry["median"] if entry else None


def _first(results: dict[str, Any], *keys: str) -> dict[str, Any] | None:
    """The median result of the first of ``keys`` that has one."""
    for key in keys:
        r = _get(results, key)
        if r is not None:
            return r
    return None


def _good_runs(results: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The runs of case ``key`` that produced a result."""
    entry = results.get(key)
    return [r for r in entry["runs"] if "error" not in r] if entry else []


#: A latency row: its label, its case, the NullHandler case it is set
#: against, and the part of the result (``all`` or ``exceptions``).
LatencyRow = tuple[str, str, str, str]

LATENCY_HEADERS = (
    "case",
    "p50",
    "p99",
    "p99.9",
    "max",
    "mean",
    "p50 x null",
    "p99 x null",
    "calls/s",
    "dropped",
)


def _add_latency_rows(
    t: Table, results: dict[str, Any], rows: Sequence[LatencyRow], calls_key: str
) -> None:
    """Add one row of percentiles per case, with p50 and p99 over its NullHandler floor.

    ``calls_key`` names the result's calls-per-second figure.
    """
    for label, key, floor_key, part in rows:
        r, floor = _get(results, key), _get(results, floor_key)
        if r is None:
            t.add_failed(label)
            continue
        s, f = r[part], (floor or {}).get(part) or {}
        dropped = (r["stats"] or {}).get("dropped") if part == "all" else None
        calls = r[calls_key] if part == "all" else None
        t.add(
            label,
            s["p50"],
            s["p99"],
            s["p99.9"],
            s["max"],
            s["mean"],
            ratio(s["p50"], f.get("p50")),
            ratio(s["p99"], f.get("p99")),
            calls,
            dropped,
        )


def _add_p50_targets(
    t: Table, results: dict[str, Any], checks: Sequence[tuple[str, str, str]]
) -> None:
    """Add a note per ``(label, case, NullHandler case)``: p50 against ``P50_RATIO_TARGET``."""
    for label, key, floor_key in checks:
        r, floor = _get(results, key), _get(results, floor_key)
        x = ratio(_figure(r, "all", "p50"), _figure(floor, "all", "p50"))
        ok = None if x is None else x <= P50_RATIO_TARGET
        shown = "-" if x is None else f"{x:.3f}x"
        t.notes.append(
            f"  target p50 ≤ {P50_RATIO_TARGET} x NullHandler p50, {label}: {shown}  {verdict(ok)}"
        )


def latency_table(results: dict[str, Any]) -> Table:
    """Table 1: per-call latency, each row set against its NullHandler floor."""
    t = Table(
        "1. Per-call latency on the application thread (µs; 50,000 timed calls)", LATENCY_HEADERS
    )
    rows: tuple[LatencyRow, ...] = (
        ("NullHandler", "latency/null", "latency/null", "all"),
        ("ShipHandler → receiver", "latency/ship", "latency/null", "all"),
        ("ShipHandler → endpoint down", "latency/down", "latency/null", "all"),
        ("NullHandler, exception/100", "latency/null+exc", "latency/null+exc", "all"),
        ("ShipHandler, exception/100", "latency/ship+exc", "latency/null+exc", "all"),
        (
            "  NullHandler, exception calls only",
            "latency/null+exc",
            "latency/null+exc",
            "exceptions",
        ),
        (
            "  ShipHandler, exception calls only",
            "latency/ship+exc",
            "latency/null+exc",
            "exceptions",
        ),
    )
    _add_latency_rows(t, results, rows, "calls_per_s")
    _add_p50_targets(
        t,
        results,
        (
            ("receiver", "latency/ship", "latency/null"),
            ("endpoint down", "latency/down", "latency/null"),
        ),
    )
    t.notes.append(
        "  dropped: events the handler dropped, warm-up included (stats(); with a receiver, "
        "after a flush)."
    )
    return t


def throughput_table(results: dict[str, Any]) -> Table:
    """Table 2: end-to-end throughput, CPU per event, RSS and losses."""
    t = Table(
        "2. End-to-end throughput (50,000 events; receiver in another process)",
        [
            "case",
            "delivered/s",
            "loop ev/s",
            "CPU µs/ev",
            "x null",
            "app-thread µs/ev",
            "peak RSS MiB",
            "RSS growth MiB",
            "lost",
            "dropped",
            "spilled",
        ],
    )
    floor = _get(results, "throughput/null")
    rows = (
        ("NullHandler (loop only)", "throughput/null"),
        ("ShipHandler, defaults (spill)", "throughput/ship"),
        ("ShipHandler, overflow=block", "throughput/ship-block"),
        ("ShipHandler, defaults, 50,500 events", "throughput/ship-tail"),
    )
    for label, key in rows:
        r = _get(results, key)
        if r is None:
            t.add_failed(label)
            continue
        t.add(
            label,
            r["events_per_s"],
            r["loop_events_per_s"],
            r["cpu_us_per_event"],
            ratio(r["cpu_us_per_event"], _figure(floor, "cpu_us_per_event")),
            r["main_thread_cpu_us_per_event"],
            r["peak_rss_mib"],
            r["peak_rss_growth_mib"],
            r["lost"] if key != "throughput/null" else None,
            _figure(r, "stats", "dropped"),
            _figure(r, "stats", "spilled"),
        )
    for key in ("throughput/ship", "throughput/ship-block"):
        r = _get(results, key)
        rate = _figure(r, "events_per_s")
        ok = None if rate is None else rate >= THROUGHPUT_TARGET
        shown = "-" if rate is None else f"{rate:,.0f}/s"
        timed_out = " (timed out waiting for the receiver)" if r and r["timed_out"] else ""
        t.notes.append(
            f"  target ≥ {THROUGHPUT_TARGET:,} events/s delivered (gzip+JSON), {key}: "
            f"{shown}  {verdict(ok)}{timed_out}"
        )
    t.notes += [
        "  delivered/s: events counted unique by the receiver / (first call → last one counted).",
        "  loop ev/s: how fast the logging loop itself ran. CPU: the whole process (every",
        "  thread) until delivery, polling excluded; app-thread: the logging thread only.",
        "  lost: events logged but never counted by the receiver (the default overflow, 'spill',",
        "  may drop what neither the ring nor the spill takes); dropped, spilled: from stats().",
        "  50,500 events: a burst that ends mid-batch. Its last 500 are sent one or two tenths of",
        "  flush_interval after the stream falls silent (not when they are flush_interval old).",
    ]
    return t


def memory_table(results: dict[str, Any]) -> Table:
    """Table 3: RSS while logging 200,000 events to an endpoint that is down."""
    t = Table(
        "3. Memory with the endpoint down (200,000 events; RSS growth over the start, MiB)",
        [
            "case",
            "base RSS",
            "+50k",
            "+100k",
            "+200k",
            "peak growth",
            "ev/s",
            "queued",
            "dropped",
            "spilled",
            "spill MiB",
        ],
    )
    growth: dict[str, float] = {}
    for label, key in (
        ("NullHandler", "memory/null"),
        ("ShipHandler → endpoint down", "memory/down"),
    ):
        r = _get(results, key)
        if r is None:
            t.add_failed(label)
            continue
        points = {p["events"]: p for p in r["points"]}
        growth[key] = r["peak_rss_growth_mib"]
        stats = r["stats"] or {}
        t.add(
            label,
            r["base_rss_mib"],
            *(points[n]["growth_mib"] for n in (50_000, 100_000, 200_000)),
            growth[key],
            points[200_000]["events_per_s"],
            stats.get("queued"),
            stats.get("dropped"),
            stats.get("spilled"),
            None if stats.get("spill_bytes") is None else stats["spill_bytes"] / 2**20,
        )
    down = _get(results, "memory/down")
    if down is not None:
        late = [_late_growth(r) for r in _good_runs(results, "memory/down")]
        flat = sum(x <= PLATEAU_LATE_GROWTH for x in late)
        queued = (down["stats"] or {}).get("queued")
        extra = growth["memory/down"] - growth.get("memory/null", 0.0)
        t.notes += [
            f"  peak growth over the NullHandler case: {extra:.1f} MiB. From 100k to 200k "
            f"events RSS grew by {median_of(late):+.0%} (median; worst run {max(late):+.0%});",
            "  memory that grew with the events logged would grow by about +100% there.",
            f"  target memory bounded by capacity ({CAPACITY:,} events): plateau "
            f"{verdict(flat == len(late))} in {flat} of {len(late)} runs "
            f"(growth ≤ {PLATEAU_LATE_GROWTH:+.0%}); events in memory at the end: {queued}",
        ]
    return t


#: The spill cases: label, case, and the NullHandler case made the same way.
SPILL_ROWS = (
    ("NullHandler, tight loop", "spill/null", "spill/null"),
    ("ShipHandler → down, tight loop", "spill/down", "spill/null"),
    ("NullHandler, paced", "spill/null-paced", "spill/null-paced"),
    ("ShipHandler → down, paced", "spill/down-paced", "spill/null-paced"),
)


def _paced(label: str, results: dict[str, Any]) -> str:
    """``label`` with the rate of the paced cases, when there is one."""
    rate = _figure(_first(results, "spill/down-paced", "spill/null-paced"), "rate")
    return f"{label} {rate:,.0f}/s" if label.endswith("paced") and rate else label


def spill_table(results: dict[str, Any]) -> Table:
    """Table 4: events spilled per second with the endpoint down, bytes on disk, and losses."""
    r = _first(results, *(key for _label, key, _floor in SPILL_ROWS))
    events = f"{r['events']:,} events" if r else "events"
    t = Table(
        f"4. Spill with the endpoint down ({events}; defaults: overflow='spill')",
        [
            "case",
            "loop ev/s",
            "spilled/s",
            "spilled",
            "+ at close",
            "dropped",
            "dropped %",
            "worst run",
            "B/event on disk",
            "CPU µs/ev",
            "x null",
        ],
    )
    accounted = []
    for label, key, floor_key in SPILL_ROWS:
        r, floor = _get(results, key), _get(results, floor_key)
        if r is None:
            t.add_failed(_paced(label, results))
            continue
        stats = r["stats"] or {}
        dropped = stats.get("dropped")
        runs = _good_runs(results, key)
        t.add(
            _paced(label, results),
            r["loop_events_per_s"],
            r.get("spilled_per_s"),
            r.get("spilled_running"),
            r.get("spilled_at_close"),
            dropped,
            None if dropped is None else 100 * dropped / r["events"],
            None if dropped is None else max(x["stats"]["dropped"] for x in runs),
            r.get("bytes_per_event"),
            r["cpu_us_per_event"],
            ratio(r["cpu_us_per_event"], _figure(floor, "cpu_us_per_event")),
        )
        if stats:
            whole = sum(x["stats"]["spilled"] + x["stats"]["dropped"] == x["events"] for x in runs)
            accounted.append(f"{label.split(', ')[1]} {whole} of {len(runs)}")
    lost = [x["stats"]["dropped"] for x in _good_runs(results, "spill/down-paced")]
    if lost:
        t.notes.append(
            f"  target nothing dropped at a rate the worker sustains (paced): dropped in "
            f"{sum(n > 0 for n in lost)} of {len(lost)} runs  {verdict(not any(lost))}"
        )
    t.notes += [
        "  every event either spilled or dropped after close(), in: "
        + (", ".join(accounted) or "-")
        + " runs.",
        "  spilled/s: stats()['spilled'] once it stopped growing (no growth for 0.5 s), over the",
        "  time from the first call to the first sample that saw it; + at close: what close()",
        "  wrote after that (the ring below half full and the batches held for the sender).",
        "  dropped: stats()['dropped'] after close(), warm-up included (median; worst run: the",
        "  most in one run): events lost because the ring overflowed before the pump could",
        "  spill them. B/event: the folder's bytes after close() over the events spilled.",
        "  CPU: the whole process until spilling stopped, pauses excluded.",
    ]
    return t


def replay_table(results: dict[str, Any]) -> Table:
    """Table 5: replaying the paced spill to a live receiver, from a fresh process."""
    t = Table(
        "5. Replay of the spill (paced run's folder) to a receiver, in a fresh process",
        [
            "case",
            "on disk",
            "replayed/s",
            "seconds",
            "replayed",
            "received",
            "duplicates",
            "CPU µs/ev",
            "files left",
            "emptied +s",
        ],
    )
    r = _get(results, "spill/replay")
    if r is None:
        t.add_failed("ShipHandler(spill_dir=...) → receiver")
        return t
    runs = _good_runs(results, "spill/replay")
    t.add(
        "ShipHandler(spill_dir=...) → receiver",
        r["on_disk_events"],
        r["events_per_s"],
        r["elapsed_s"],
        _figure(r, "stats", "replayed"),
        r["received_unique"],
        _figure(r, "receiver", "duplicates"),
        r["cpu_us_per_event"],
        max(len(x["left_files"]) for x in runs),
        r["emptied_after_s"],
    )
    spilled = _figure(_get(results, "spill/down-paced"), "stats", "spilled")
    complete = sum(
        x["stats"]["replayed"] == x["received_unique"] == x["on_disk_events"]
        and not x["left_files"]
        and not x["timed_out"]
        for x in runs
    )
    t.notes += [
        f"  every event on disk replayed, counted once by the receiver, folder empty: "
        f"{complete} of {len(runs)} runs  {verdict(complete == len(runs))}",
        f"  on disk: events counted in the spill files before the handler was built (the paced "
        f"run's stats()['spilled']: {cell(spilled)}).",
        "  replayed/s: on disk / (handler construction → the poll, every 10 ms, that saw the",
        "  receiver's unique count and stats()['replayed'] both reach it). files left: spill",
        "  files after close() (worst run); emptied +s: from then until the last was gone.",
    ]
    return t


def spill_latency_table(results: dict[str, Any]) -> Table:
    """Table 6: per-call latency while the handler spills, against NullHandlers made alike."""
    r = _first(results, *(key for _label, key, _floor in SPILL_ROWS))
    n, warmup = (r["all"]["n"], r["events"] - r["all"]["n"]) if r else (0, 0)
    t = Table(
        f"6. Per-call latency while spilling, endpoint down (µs; {n:,} timed calls)",
        LATENCY_HEADERS,
    )
    rows = [(_paced(label, results), key, floor, "all") for label, key, floor in SPILL_ROWS]
    _add_latency_rows(t, results, rows, "loop_events_per_s")
    _add_p50_targets(
        t,
        results,
        (
            ("spilling, tight loop", "spill/down", "spill/null"),
            ("spilling, paced", "spill/down-paced", "spill/null-paced"),
        ),
    )
    chunk = _figure(_first(results, "spill/down-paced", "spill/null-paced"), "chunk")
    t.notes += [
        f"  the calls of table 1, each timed; the first {warmup:,} (the ring filling to where",
        "  spilling starts) are left out. Each ShipHandler row is set against the NullHandler",
        "  made the same way in the same run: a tight loop, or paced (chunks of "
        f"{cell(chunk)} calls,",
        "  each started when due). calls/s: the loop's rate, pauses included. dropped: stats()",
        "  after close(), warm-up included.",
    ]
    return t


def _late_growth(run: dict[str, Any]) -> float:
    """How much RSS growth rose from 100k to 200k events, relative to its 100k level."""
    points: dict[int, float] = {p["events"]: p["growth_mib"] for p in run["points"]}
    at_100k = max(points[100_000], 1.0)  # a floor of 1 MiB: allocator noise is not growth
    return (points[200_000] - points[100_000]) / at_100k


#: Figures whose spread across repeats says how noisy the run was: (label,
#: case, path to the figure, the NullHandler case to divide by or None).
SPREAD = (
    ("latency p50, ShipHandler / NullHandler", "latency/ship", ("all", "p50"), "latency/null"),
    ("latency p99, ShipHandler / NullHandler", "latency/ship", ("all", "p99"), "latency/null"),
    ("latency p99.9, ShipHandler (µs)", "latency/ship", ("all", "p99.9"), None),
    ("latency p50, endpoint down / NullHandler", "latency/down", ("all", "p50"), "latency/null"),
    ("latency p50, NullHandler (µs)", "latency/null", ("all", "p50"), None),
    ("delivered/s, defaults", "throughput/ship", ("events_per_s",), None),
    ("lost, defaults", "throughput/ship", ("lost",), None),
    ("delivered/s, overflow=block", "throughput/ship-block", ("events_per_s",), None),
    (
        "CPU µs/event, block / NullHandler",
        "throughput/ship-block",
        ("cpu_us_per_event",),
        "throughput/null",
    ),
    ("peak RSS growth MiB, endpoint down", "memory/down", ("peak_rss_growth_mib",), None),
    ("spilled/s, tight loop", "spill/down", ("spilled_per_s",), None),
    ("dropped, tight loop", "spill/down", ("stats", "dropped"), None),
    ("spilled/s, paced", "spill/down-paced", ("spilled_per_s",), None),
    ("dropped, paced", "spill/down-paced", ("stats", "dropped"), None),
    ("replayed/s", "spill/replay", ("events_per_s",), None),
    ("latency p50 spilling / NullHandler, tight", "spill/down", ("all", "p50"), "spill/null"),
    ("latency p99 spilling / NullHandler, tight", "spill/down", ("all", "p99"), "spill/null"),
    (
        "latency p50 spilling / NullHandler, paced",
        "spill/down-paced",
        ("all", "p50"),
        "spill/null-paced",
    ),
    (
        "latency p99 spilling / NullHandler, paced",
        "spill/down-paced",
        ("all", "p99"),
        "spill/null-paced",
    ),
    ("latency p99.9 spilling, paced (µs)", "spill/down-paced", ("all", "p99.9"), None),
)


def spread_table(results: dict[str, Any]) -> Table:
    """Table 4: each key figure's minimum, median and maximum over the repeats.

    A ratio is taken within each repeat (case and floor ran back to back),
    then summarised.
    """
    t = Table(
        "7. Spread over the repeats (noise)", ["figure", "runs", "min", "median", "max", "max/min"]
    )
    for label, key, path, floor_key in SPREAD:
        if key not in results:
            continue
        runs = results[key]["runs"]
        floors = results[floor_key]["runs"] if floor_key in results else [{}] * len(runs)
        values = []
        for run, floor in zip(runs, floors, strict=False):
            v = _figure(run, *path)
            if floor_key:
                v = ratio(v, _figure(floor, *path))
            if v is not None:
                values.append(v)
        if not values:
            continue
        lo, mid, hi = min(values), median_of(values), max(values)
        t.add(label, len(values), lo, mid, hi, ratio(hi, lo))
    return t


#: Each table, in order, and the prefix of the case keys it reads.
TABLES: tuple[tuple[str, Callable[[dict[str, Any]], Table]], ...] = (
    ("latency/", latency_table),
    ("throughput/", throughput_table),
    ("memory/", memory_table),
    ("spill/", spill_table),
    ("spill/replay", replay_table),
    ("spill/", spill_latency_table),
    ("", spread_table),
)
