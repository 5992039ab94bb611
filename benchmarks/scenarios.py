"""Every scenario of ``make bench``, each described once: what it runs, and its tables.

A scenario's cases are the runs ``run.py`` makes, each a script of this
folder and its arguments, in a fresh process. Its tables (``_report``) set
every figure against the NullHandler case made the same way in the same run
(case ``name/null+suffix``, else ``name/null``). The comparison's rows are
the floor, logship, then every peer of ``peers.py`` at its defaults; every
handler that ships sends to a fresh ``peer_receivers.py``. What each
scenario measures, and how: ``docs/performance.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from _report import (
    Col,
    Line,
    Results,
    Row,
    Table,
    TableSpec,
    build,
    cell,
    cols,
    figure,
    good_runs,
    in_runs,
    median,
    median_of,
    ratio,
    spread_table,
    targets,
)
from peers import PEERS

#: The NullHandler floor, logship and every peer: the comparison's rows, in order.
CONTENDERS = (
    ("NullHandler (floor)", "null"),
    ("logship ShipHandler", "ship"),
    ("logship ShipHandler, protocol=otlp", "ship-otlp"),
    ("logship ShipHandler, protocol=forward", "ship-forward"),
    *((p.label, p.kind) for p in PEERS),
)
#: Events/s of the paced spill cases: steady, and well within what the worker
#: spills on a 2-CPU machine (about 80,000/s there before the first drop).
SPILL_RATE = 50_000
#: RSS counts as flat when doubling the events logged grows it by at most this
#: fraction; memory that held every event would double it (+100%).
PLATEAU_GROWTH = 0.25
#: RSS growth below this is allocator noise, not growth.
NOISE_MIB = 1.0
CRASH = "--durability crash"
#: Each scenario's script, its cases' timeout (s), the runs of its floor and
#: logship cases ("": ``--repeat``, "peers": ``--peer-repeat``, "once"; the
#: other handlers get ``--peer-repeat``, or one when "once"), whether a
#: handler that ships gets a fresh ``--spill-dir`` (removed after) and a fresh
#: peer_receivers.py (``--url``; the fleet ships to a fleet of its own).
SCRIPTS = {
    "latency": ("latency.py", 60, "", False, True),
    "throughput": ("throughput.py", 75, "", False, True),
    "service": ("service.py", 20, "once", False, True),
    "outage": ("outage.py", 75, "peers", False, True),
    "exit": ("shutdown.py", 30, "peers", True, True),
    "sustained": ("service.py", 30, "once", False, True),
    "memory": ("spill.py", 60, "", False, True),
    "spill": ("spill.py", 60, "", False, True),
    "replay": ("replay.py", 60, "", False, True),
    "fleet": ("fleet_bench.py", 150, "peers", False, False),
}


@dataclass(frozen=True)
class Case:
    """One benchmark case: a script, its arguments, how ``run.py`` runs it, and its row."""

    key: str
    script: str
    args: str  # its command line after the script, split on spaces: "--handler KIND ..."
    timeout: float
    runs: str  # "", "peers" or "once", as in SCRIPTS
    folder: bool
    live: bool  # gets a fresh receiver and ``--url``
    #: The key of a case that runs just before this one, in every repeat, with
    #: ``--spill-dir`` a fresh folder that this one then gets (and removes).
    replays: str = ""
    label: str = ""  # its row in its scenario's table ("": none)


def case(key: str, args: str, label: str = "", replays: str = "") -> Case:
    """Case ``key`` (``scenario/...``) with ``args`` ("--handler KIND ..."), as SCRIPTS says,
    its row labelled ``label``."""
    script, timeout, runs, folder, receiver = SCRIPTS[key.split("/")[0]]
    kind = args.split()[1]
    runs = runs if kind in ("null", "ship", "down") or runs == "once" else "peers"
    live = receiver and kind not in ("null", "down")
    return Case(key, script, args, timeout, runs, folder and kind != "null", live, replays, label)


def cases(text: str) -> tuple[Case, ...]:
    """A case for each line ``key | args | label | replays`` of ``text`` (``#`` a comment): a
    line whose key has ``*`` a case for each contender, ``*`` in its args its kind and in its
    label its label, and the lines under it up to a blank line logship's other settings, run
    and shown after logship's own. A case without a label has no row."""
    out: list[Case] = []
    extras = 0  # where a line under a * line goes: this many from the end
    for line in text.strip().splitlines():
        key, args, label, replays = ([x.strip() for x in line.split("|")] + ["", "", ""])[:4]
        if not key:  # a blank line ends what a * line has under it
            extras = 0
        elif key.startswith("#"):
            continue
        elif "*" in key:
            out += (
                case(key.replace("*", kind), args.replace("*", kind), label.replace("*", name))
                for name, kind in CONTENDERS
            )
            extras = len(CONTENDERS) - 2
        else:
            out.insert(len(out) - extras, case(key, args, label, replays))
    return tuple(out)


# -- the cases, in the order each repeat runs them, and their rows ---------------------------------

_CHECKPOINTS = "--events 200000 --checkpoints 50000,100000,200000"
_PACED = f"--rate {SPILL_RATE}"
_DEADLINE = "--deadline 45"  # end to end: 45 s to deliver after the loop
#: Each line: key | args | label (its row) | the case it replays; see cases().
CASES = cases(f"""
latency/* | --handler * | *
latency/down | --handler down | logship → endpoint down
latency/ship-crash | --handler ship {CRASH} | logship, durability=crash

# Trace context: the floor and logship inside a recording span, and logship
# with trace_context=False (OpenTelemetry is installed in every case).
latency/null+span | --handler null --span | NullHandler, inside a recording span
latency/ship+span | --handler ship --span | logship, inside a recording span (trace_id, span_id)
latency/ship-notrace | --handler ship --no-trace-context | logship, trace_context=False

latency/*+exc | --handler * --exception-every 100 | *, exception/100

# Table 11's rows, labelled there.
latency/ship+redact | --handler ship --redact
latency/ship+redact-secret | --handler ship --redact --secret

throughput/* | --handler * {_DEADLINE} | *
throughput/ship-block | --handler ship --overflow block {_DEADLINE} | logship, overflow=block
throughput/ship-crash | --handler ship {CRASH} {_DEADLINE} | logship, durability=crash
# 50,000 is a multiple of batch_max_records: the last batch goes out full at the
# last call. A burst that ends mid-batch shows what its tail waits for.
throughput/ship-tail | --handler ship --events 50500 {_DEADLINE} | logship, a burst of 50,500 events

service/* | --handler * | *
service/ship-crash | --handler ship {CRASH} | logship, durability=crash

outage/* | --handler * | *

exit/* | --handler * | *
# The same exit with nothing logged: the interpreter's own exit with the
# handler's modules loaded and nothing to deliver.
exit/*+idle | --handler * --events 0

sustained/* | --handler * --threads 1 --rate 100 --logs 20 --work 0 | *

memory/null | --handler null {_CHECKPOINTS} | NullHandler
memory/down | --handler down {_CHECKPOINTS} | logship → endpoint down
spill/null | --handler null | NullHandler, tight loop
spill/down | --handler down | logship → endpoint down, tight loop
spill/null-paced | --handler null {_PACED} | NullHandler, paced {SPILL_RATE:,}/s
spill/down-paced | --handler down {_PACED} | logship → endpoint down, paced {SPILL_RATE:,}/s
replay/ship | --handler ship | ShipHandler(spill_dir=...) → receiver | spill/down-paced
fleet/single | --handler ship --route single | logship → one Fluent Bit node
fleet/haproxy | --handler ship --route haproxy | logship → HAProxy → 3 nodes
fleet/failover | --handler ship --route failover | logship, url=[3 nodes], failover
fleet/round_robin | --handler ship --route round_robin | logship, url=[3 nodes], round_robin
""")


def rows(name: str) -> tuple[Line, ...]:
    """The rows of scenario ``name``'s cases, in their order."""
    return tuple(Line(c.label, c.key) for c in CASES if c.label and c.key.startswith(name + "/"))


# -- 1, 11: per-call latency -----------------------------------------------------------------------


#: The columns of a table of per-call times, after its calls per second.
LATENCY_COLUMNS = (
    "p50: .p50 | p99: .p99 | p99.9: .p99.9 | max: .max | mean: .mean | p50 x null: /.p50"
    " | p99 x null: /.p99 | calls/s: {} | dropped: stats.dropped"
)


_ONLY = "exception calls only"
# durability="crash" writes each event to a mapped file inside the call: its own p50 target.
LATENCY = TableSpec(
    "1. Per-call latency on the application thread (µs; 50,000 timed calls)",
    (
        *rows("latency"),
        Line(f"  NullHandler, {_ONLY}", "latency/null+exc", part="exceptions"),
        Line(f"  logship, {_ONLY}", "latency/ship+exc", part="exceptions"),
    ),
    cols(LATENCY_COLUMNS.format("calls_per_s")),
    targets("""
        | latency/ship all.p50 / floor <= 1.25
        | latency/ship all.p99.9 / floor <= 20
        | latency/down all.p50 / floor <= 1.25
        | latency/ship-crash all.p50 / floor <= 1.5
        | latency/ship+exc all.p50 / floor <= 1.25
    """),
    "exception/100: every 100th call is logger.exception(...) in an except block. "
    "dropped: logship's stats() after a flush, warm-up included (peers have none).",
    medians=True,
)
REDACTION = TableSpec(
    "11. Redaction: per-call latency with RedactFilter (µs)",
    (
        Line("NullHandler", "latency/null"),
        Line("logship ShipHandler", "latency/ship"),
        Line("logship + RedactFilter", "latency/ship+redact"),
        Line("logship + RedactFilter, secret in message", "latency/ship+redact-secret"),
    ),
    cols(
        "p50: all.p50 | p99: all.p99 | mean: all.mean | p50 x null: /all.p50",
        "p50 x ship: /all.p50@latency/ship | filter p50: filter.p50 | filter mean: filter.mean",
    ),
    notes="filter: RedactFilter.filter() alone, on fresh records of the same call.",
    first="case",
)


# -- 2: end to end ---------------------------------------------------------------------------------


def ending(row: Row) -> str | None:
    """How the runs' waits for the receiver ended, the worst of: timeout, settled, all."""
    ends = (
        "timeout" if r.get("timed_out") else "settled" if r.get("settled") else "all"
        for r in row.runs
    )
    return None if row.is_floor else min(ends, key=("timeout", "settled", "all").index, default="-")


THROUGHPUT = TableSpec(
    "2. End to end (50,000 events until the receiver counted them)",
    rows("throughput"),
    cols(
        "delivered/s: events_per_s | seconds: elapsed_s | loop ev/s: loop_events_per_s"
        " | CPU µs/ev: cpu_us_per_event | x null: /cpu_us_per_event"
        " | app-thread µs/ev: main_thread_cpu_us_per_event | peak RSS MiB: peak_rss_mib"
        " | RSS growth MiB: peak_rss_growth_mib | lost: !lost | dropped: stats.dropped"
        " | spilled: stats.spilled",
        Col("ended", ending),
    ),
    targets("""
        ≥ 50,000 events/s delivered (gzip+JSON) | throughput/ship events_per_s >= 50000 | /s
        ≥ 50,000 events/s delivered (gzip+JSON) | throughput/ship-block events_per_s >= 50000 | /s
        ≥ 0.5 x logship defaults' delivered/s | throughput/ship-crash events_per_s / ship >= 0.5
        CPU per event ≤ 2.5 x NullHandler's | throughput/ship cpu_us_per_event / floor <= 2.5
    """),
    "lost: logged, never counted (logship's default overflow, 'spill', drops what "
    "neither the ring nor the spill takes). ended: all = every event counted; settled "
    "= nothing more arrived for the longest the peer holds an event plus 2 s; "
    "timeout = 45 s after the loop.",
    medians=True,
)


# -- 3, 6: a service, a sustained load -------------------------------------------------------------


SERVICE = TableSpec(
    "3. A service (4 threads, 1,500 requests/s, 5 log calls in each; µs per request)",
    rows("service"),
    cols(
        "requests: request.n | p50: request.p50 | p99: request.p99 | p99.9: request.p99.9"
        " | max: request.max | p99 x null: /request.p99 | p99.9 x null: /request.p99.9"
        " | CPU µs/ev: cpu_us_per_event | over null µs/ev: -cpu_us_per_event"
        " | probe p99.9 gap: probe.p99.9 | probe max gap: probe.max"
        " | probe held %: %probe.held_share",
    ),
    targets("""
        request p99.9 ≤ 1.5 (aim 1.2) x NullHandler's | service/ship request.p99.9 / floor <= 1.5
        request p99 ≤ 1.2 x NullHandler's | service/ship request.p99 / floor <= 1.2
        request p99.9 ≤ 1 x logship defaults' | service/ship-crash request.p99.9 / ship <= 1
        CPU ≤ 8 (aim 5) µs per event over null | service/ship cpu_us_per_event - floor <= 8 | µs
    """),
    "a request's time runs from when it was due. CPU: the whole process over the "
    "timed window, per log call. probe gap: a time (over 50 µs) the probe thread "
    "could not run, in a phase of its own after the timed window. One run each.",
)
SUSTAINED = TableSpec(
    "6. Sustained load (2,000 events/s from one thread; CPU of one core)",
    rows("sustained"),
    cols(
        "seconds: window_s | CPU %: %cpu_share | x null: /cpu_share | CPU µs/ev: cpu_us_per_event"
        " | over null µs/ev: -cpu_us_per_event | delivered: !received_unique | of logged: !logged",
    ),
    targets("under 4% of one core, the floor included | sustained/ship cpu_share <= 0.04 | %"),
    "delivered: counted by the receiver at the window's end. One run each.",
)


# -- 4: an outage ----------------------------------------------------------------------------------


def flat(row: Row) -> bool:
    """Whether RSS stayed flat over the outage's second half (over the floor's)."""
    floor = {} if row.is_floor else row.floor
    first, second = (
        row.r[f"rss_growth_{half}_half_mib"] - (figure(floor, f"rss_growth_{half}_half_mib") or 0)
        for half in ("first", "second")
    )
    return bool(second <= max(PLATEAU_GROWTH * first, NOISE_MIB))


OUTAGE = TableSpec(
    "4. Outage (503 for 5 s while 20,000 events are logged; µs per call)",
    rows("outage"),
    cols(
        "p50: all.p50 | p99: all.p99 | p99.9: all.p99.9 | max: all.max | p99 x null: /all.p99"
        " | lost: lost | at close: at_close | dups: duplicates"
        " | RSS 1st half MiB: rss_growth_first_half_mib | 2nd half: rss_growth_second_half_mib",
        Col("flat", flat),
        "last in +s: recovered_after_s",
    ),
    targets(
        "0 lost, logship | outage/ship lost == 0 | runs",
        in_runs("memory flat during the outage, logship", "outage/ship", flat),
    ),
    "lost: of every event logged, never counted, even after close(); at close: "
    "counted only once the handler was closed. flat: the second half's growth, over "
    f"the floor's, at most {PLATEAU_GROWTH:.0%} of the first half's (or "
    f"{NOISE_MIB:g} MiB). last in +s: the last event counted, after the recovery.",
    medians=True,
)


# -- 5: exit ---------------------------------------------------------------------------------------


def exit_figures(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The median of a case's exits: events arrived and lost, ms from its last call to its exit,
    kills.

    A run killed at its timeout after printing its result counts, its kill as its exit.
    """
    figures = []
    for run in entry["runs"]:
        result = run.get("partial") if "error" in run else run
        if result and "exited_at" in run:
            arrived = (run.get("receiver_after") or {}).get("unique")
            lost = None if arrived is None else result["events"] - arrived
            ms = 1000 * (run["exited_at"] - result["last_call_at"])
            figures.append({"arrived": arrived, "lost": lost, "exit_ms": ms})
    killed = sum("error" in run for run in entry["runs"] if run.get("partial"))
    return {**median_of(figures), "killed": killed, "runs": len(figures)} if figures else None


def exit_ms(row: Row) -> object:
    """From the last call to the exit, marked when a run was killed at its timeout."""
    return f"{cell(row.r['exit_ms'])} (killed)" if row.r["killed"] else row.r["exit_ms"]


def idle_ms(row: Row) -> float | None:
    """The same exit with nothing logged (not from a killed run: its time is the timeout)."""
    idle = exit_figures(row.results.get(row.key + "+idle") or {"runs": []})
    return None if idle is None or idle["killed"] else float(idle["exit_ms"])


def delivering_ms(row: Row) -> float | None:
    """The difference: none from a killed run, nor below zero (a fixed wait at exit is noise)."""
    idle = idle_ms(row)
    if idle is None or row.r["killed"] or row.r["exit_ms"] < idle:
        return None
    return float(row.r["exit_ms"] - idle)


EXIT = TableSpec(
    "5. Exit (10,000 events, then a normal interpreter exit)",
    rows("exit"),
    cols(
        "arrived: !arrived | lost: !lost",
        Col("last call → exit ms", exit_ms),
        "x null: /exit_ms",
        Col("nothing logged ms", idle_ms),
        Col("delivering ms", delivering_ms),
        Col("killed at timeout", lambda row: f"{row.r['killed']} of {row.r['runs']}"),
    ),
    (
        in_runs(
            "every event arrived and exit in under 0.5 s, logship",
            "exit/ship",
            lambda row: row.r["lost"] == 0 and row.r["exit_ms"] < 500,
            lambda rows: f"slowest {max(row.r['exit_ms'] for row in rows):.0f} ms",
            figures=lambda run: exit_figures({"runs": [run]}),
        ),
    ),
    "nothing logged: the same exit with no event logged. delivering: the difference "
    "('-' for a killed run, or when the exit with nothing logged was the slower).",
    medians=True,
    figures=exit_figures,
)


# -- 7 to 10: the endpoint down: memory, spill, replay ---------------------------------------------


def late_growth(run: dict[str, Any]) -> float:
    """How much RSS growth rose from 100k to 200k events, relative to its 100k level."""
    points: dict[int, float] = {p["events"]: p["growth_mib"] for p in run["points"]}
    return (points[200_000] - points[100_000]) / max(points[100_000], NOISE_MIB)


def plateau(rows: list[Row]) -> str:
    """How much RSS grew from 100k to 200k events, and what was queued then."""
    late = [late_growth(row.r) for row in rows]
    queued = cell(figure(median(rows[0].results, "memory/down"), "stats_loop_end.queued"))
    return (
        f"growth ≤ {PLATEAU_GROWTH:+.0%} from 100k to 200k events; median "
        f"{median_of(late):+.0%}, worst {max(late):+.0%}; {queued} events in memory at the end"
    )


def accounted(rows: list[Row]) -> str:
    """In how many runs of each spill case every event was spilled or dropped after close()."""
    whole = []
    for key in ("spill/down", "spill/down-paced"):
        runs = good_runs(rows[0].results, key)
        n = sum(r["stats"]["spilled"] + r["stats"]["dropped"] == r["events"] for r in runs)
        whole.append(f"{key} {n} of {len(runs)}")
    return f"every event spilled or dropped after close(): {', '.join(whole)} runs"


MEMORY = TableSpec(
    "7. Memory with the endpoint down (200,000 events; RSS growth over the start, MiB)",
    rows("memory"),
    cols(
        "base RSS: base_rss_mib",
        # The checkpoints of memory/*: 50k, 100k and 200k events.
        "+50k: points.0.growth_mib | +100k: points.1.growth_mib | +200k: points.2.growth_mib"
        " | peak growth: peak_rss_growth_mib | ev/s: points.-1.events_per_s"
        " | queued: stats_loop_end.queued | dropped: stats_loop_end.dropped"
        " | spilled: stats_loop_end.spilled",
        Col("spill MiB", lambda row: ratio(figure(row.r, "stats_loop_end.spill_bytes"), 2**20)),
    ),
    (
        in_runs(
            "memory bounded by capacity (10,000 events)",
            "memory/down",
            lambda row: late_growth(row.r) <= PLATEAU_GROWTH,
            plateau,
        ),
    ),
    "ev/s: the last 100,000. queued, dropped, spilled: stats() after the last call.",
    first="case",
)
SPILL = TableSpec(
    "8. Spill with the endpoint down (100,000 events; defaults: overflow='spill')",
    rows("spill"),
    cols(
        "loop ev/s: loop_events_per_s | spilled/s: spilled_per_s | spilled: spilled_running"
        " | + at close: spilled_at_close | dropped: stats.dropped",
        Col("dropped %", lambda row: ratio(figure(row.r, "stats.dropped"), row.r["events"] / 100)),
        "worst run: ^stats.dropped | B/event on disk: bytes_per_event | CPU µs/ev: cpu_us_per_event"
        " | x null: /cpu_us_per_event",
    ),
    (
        in_runs(
            "nothing dropped at a rate the worker sustains (paced)",
            "spill/down-paced",
            lambda row: row.r["stats"]["dropped"] == 0,
            accounted,
        ),
    ),
    "spilled/s: stats()['spilled'] once it stopped growing, over the time until then; "
    "+ at close: what close() wrote after that. dropped: after close(), warm-up "
    "included (worst run: the most in one run).",
    first="case",
)
REPLAY = TableSpec(
    "9. Replay of the spill (paced run's folder) to a receiver, in a fresh process",
    rows("replay"),
    cols(
        "on disk: on_disk_events | replayed/s: events_per_s | seconds: elapsed_s"
        " | replayed: stats.replayed | received: received_unique | duplicates: receiver.duplicates"
        " | CPU µs/ev: cpu_us_per_event",
        Col("files left", lambda row: max(len(r["left_files"]) for r in row.runs)),
        "emptied +s: emptied_after_s",
    ),
    (
        in_runs(
            "every event on disk replayed, counted once, folder empty",
            "replay/ship",
            lambda row: (
                row.r["stats"]["replayed"] == row.r["received_unique"] == row.r["on_disk_events"]
                and not row.r["left_files"]
                and not row.r["timed_out"]
            ),
        ),
    ),
    "files left: spill files after close() (worst run); emptied +s: until none was.",
    first="case",
)
SPILL_LATENCY = TableSpec(
    "10. Per-call latency while spilling, endpoint down (µs; 90,000 timed calls)",
    rows("spill"),
    cols(LATENCY_COLUMNS.format("loop_events_per_s")),
    targets("""
        | spill/down all.p50 / floor <= 1.3
        | spill/down-paced all.p50 / floor <= 1.3
    """),
    "the first 10,000 calls (the ring filling until spilling starts) are left out.",
    first="case",
)


# -- 12: a fleet -----------------------------------------------------------------------------------


FLEET = TableSpec(
    "12. A fleet: 50,000 events delivered, then node 0 killed and started again "
    "(20,000 events at 5,000/s)",
    rows("fleet"),
    cols(
        "delivered/s: events_per_s | seconds: elapsed_s | lost at kill: lost"
        " | dups at kill: duplicates | held by node 0: held_at_kill"
        " | all in +s: recovered_after_s | retries: stats.retries | spilled: stats.spilled"
    ),
    targets("nothing lost at a kill, every route | fleet/* lost == 0 | runs"),
    "delivered: written by Fluent Bit's file outputs, read back, not only accepted. "
    "Nodes buffer on disk (storage.type filesystem); HAProxy checks each node's "
    "/health and retries a failed request on another (docs/scaling.md). held by node "
    "0: events it had taken and not yet written when killed, written after its "
    "restart; the only ones that can be written twice. all in +s: from the restart "
    "until every event was written. A ShipHandler at its defaults.",
    medians=True,
    first="case",
)

TABLES = (LATENCY, THROUGHPUT, SERVICE, OUTAGE, EXIT, SUSTAINED, MEMORY, SPILL, REPLAY)
TABLES += (SPILL_LATENCY, REDACTION, FLEET)
#: The figures whose spread over the repeats says how noisy the run was.
SPREAD = (
    "latency p50, logship / NullHandler: latency/ship /all.p50",
    "latency p99, logship / NullHandler: latency/ship /all.p99",
    "latency p99.9, logship (µs): latency/ship all.p99.9",
    "latency p50, endpoint down / NullHandler: latency/down /all.p50",
    "latency p50, NullHandler (µs): latency/null all.p50",
    "latency p50, durability=crash / NullHandler: latency/ship-crash /all.p50",
    "delivered/s, logship defaults: throughput/ship events_per_s",
    "lost, logship defaults: throughput/ship lost",
    "delivered/s, overflow=block: throughput/ship-block events_per_s",
    "CPU µs/event, overflow=block / NullHandler: throughput/ship-block /cpu_us_per_event",
    "peak RSS growth MiB, endpoint down: memory/down peak_rss_growth_mib",
    "spilled/s, tight loop: spill/down spilled_per_s",
    "dropped, tight loop: spill/down stats.dropped",
    "spilled/s, paced: spill/down-paced spilled_per_s",
    "dropped, paced: spill/down-paced stats.dropped",
    "replayed/s: replay/ship events_per_s",
    "latency p50 spilling / NullHandler, tight: spill/down /all.p50",
    "latency p99 spilling / NullHandler, tight: spill/down /all.p99",
    "latency p50 spilling / NullHandler, paced: spill/down-paced /all.p50",
    "latency p99 spilling / NullHandler, paced: spill/down-paced /all.p99",
    "latency p99.9 spilling, paced (µs): spill/down-paced all.p99.9",
    "delivered/s through HAProxy: fleet/haproxy events_per_s",
)
#: The table at a glance: each column's header, and the table (its number) and column it shows.
GLANCE = (
    ("(1) p50 x null", "1.", "p50 x null"),
    ("(2) delivered/s", "2.", "delivered/s"),
    ("(2) CPU x null", "2.", "x null"),
    ("(3) request p99.9 x null", "3.", "p99.9 x null"),
    ("(4) lost", "4.", "lost"),
    ("(5) lost", "5.", "lost"),
    ("(5) exit ms", "5.", "last call → exit ms"),
    ("(6) CPU %", "6.", "CPU %"),
)


def glance(tables: list[Table]) -> Table:
    """At a glance: one line per handler with the key figures of each scenario."""
    t = Table("At a glance: logship and its peers", ["handler", *(g[0] for g in GLANCE)])
    numbered = {table.title.split(" ", 1)[0]: table for table in tables}
    for label, _kind in CONTENDERS:
        cells = []
        for _header, number, column in GLANCE:
            table = numbered.get(number)
            row = next((r for r in table.rows if r[0] == label), None) if table else None
            cells.append(row[list(table.headers).index(column)] if table and row else "-")
        if any(c != "-" for c in cells):
            t.rows.append([label, *cells])
    t.notes.append("details, and the reasons for a skipped or failed handler, in the tables below.")
    return t


def report(results: Results) -> list[Table]:
    """Every table with a row: at a glance, each scenario's in their order, the spread."""
    tables = [t for t in (build(spec, results) for spec in TABLES) if t.rows]
    return [t for t in (glance(tables), *tables, spread_table(SPREAD, results)) if t.rows]
