"""The comparison's tables: logship and its peers, each scenario set against the NullHandler floor.

Rows are the floor, logship's ShipHandler, then every peer of ``peers.py``,
each at its defaults; a peer that did not import is listed as skipped, with
the reason in a note. logship's targets are printed next to its figures,
never asserted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from _report import Table, cell, median_of, ratio, verdict
from _tables import (
    LATENCY_HEADERS,
    PLATEAU_LATE_GROWTH,
    THROUGHPUT_TARGET,
    _add_latency_rows,
    _add_p50_targets,
    _figure,
    _get,
)
from peers import PEERS

#: logship's targets in the comparison (P50_RATIO_TARGET and THROUGHPUT_TARGET too).
CPU_RATIO_TARGET = 2.5
EXIT_TARGET_S = 0.5
SUSTAINED_SHARE_TARGET = 0.04
#: RSS growth below this is allocator noise, not growth (as in table 3).
NOISE_MIB = 1.0

#: The rows of every table: label and kind (the last part of a case's key).
CONTENDERS = (
    ("NullHandler (floor)", "null"),
    ("logship ShipHandler", "ship"),
    *((p.label, p.kind) for p in PEERS),
)
LABELS = dict((kind, label) for label, kind in CONTENDERS)


def _each(
    t: Table, results: dict[str, Any], prefix: str, suffix: str = "", partial: bool = False
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Each contender's label, kind and entry for case ``prefix/KIND+suffix``, when it ran.

    A skipped contender gets a ``skipped`` row and one that produced no
    result (with ``partial``: not even before it was killed) a ``failed``
    row here, each with its reason in a note; one whose case was not
    selected gets no row.
    """
    for label, kind in CONTENDERS:
        entry = results.get(f"{prefix}/{kind}{suffix}")
        if entry is None:
            continue
        if "skipped" in entry:
            t.rows.append([label, "skipped", *["-"] * (len(t.headers) - 2)])
            t.notes.append(f"  {label}: skipped: {entry['skipped']}")
        elif entry["median"] is None and not (partial and _partial_runs(entry)):
            t.add_failed(label)
            errors = {r["error"].splitlines()[0] for r in entry["runs"] if "error" in r}
            t.notes.append(f"  {label}: failed: {'; '.join(sorted(errors)) or 'no run'}")
        else:
            yield label, kind, entry


def _runs(results: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The runs of case ``key`` (none when it was not run or was skipped)."""
    runs: list[dict[str, Any]] = (results.get(key) or {}).get("runs") or []
    return runs


def _partial_runs(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Runs that were killed at their timeout after printing their result."""
    return [r for r in entry["runs"] if r.get("partial")]


def _runs_note(results: dict[str, Any], prefix: str) -> str:
    """How many runs the table's figures are the median of."""
    counts = sorted(
        {len(e["runs"]) for k, e in results.items() if k.startswith(prefix) and e["runs"]}
    )
    if not counts:
        return "  no run."
    shown = str(counts[0]) if counts[0] == counts[-1] else f"{counts[0]} to {counts[-1]}"
    return f"  median of {shown} run(s) per handler."


def latency_table(results: dict[str, Any]) -> Table:
    """(a) Per-call latency: plain calls, then with ``logger.exception`` every 100th call."""
    t = Table("Peers (a): per-call latency (µs; 50,000 timed calls)", LATENCY_HEADERS)
    for suffix, tag in (("", ""), ("+exc", ", exception/100")):
        floor = f"latency/null{suffix}"
        for label, kind, _entry in _each(t, results, "latency", suffix):
            _add_latency_rows(
                t, results, ((label + tag, f"latency/{kind}{suffix}", floor, "all"),), "calls_per_s"
            )
    _add_p50_targets(
        t,
        results,
        (
            ("logship", "latency/ship", "latency/null"),
            ("logship, exception/100", "latency/ship+exc", "latency/null+exc"),
        ),
    )
    t.notes += [
        '  logger.info("user %s did %s", i, "thing", extra={"request_id": i}); exception/100:',
        "  every 100th call is logger.exception(...) in an except block. Each handler is in a",
        "  fresh process, shipping to a live receiver in another; calls/s: the timed loop's rate.",
        "  dropped: logship's stats() (peers have none). logship's rows are table 1's.",
        _runs_note(results, "latency/"),
    ]
    return t


def throughput_table(results: dict[str, Any]) -> Table:
    """(b) End to end: 50,000 events from the first call until the receiver counted them."""
    t = Table(
        "Peers (b): end to end (50,000 events until the receiver counted them)",
        [
            "handler",
            "delivered/s",
            "seconds",
            "loop ev/s",
            "CPU ms/1k ev",
            "x null",
            "peak RSS MiB",
            "RSS growth MiB",
            "lost",
            "ended",
        ],
    )
    floor = _get(results, "throughput/null")
    for label, kind, entry in _each(t, results, "throughput"):
        r = entry["median"]
        t.add(
            label,
            r["events_per_s"],
            r["elapsed_s"],
            r["loop_events_per_s"],
            r["cpu_us_per_event"],  # µs per event is ms per 1,000 events
            ratio(r["cpu_us_per_event"], _figure(floor, "cpu_us_per_event")),
            r["peak_rss_mib"],
            r["peak_rss_growth_mib"],
            r["lost"] if kind != "null" else None,
            _ending(entry["runs"]) if kind != "null" else None,
        )
    ship = _get(results, "throughput/ship")
    rate = _figure(ship, "events_per_s")
    cpu = ratio(_figure(ship, "cpu_us_per_event"), _figure(floor, "cpu_us_per_event"))
    t.notes += [
        f"  target ≥ {THROUGHPUT_TARGET:,} events/s delivered, logship: "
        + ("-" if rate is None else f"{rate:,.0f}/s")
        + f"  {verdict(None if rate is None else rate >= THROUGHPUT_TARGET)}",
        f"  target CPU ≤ {CPU_RATIO_TARGET} x the floor's per event, logship: "
        + ("-" if cpu is None else f"{cpu:.2f}x")
        + f"  {verdict(None if cpu is None else cpu <= CPU_RATIO_TARGET)}",
        "  seconds: first call → the poll (every 10 ms) that saw the last event counted;",
        "  delivered/s: events counted / seconds. CPU: the whole process, every thread, until",
        "  then; the floor's is the loop alone. peak RSS: the process's, imports included.",
        "  ended: all = every event counted; settled = nothing more arrived for the longest the",
        "  peer holds an event plus 2 s (the rest is lost); timeout = 45 s after the loop.",
        "  logship's row is table 2's (defaults: overflow='spill', which drops what neither",
        "  the ring nor the spill takes in a tight loop; see its overflow='block' row there).",
        _runs_note(results, "throughput/"),
    ]
    return t


def _ending(runs: list[dict[str, Any]]) -> str:
    """How the runs' waits for the receiver ended: all, settled or timeout (worst first)."""
    ends = [
        "timeout" if r.get("timed_out") else "settled" if r.get("settled") else "all"
        for r in runs
        if "error" not in r
    ]
    return next((e for e in ("timeout", "settled", "all") if e in ends), "-")


def _flat(r: dict[str, Any], floor: dict[str, Any] | None) -> bool:
    """Whether RSS stayed flat over the outage's second half (over the floor's, as in table 3)."""
    first = r["rss_growth_first_half_mib"] - (_figure(floor, "rss_growth_first_half_mib") or 0)
    second = r["rss_growth_second_half_mib"] - (_figure(floor, "rss_growth_second_half_mib") or 0)
    return second <= max(PLATEAU_LATE_GROWTH * first, NOISE_MIB)


def outage_table(results: dict[str, Any]) -> Table:
    """(c) Outage: 503 for 5 s while 20,000 events are logged, then recovery."""
    sample = _get(results, "outage/ship") or _get(results, "outage/null") or {}
    events, seconds = sample.get("events", 20_000), sample.get("outage_s", 5)
    t = Table(
        f"Peers (c): outage (503 for {seconds:g} s while {events:,} events are logged; µs/call)",
        [
            "handler",
            "p50",
            "p99",
            "p99.9",
            "max",
            "p99 x null",
            "lost",
            "at close",
            "dups",
            "RSS 1st half MiB",
            "2nd half",
            "flat",
            "last in +s",
        ],
    )
    floor = _get(results, "outage/null")
    for label, kind, entry in _each(t, results, "outage"):
        r = entry["median"]
        t.add(
            label,
            r["all"]["p50"],
            r["all"]["p99"],
            r["all"]["p99.9"],
            r["all"]["max"],
            ratio(r["all"]["p99"], _figure(floor, "all", "p99")),
            r.get("lost"),
            r.get("at_close"),
            r.get("duplicates"),
            r["rss_growth_first_half_mib"],
            r["rss_growth_second_half_mib"],
            _flat(r, floor if kind != "null" else None),
            r.get("recovered_after_s"),
        )
    runs = [r for r in _runs(results, "outage/ship") if "error" not in r]
    lost = [r["lost"] for r in runs]
    flat = [_flat(r, floor) for r in runs]
    total = (sample.get("warmup", 0) + events + sample.get("after", 0)) if sample else 0
    t.notes += [
        f"  target 0 lost, logship: lost {max(lost) if lost else '-'} in the worst of "
        f"{len(lost)} run(s)  {verdict(not any(lost) if lost else None)}",
        f"  target memory flat during the outage, logship: flat in {sum(flat)} of {len(flat)} "
        f"run(s)  {verdict(all(flat) if flat else None)}",
        f"  the calls are paced over the outage ({sample.get('rate', 0):,.0f}/s, chunks of 100) "
        "and timed;",
        "  the floor makes the same calls to a NullHandler. Logging goes on at that rate for",
        f"  {sample.get('after', 0):,} more events after the recovery. lost: of the {total:,} "
        "logged (warm-up included),",
        "  never counted, even after close(); at close: counted only once the handler was",
        "  closed. fluent-logger's forward port is closed during the outage instead (the forward",
        "  protocol has no 503): its connections are refused. RSS: growth over each half of the",
        f"  outage; flat: the second half's, over the floor's, at most {PLATEAU_LATE_GROWTH:.0%} "
        "of the first half's",
        f"  (or {NOISE_MIB:g} MiB). last in +s: the last event counted, after the recovery.",
        _runs_note(results, "outage/"),
    ]
    return t


def _exit_figures(run: dict[str, Any]) -> dict[str, Any] | None:
    """A run's events arrived and seconds from its last call to its exit (or its kill)."""
    result = run.get("partial") if "error" in run else run
    if not result or "exited_at" not in run:
        return None
    return {
        "arrived": (run.get("receiver_after") or {}).get("unique"),
        "exit_ms": 1000 * (run["exited_at"] - result["last_call_at"]),
        "killed": "error" in run,
        "events": result["events"],
    }


def exit_table(results: dict[str, Any]) -> Table:
    """(d) Exit: 10,000 events, then a normal interpreter exit."""
    t = Table(
        "Peers (d): exit (10,000 events, then a normal interpreter exit)",
        [
            "handler",
            "arrived",
            "lost",
            "last call → exit ms",
            "x null",
            "nothing logged ms",
            "delivering ms",
            "killed at timeout",
        ],
    )
    medians: dict[str, dict[str, Any]] = {}
    for label, kind, entry in _each(t, results, "exit", partial=True):
        figures = [f for f in map(_exit_figures, entry["runs"]) if f]
        if not figures:
            t.add_failed(label)
            continue
        m = medians[kind] = median_of(figures)
        killed = sum(f["killed"] for f in figures)
        idle = [
            f
            for f in map(_exit_figures, _runs(results, f"exit/{kind}+idle"))
            if f and not f["killed"]  # a killed run's time is the case's timeout
        ]
        idle_ms = median_of(idle)["exit_ms"] if idle else None
        t.add(
            label,
            m["arrived"] if kind != "null" else None,
            m["events"] - m["arrived"] if kind != "null" and m["arrived"] is not None else None,
            f"{cell(m['exit_ms'])} (killed)" if killed else m["exit_ms"],
            ratio(m["exit_ms"], (medians.get("null") or {}).get("exit_ms")),
            idle_ms,
            # Not from a killed run (its time is the timeout), nor below zero: a fixed
            # wait at exit (logzio's drain timeout) makes the two exits differ by noise.
            None if idle_ms is None or killed or m["exit_ms"] < idle_ms else m["exit_ms"] - idle_ms,
            f"{killed} of {len(figures)}",
        )
    ship = [f for f in map(_exit_figures, _runs(results, "exit/ship")) if f]
    ok = [f["arrived"] == f["events"] and f["exit_ms"] < 1000 * EXIT_TARGET_S for f in ship]
    worst = max((f["exit_ms"] for f in ship), default=None)
    t.notes += [
        f"  target every event arrived and exit in under {EXIT_TARGET_S} s, logship: in "
        f"{sum(ok)} of {len(ok)} run(s) (slowest {'-' if worst is None else f'{worst:.0f} ms'})"
        f"  {verdict(all(ok) if ok else None)}",
        "  the events are logged in a tight loop; the handler is never closed by the case:",
        "  logging.shutdown and the handler's own exit hooks do what they do (the standard",
        "  library's QueueListener is stopped by atexit, as its documentation shows). last call",
        "  → exit: until the parent saw the process end (killed: at the case's timeout);",
        "  arrived: the receiver's count after. nothing logged: the same script and handler",
        "  with no event logged: the interpreter's own exit with the handler's modules loaded",
        "  (tearing down what requests imports costs about 10 ms). delivering: the difference,",
        "  what handing over the last events at exit cost (for logship, which starts its threads",
        "  at the first event, also starting and stopping them; '-' for a killed run or when",
        "  the exit with nothing logged was the slower).",
        _runs_note(results, "exit/"),
    ]
    return t


def sustained_table(results: dict[str, Any]) -> Table:
    """(e) Sustained load: CPU share of one core at 2,000 events/s for 30 s."""
    sample = _get(results, "sustained/ship") or _get(results, "sustained/null") or {}
    rate, seconds = sample.get("rate", 2_000), sample.get("window_s", 30)
    t = Table(
        f"Peers (e): sustained load ({rate:,.0f} events/s for {seconds:.0f} s; CPU of one core)",
        ["handler", "CPU %", "x null", "CPU µs/ev", "over null µs/ev", "delivered", "of logged"],
    )
    floor = _get(results, "sustained/null")
    for label, kind, entry in _each(t, results, "sustained"):
        r = entry["median"]
        floor_us = _figure(floor, "cpu_us_per_event")
        t.add(
            label,
            100 * r["cpu_share"],
            ratio(r["cpu_share"], _figure(floor, "cpu_share")),
            r["cpu_us_per_event"],
            None if floor_us is None or kind == "null" else r["cpu_us_per_event"] - floor_us,
            r["received_unique"],
            r["logged"] if kind != "null" else None,
        )
    share = _figure(_get(results, "sustained/ship"), "cpu_share")
    t.notes += [
        f"  target under {SUSTAINED_SHARE_TARGET:.0%} of one core, the floor included, logship: "
        + ("-" if share is None else f"{share:.2%}")
        + f"  {verdict(None if share is None else share < SUSTAINED_SHARE_TARGET)}",
        "  CPU: the whole process (the calls, the handler's threads, the pacing loop) over the",
        "  window, after 1 s of warm-up; the floor is that loop with a NullHandler. delivered:",
        "  counted by the receiver at the window's end, of those logged (warm-up included).",
        "  One run each, one after another.",
    ]
    return t


def summary_table(results: dict[str, Any]) -> Table:
    """At a glance: one line per handler with the key figures of each scenario."""
    t = Table(
        "Peers: at a glance (details in (a) to (e) below)",
        [
            "handler",
            "(a) p50 x null",
            "(b) delivered/s",
            "(b) CPU x null",
            "(c) lost",
            "(d) lost",
            "(d) exit ms",
            "(e) CPU %",
        ],
    )
    latency, throughput = latency_table(results), throughput_table(results)
    outage, exits, sustained = outage_table(results), exit_table(results), sustained_table(results)
    columns = (
        (latency, 6),
        (throughput, 1),
        (throughput, 5),
        (outage, 6),
        (exits, 2),
        (exits, 3),
        (sustained, 1),
    )
    for label, _kind in CONTENDERS:
        rows = [({r[0]: r for r in table.rows}.get(label), i) for table, i in columns]
        cells = [
            "-" if row is None else row[1] if row[1] == "skipped" else row[i] for row, i in rows
        ]
        if any(c != "-" for c in cells):
            t.rows.append([label, *cells])
    t.notes.append(
        "  skipped or failed handlers show so in each scenario's table, with the reason."
    )
    return t


#: The comparison's tables, in order, and the prefix of the case keys each reads.
PEER_TABLES: tuple[tuple[str, Callable[[dict[str, Any]], Table]], ...] = (
    ("", summary_table),  # left out when no comparison case ran: it has no row then
    ("latency/", latency_table),
    ("throughput/", throughput_table),
    ("outage/", outage_table),
    ("exit/", exit_table),
    ("sustained/", sustained_table),
)
