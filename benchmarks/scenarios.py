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
    Spread,
    Table,
    TableSpec,
    Target,
    Text,
    at_most,
    beyond,
    build,
    cell,
    fig,
    figure,
    good_runs,
    median,
    median_of,
    not_floor,
    over,
    ratio,
    spread_table,
    target,
)
from peers import PEER_KINDS, PEERS

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
P50_TARGET = 1.3
#: durability="crash" writes each event to a mapped file inside the call: its own p50 target.
P50_TARGET_CRASH = 1.5
_CRASH = "--durability crash"
#: A target's check: its figure as shown, and whether it is met (None: nothing to judge).
Check = tuple[str, bool | None]


@dataclass(frozen=True)
class Case:
    """One benchmark case: a script, its arguments, and how ``run.py`` runs it."""

    key: str
    script: str
    args: str  # its command line after the script, split on spaces: "--handler KIND ..."
    timeout: float = 60.0
    #: How many runs it gets: ``--repeat`` (""), ``--peer-repeat`` ("peers") or one ("once").
    runs: str = ""
    #: Gets a fresh ``--spill-dir`` of its own, removed after the run.
    folder: bool = False
    #: The key of a case that runs just before this one, in every repeat, with
    #: ``--spill-dir`` a fresh folder that this one then gets (and removes).
    replays: str = ""
    #: Whether a handler that ships is given a fresh peer_receivers.py (``--url``);
    #: the fleet ships to a fleet of its own.
    receiver: bool = True

    @property
    def kind(self) -> str:
        """The handler it measures: the value of its ``--handler``."""
        return self.args.split()[1]

    @property
    def live(self) -> bool:
        """Whether it gets a fresh receiver and ``--url``."""
        return self.receiver and self.kind not in ("null", "down")

    @property
    def peer(self) -> str:
        """The peer it needs (skipped, with the reason, when that peer does not import), or ""."""
        return self.kind if self.kind in PEER_KINDS else ""


@dataclass(frozen=True)
class Scenario:
    """A scenario: its cases, its tables, and the figures whose spread over repeats is shown."""

    cases: tuple[Case, ...]
    tables: tuple[TableSpec, ...]
    spread: tuple[Spread, ...] = ()


def contenders(
    name: str,
    script: str,
    args: str = "",
    suffix: str = "",
    own: str = "peers",
    timeout: float = 60.0,
    folder: bool = False,
) -> tuple[Case, ...]:
    """Case ``name/KIND+suffix``, ``--handler KIND args``, for each contender.

    The floor and logship get ``own`` runs, the peers ``--peer-repeat`` (or
    one each when ``own`` is "once"); ``folder`` is for the handlers that ship.
    """
    return tuple(
        Case(
            f"{name}/{kind}{suffix}",
            script,
            f"--handler {kind} {args}",
            timeout,
            runs=own if kind in ("null", "ship") or own == "once" else "peers",
            folder=folder and kind != "null",
        )
        for _label, kind in CONTENDERS
    )


def rows(
    name: str, suffix: str = "", tag: str = "", logship: tuple[Line, ...] = ()
) -> tuple[Line, ...]:
    """A row for each contender's case ``name/KIND+suffix``, its label followed by ``tag``;
    the rows ``logship`` (logship's other settings) after logship's own."""
    lines = [Line(label + tag, f"{name}/{kind}{suffix}") for label, kind in CONTENDERS]
    return (*lines[:2], *logship, *lines[2:])


def runs_note(prefix: str) -> Text:
    """A note: how many runs the table's figures are the median of."""

    def note(results: Results) -> str:
        counts = sorted({len(e["runs"]) for k, e in results.items() if k.startswith(prefix)})
        counts = [n for n in counts if n] or [0]
        shown = str(counts[0]) if counts[0] == counts[-1] else f"{counts[0]} to {counts[-1]}"
        return f"median of {shown} run(s) per handler."

    return note


# -- per-call latency ----------------------------------------------------------------------------


def pct(header: str, name: str, over_floor: bool = False) -> Col:
    """A percentile of the row's part of a latency result (over the floor's)."""

    def get(row: Row) -> float | None:
        mine = figure(row.r, f"{row.part}.{name}")
        return ratio(mine, figure(row.floor, f"{row.part}.{name}")) if over_floor else mine

    return Col(header, get)


def latency_columns(calls: str) -> tuple[Col, ...]:
    """The columns of a table of per-call times; ``calls``: the result's calls per second."""
    return (
        *(pct(h, h) for h in ("p50", "p99", "p99.9", "max", "mean")),
        pct("p50 x null", "p50", over_floor=True),
        pct("p99 x null", "p99", over_floor=True),
        Col("calls/s", lambda row: figure(row.r, calls) if row.part == "all" else None),
        Col("dropped", lambda row: figure(row.r, "stats.dropped") if row.part == "all" else None),
    )


_EXCEPTIONS_ONLY = "exception calls only"
_SECRET = "--handler ship --redact --secret"
LATENCY = Scenario(
    cases=(
        *contenders("latency", "latency.py", own=""),
        Case("latency/down", "latency.py", "--handler down"),
        Case("latency/ship-crash", "latency.py", f"--handler ship {_CRASH}"),
        *contenders("latency", "latency.py", "--exception-every 100", suffix="+exc", own=""),
        Case("latency/ship+redact", "latency.py", "--handler ship --redact"),
        Case("latency/ship+redact-secret", "latency.py", _SECRET),
    ),
    tables=(
        TableSpec(
            "1. Per-call latency on the application thread (µs; 50,000 timed calls)",
            (
                *rows(
                    "latency",
                    logship=(
                        Line("logship → endpoint down", "latency/down"),
                        Line("logship, durability=crash", "latency/ship-crash"),
                    ),
                ),
                *rows("latency", "+exc", ", exception/100"),
                Line(f"  NullHandler, {_EXCEPTIONS_ONLY}", "latency/null+exc", part="exceptions"),
                Line(f"  logship, {_EXCEPTIONS_ONLY}", "latency/ship+exc", part="exceptions"),
            ),
            latency_columns("calls_per_s"),
            (
                at_most("latency/ship", "all.p50", P50_TARGET),
                at_most("latency/down", "all.p50", P50_TARGET),
                at_most("latency/ship-crash", "all.p50", P50_TARGET_CRASH),
                at_most("latency/ship+exc", "all.p50", P50_TARGET),
            ),
            (
                "exception/100: every 100th call is logger.exception(...) in an except block. "
                "dropped: logship's stats() after a flush, warm-up included (peers have none).",
                runs_note("latency/"),
            ),
        ),
        TableSpec(
            "11. Redaction: per-call latency with RedactFilter (µs)",
            (
                Line("NullHandler", "latency/null"),
                Line("logship ShipHandler", "latency/ship"),
                Line("logship + RedactFilter", "latency/ship+redact"),
                Line("logship + RedactFilter, secret in message", "latency/ship+redact-secret"),
            ),
            (
                fig("p50", "all.p50"),
                fig("p99", "all.p99"),
                fig("mean", "all.mean"),
                over("p50 x null", "all.p50"),
                over("p50 x ship", "all.p50", per="latency/ship"),
                fig("filter p50", "filter.p50"),
                fig("filter mean", "filter.mean"),
            ),
            notes=("filter: RedactFilter.filter() alone, on fresh records of the same call.",),
            first="case",
        ),
    ),
    spread=(
        Spread("latency p50, logship / NullHandler", "latency/ship", "all.p50", over=True),
        Spread("latency p99, logship / NullHandler", "latency/ship", "all.p99", over=True),
        Spread("latency p99.9, logship (µs)", "latency/ship", "all.p99.9"),
        Spread("latency p50, endpoint down / NullHandler", "latency/down", "all.p50", over=True),
        Spread("latency p50, NullHandler (µs)", "latency/null", "all.p50"),
        Spread(
            "latency p50, durability=crash / NullHandler", "latency/ship-crash", "all.p50", True
        ),
    ),
)


# -- end to end ----------------------------------------------------------------------------------


def ending(row: Row) -> str | None:
    """How the runs' waits for the receiver ended: all, settled or timeout (the worst)."""
    ends = {
        "timeout" if r.get("timed_out") else "settled" if r.get("settled") else "all"
        for r in row.runs
    }
    return (
        None if row.is_floor else next((e for e in ("timeout", "settled", "all") if e in ends), "-")
    )


def delivered(key: str) -> Target:
    """Target: at least 50,000 events/s delivered end to end by case ``key``."""
    text = "≥ 50,000 events/s delivered (gzip+JSON)"
    return target(text, key, "events_per_s", 50_000, "{:,.0f}/s", least=True)


def end_to_end(key: str, args: str) -> Case:
    """An end-to-end case: 45 s to deliver after the loop, 75 s in all."""
    return Case(key, "throughput.py", f"{args} --deadline 45", timeout=75)


THROUGHPUT = Scenario(
    cases=(
        *contenders("throughput", "throughput.py", "--deadline 45", own="", timeout=75),
        end_to_end("throughput/ship-block", "--handler ship --overflow block"),
        end_to_end("throughput/ship-crash", f"--handler ship {_CRASH}"),
        # 50,000 is a multiple of batch_max_records: the last batch goes out full at
        # the last call. A burst that ends mid-batch shows what its tail waits for.
        end_to_end("throughput/ship-tail", "--handler ship --events 50500"),
    ),
    tables=(
        TableSpec(
            "2. End to end (50,000 events until the receiver counted them)",
            rows(
                "throughput",
                logship=(
                    Line("logship, overflow=block", "throughput/ship-block"),
                    Line("logship, durability=crash", "throughput/ship-crash"),
                    Line("logship, a burst of 50,500 events", "throughput/ship-tail"),
                ),
            ),
            (
                fig("delivered/s", "events_per_s"),
                fig("seconds", "elapsed_s"),
                fig("loop ev/s", "loop_events_per_s"),
                fig("CPU µs/ev", "cpu_us_per_event"),
                over("x null", "cpu_us_per_event"),
                fig("app-thread µs/ev", "main_thread_cpu_us_per_event"),
                fig("peak RSS MiB", "peak_rss_mib"),
                fig("RSS growth MiB", "peak_rss_growth_mib"),
                not_floor(fig("lost", "lost")),
                fig("dropped", "stats.dropped"),
                fig("spilled", "stats.spilled"),
                Col("ended", ending),
            ),
            (
                delivered("throughput/ship"),
                delivered("throughput/ship-block"),
                target(
                    "≥ 0.5 x logship defaults' delivered/s",
                    "throughput/ship-crash",
                    "events_per_s",
                    0.5,
                    per="throughput/ship",
                    least=True,
                ),
                at_most("throughput/ship", "cpu_us_per_event", 2.5, name="CPU per event"),
            ),
            (
                "lost: logged, never counted (logship's default overflow, 'spill', drops what "
                "neither the ring nor the spill takes). ended: all = every event counted; settled "
                "= nothing more arrived for the longest the peer holds an event plus 2 s; "
                "timeout = 45 s after the loop.",
                runs_note("throughput/"),
            ),
        ),
    ),
    spread=(
        Spread("delivered/s, logship defaults", "throughput/ship", "events_per_s"),
        Spread("lost, logship defaults", "throughput/ship", "lost"),
        Spread("delivered/s, overflow=block", "throughput/ship-block", "events_per_s"),
        Spread(
            "CPU µs/event, overflow=block / NullHandler",
            "throughput/ship-block",
            "cpu_us_per_event",
            over=True,
        ),
    ),
)


# -- a service -----------------------------------------------------------------------------------


def held(row: Row) -> float | None:
    """The share of the probe's time that other threads held it off, in %."""
    share = figure(row.r, "probe.held_share")
    return None if share is None else 100 * share


_CRASH_ROW = "logship, durability=crash"
SERVICE = Scenario(
    cases=(
        *contenders("service", "service.py", own="once", timeout=20),
        Case("service/ship-crash", "service.py", f"--handler ship {_CRASH}", 20, runs="once"),
    ),
    tables=(
        TableSpec(
            "3. A service (4 threads, 1,500 requests/s, 5 log calls in each; µs per request)",
            rows("service", logship=(Line(_CRASH_ROW, "service/ship-crash"),)),
            (
                fig("requests", "request.n"),
                *(fig(h, f"request.{h}") for h in ("p50", "p99", "p99.9", "max")),
                over("p99 x null", "request.p99"),
                over("p99.9 x null", "request.p99.9"),
                fig("CPU µs/ev", "cpu_us_per_event"),
                beyond("over null µs/ev", "cpu_us_per_event"),
                fig("probe p99.9 gap", "probe.p99.9"),
                fig("probe max gap", "probe.max"),
                Col("probe held %", held),
            ),
            (
                at_most("service/ship", "request.p99.9", 1.5, aim=1.2, name="request p99.9"),
                at_most("service/ship", "request.p99", 1.2, name="request p99"),
                target(
                    "request p99.9 ≤ 1 x logship defaults'",
                    "service/ship-crash",
                    "request.p99.9",
                    1.0,
                    per="service/ship",
                ),
                target(
                    "CPU ≤ 8 (aim 5) µs per event over null",
                    "service/ship",
                    "cpu_us_per_event",
                    8.0,
                    "{:.1f} µs",
                    less="service/null",
                ),
            ),
            (
                "a request's time runs from when it was due. CPU: the whole process over the "
                "timed window, per log call. probe gap: a time (over 50 µs) the probe thread "
                "could not run, in a phase of its own after the timed window. One run each.",
            ),
        ),
    ),
)


# -- an outage -----------------------------------------------------------------------------------


def flat(row: Row) -> bool:
    """Whether RSS stayed flat over the outage's second half (over the floor's)."""
    floor = {} if row.is_floor else row.floor
    first, second = (
        row.r[f"rss_growth_{half}_half_mib"] - (figure(floor, f"rss_growth_{half}_half_mib") or 0)
        for half in ("first", "second")
    )
    return bool(second <= max(PLATEAU_GROWTH * first, NOISE_MIB))


def outage_lost(results: Results) -> tuple[str, bool | None]:
    """logship's events lost in the outage, in its worst run."""
    lost = [r["lost"] for r in good_runs(results, "outage/ship")]
    worst = max(lost) if lost else "-"
    return f"lost {worst} in the worst of {len(lost)} run(s)", not any(lost) if lost else None


def outage_flat(results: Results) -> tuple[str, bool | None]:
    """In how many of logship's runs its RSS stayed flat during the outage."""
    floor = median(results, "outage/null") or {}
    flats = [flat(Row("", r, floor, [], results)) for r in good_runs(results, "outage/ship")]
    return f"flat in {sum(flats)} of {len(flats)} run(s)", all(flats) if flats else None


OUTAGE = Scenario(
    cases=contenders("outage", "outage.py", timeout=75),
    tables=(
        TableSpec(
            "4. Outage (503 for 5 s while 20,000 events are logged; µs per call)",
            rows("outage"),
            (
                *(fig(h, f"all.{h}") for h in ("p50", "p99", "p99.9", "max")),
                over("p99 x null", "all.p99"),
                fig("lost", "lost"),
                fig("at close", "at_close"),
                fig("dups", "duplicates"),
                fig("RSS 1st half MiB", "rss_growth_first_half_mib"),
                fig("2nd half", "rss_growth_second_half_mib"),
                Col("flat", flat),
                fig("last in +s", "recovered_after_s"),
            ),
            (
                Target("0 lost, logship", outage_lost),
                Target("memory flat during the outage, logship", outage_flat),
            ),
            (
                "lost: of every event logged, never counted, even after close(); at close: "
                "counted only once the handler was closed. flat: the second half's growth, over "
                f"the floor's, at most {PLATEAU_GROWTH:.0%} of the first half's (or "
                f"{NOISE_MIB:g} MiB). last in +s: the last event counted, after the recovery.",
                runs_note("outage/"),
            ),
        ),
    ),
)


# -- exit ----------------------------------------------------------------------------------------


def exit_figures(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The median of a case's exits: events arrived, ms from its last call to its exit, kills.

    A run killed at its timeout after printing its result counts, its kill as its exit.
    """
    figures = []
    for run in entry["runs"]:
        result = run.get("partial") if "error" in run else run
        if result and "exited_at" in run:
            arrived = (run.get("receiver_after") or {}).get("unique")
            ms = 1000 * (run["exited_at"] - result["last_call_at"])
            figures.append({"arrived": arrived, "exit_ms": ms, "events": result["events"]})
    killed = sum("error" in run for run in entry["runs"] if run.get("partial"))
    return {**median_of(figures), "killed": killed, "runs": len(figures)} if figures else None


def exit_lost(row: Row) -> int | None:
    """Events logged that never arrived."""
    return None if row.is_floor or row.r["arrived"] is None else row.r["events"] - row.r["arrived"]


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


def exit_target(results: Results) -> tuple[str, bool | None]:
    """In how many of logship's runs every event arrived and the exit took under 0.5 s."""
    runs = [exit_figures({"runs": [r]}) for r in (results.get("exit/ship") or {}).get("runs", [])]
    ok = [f["arrived"] == f["events"] and f["exit_ms"] < 500 for f in runs if f]
    worst = max((f["exit_ms"] for f in runs if f), default=None)
    slowest = "-" if worst is None else f"{worst:.0f} ms"
    return f"in {sum(ok)} of {len(ok)} run(s) (slowest {slowest})", all(ok) if ok else None


EXIT = Scenario(
    cases=(
        *contenders("exit", "shutdown.py", timeout=30, folder=True),
        # The same exit with nothing logged: the interpreter's own exit with the
        # handler's modules loaded and nothing to deliver.
        *contenders("exit", "shutdown.py", "--events 0", suffix="+idle", timeout=30, folder=True),
    ),
    tables=(
        TableSpec(
            "5. Exit (10,000 events, then a normal interpreter exit)",
            rows("exit"),
            (
                not_floor(fig("arrived", "arrived")),
                Col("lost", exit_lost),
                Col("last call → exit ms", exit_ms),
                over("x null", "exit_ms"),
                Col("nothing logged ms", idle_ms),
                Col("delivering ms", delivering_ms),
                Col("killed at timeout", lambda row: f"{row.r['killed']} of {row.r['runs']}"),
            ),
            (Target("every event arrived and exit in under 0.5 s, logship", exit_target),),
            (
                "nothing logged: the same exit with no event logged. delivering: the difference "
                "('-' for a killed run, or when the exit with nothing logged was the slower).",
                runs_note("exit/"),
            ),
            figures=exit_figures,
        ),
    ),
)


# -- a sustained load ----------------------------------------------------------------------------

SUSTAINED = Scenario(
    cases=contenders(
        "sustained",
        "service.py",
        "--threads 1 --rate 100 --logs 20 --work 0",
        own="once",
        timeout=30,
    ),
    tables=(
        TableSpec(
            "6. Sustained load (2,000 events/s from one thread; CPU of one core)",
            rows("sustained"),
            (
                fig("seconds", "window_s"),
                Col("CPU %", lambda row: 100 * row.r["cpu_share"]),
                over("x null", "cpu_share"),
                fig("CPU µs/ev", "cpu_us_per_event"),
                beyond("over null µs/ev", "cpu_us_per_event"),
                not_floor(fig("delivered", "received_unique")),
                not_floor(fig("of logged", "logged")),
            ),
            (
                target(
                    "under 4% of one core, the floor included",
                    "sustained/ship",
                    "cpu_share",
                    0.04,
                    "{:.2%}",
                ),
            ),
            ("delivered: counted by the receiver at the window's end. One run each.",),
        ),
    ),
)


# -- the endpoint down: memory, spill, replay ----------------------------------------------------


def late_growth(run: dict[str, Any]) -> float:
    """How much RSS growth rose from 100k to 200k events, relative to its 100k level."""
    points: dict[int, float] = {p["events"]: p["growth_mib"] for p in run["points"]}
    return (points[200_000] - points[100_000]) / max(points[100_000], NOISE_MIB)


def growth_at(events: int) -> Col:
    """RSS growth over the start once ``events`` were logged."""
    return Col(
        f"+{events // 1000}k",
        lambda row: next(p["growth_mib"] for p in row.r["points"] if p["events"] == events),
    )


def plateau(results: Results) -> tuple[str, bool | None]:
    """In how many runs RSS stayed flat from 100k to 200k events, and what was queued then."""
    late = [late_growth(r) for r in good_runs(results, "memory/down")]
    flat_runs = sum(x <= PLATEAU_GROWTH for x in late)
    queued = cell(figure(median(results, "memory/down"), "stats_loop_end.queued"))
    shown = (
        f"flat in {flat_runs} of {len(late)} runs (growth ≤ {PLATEAU_GROWTH:+.0%} from 100k to "
        f"200k events; median {median_of(late or [0]):+.0%}, worst {max(late, default=0):+.0%}); "
        f"{queued} events in memory at the end"
    )
    return shown, flat_runs == len(late) if late else None


SPILL_ROWS = (
    Line("NullHandler, tight loop", "spill/null"),
    Line("logship → endpoint down, tight loop", "spill/down"),
    Line(f"NullHandler, paced {SPILL_RATE:,}/s", "spill/null-paced"),
    Line(f"logship → endpoint down, paced {SPILL_RATE:,}/s", "spill/down-paced"),
)


def worst_dropped(row: Row) -> float | None:
    """The most events dropped in one run."""
    return max((figure(r, "stats.dropped") or 0 for r in row.runs), default=None)


def nothing_dropped(results: Results) -> tuple[str, bool | None]:
    """In how many paced runs logship dropped events, and whether every event is accounted for."""
    lost = [r["stats"]["dropped"] for r in good_runs(results, "spill/down-paced")]
    whole = []
    for key in ("spill/down", "spill/down-paced"):
        runs = good_runs(results, key)
        n = sum(r["stats"]["spilled"] + r["stats"]["dropped"] == r["events"] for r in runs)
        whole.append(f"{key} {n} of {len(runs)}")
    shown = f"dropped in {sum(n > 0 for n in lost)} of {len(lost)} runs"
    shown += f" (every event spilled or dropped after close(): {', '.join(whole)} runs)"
    return shown, not any(lost) if lost else None


def replayed(results: Results) -> tuple[str, bool | None]:
    """In how many runs every event on disk was replayed, counted once, and the folder emptied."""
    runs = good_runs(results, "replay/ship")
    complete = sum(
        r["stats"]["replayed"] == r["received_unique"] == r["on_disk_events"]
        and not r["left_files"]
        and not r["timed_out"]
        for r in runs
    )
    return f"{complete} of {len(runs)} runs", complete == len(runs) if runs else None


_DOWN = "--handler down"
_PACED = f"--rate {SPILL_RATE}"
_CHECKPOINTS = "--events 200000 --checkpoints 50000,100000,200000"
DOWN = Scenario(
    cases=(
        Case("memory/null", "spill.py", f"--handler null {_CHECKPOINTS}"),
        Case("memory/down", "spill.py", f"{_DOWN} {_CHECKPOINTS}"),
        Case("spill/null", "spill.py", "--handler null"),
        Case("spill/down", "spill.py", _DOWN),
        Case("spill/null-paced", "spill.py", f"--handler null {_PACED}"),
        Case("spill/down-paced", "spill.py", f"{_DOWN} {_PACED}"),
        Case("replay/ship", "replay.py", "--handler ship", replays="spill/down-paced"),
    ),
    tables=(
        TableSpec(
            "7. Memory with the endpoint down (200,000 events; RSS growth over the start, MiB)",
            (Line("NullHandler", "memory/null"), Line("logship → endpoint down", "memory/down")),
            (
                fig("base RSS", "base_rss_mib"),
                *(growth_at(n) for n in (50_000, 100_000, 200_000)),
                fig("peak growth", "peak_rss_growth_mib"),
                Col("ev/s", lambda row: row.r["points"][-1]["events_per_s"]),
                fig("queued", "stats_loop_end.queued"),
                fig("dropped", "stats_loop_end.dropped"),
                fig("spilled", "stats_loop_end.spilled"),
                Col(
                    "spill MiB",
                    lambda row: ratio(figure(row.r, "stats_loop_end.spill_bytes"), 2**20),
                ),
            ),
            (Target("memory bounded by capacity (10,000 events)", plateau),),
            ("ev/s: the last 100,000. queued, dropped, spilled: stats() after the last call.",),
            first="case",
        ),
        TableSpec(
            "8. Spill with the endpoint down (100,000 events; defaults: overflow='spill')",
            SPILL_ROWS,
            (
                fig("loop ev/s", "loop_events_per_s"),
                fig("spilled/s", "spilled_per_s"),
                fig("spilled", "spilled_running"),
                fig("+ at close", "spilled_at_close"),
                fig("dropped", "stats.dropped"),
                Col(
                    "dropped %",
                    lambda row: ratio(figure(row.r, "stats.dropped"), row.r["events"] / 100),
                ),
                not_floor(Col("worst run", worst_dropped)),
                fig("B/event on disk", "bytes_per_event"),
                fig("CPU µs/ev", "cpu_us_per_event"),
                over("x null", "cpu_us_per_event"),
            ),
            (Target("nothing dropped at a rate the worker sustains (paced)", nothing_dropped),),
            (
                "spilled/s: stats()['spilled'] once it stopped growing, over the time until then; "
                "+ at close: what close() wrote after that. dropped: after close(), warm-up "
                "included (worst run: the most in one run).",
            ),
            first="case",
        ),
        TableSpec(
            "9. Replay of the spill (paced run's folder) to a receiver, in a fresh process",
            (Line("ShipHandler(spill_dir=...) → receiver", "replay/ship"),),
            (
                fig("on disk", "on_disk_events"),
                fig("replayed/s", "events_per_s"),
                fig("seconds", "elapsed_s"),
                fig("replayed", "stats.replayed"),
                fig("received", "received_unique"),
                fig("duplicates", "receiver.duplicates"),
                fig("CPU µs/ev", "cpu_us_per_event"),
                Col("files left", lambda row: max(len(r["left_files"]) for r in row.runs)),
                fig("emptied +s", "emptied_after_s"),
            ),
            (Target("every event on disk replayed, counted once, folder empty", replayed),),
            ("files left: spill files after close() (worst run); emptied +s: until none was.",),
            first="case",
        ),
        TableSpec(
            "10. Per-call latency while spilling, endpoint down (µs; 90,000 timed calls)",
            SPILL_ROWS,
            latency_columns("loop_events_per_s"),
            (
                at_most("spill/down", "all.p50", P50_TARGET),
                at_most("spill/down-paced", "all.p50", P50_TARGET),
            ),
            ("the first 10,000 calls (the ring filling until spilling starts) are left out.",),
            first="case",
        ),
    ),
    spread=(
        Spread("peak RSS growth MiB, endpoint down", "memory/down", "peak_rss_growth_mib"),
        Spread("spilled/s, tight loop", "spill/down", "spilled_per_s"),
        Spread("dropped, tight loop", "spill/down", "stats.dropped"),
        Spread("spilled/s, paced", "spill/down-paced", "spilled_per_s"),
        Spread("dropped, paced", "spill/down-paced", "stats.dropped"),
        Spread("replayed/s", "replay/ship", "events_per_s"),
        Spread("latency p50 spilling / NullHandler, tight", "spill/down", "all.p50", over=True),
        Spread("latency p99 spilling / NullHandler, tight", "spill/down", "all.p99", over=True),
        Spread("latency p50 spilling / NullHandler, paced", "spill/down-paced", "all.p50", True),
        Spread("latency p99 spilling / NullHandler, paced", "spill/down-paced", "all.p99", True),
        Spread("latency p99.9 spilling, paced (µs)", "spill/down-paced", "all.p99.9"),
    ),
)

# -- a fleet -------------------------------------------------------------------------------------

#: Each way to a fleet of three Fluent Bit nodes, and one node alone: (route, label).
FLEET_ROUTES = (
    ("single", "logship → one Fluent Bit node"),
    ("haproxy", "logship → HAProxy → 3 nodes"),
    ("failover", "logship, url=[3 nodes], failover"),
    ("round_robin", "logship, url=[3 nodes], round_robin"),
)


def nothing_lost_at_a_kill(results: Results) -> tuple[str, bool | None]:
    """In how many runs of every route the kill lost no event."""
    runs = [r for route, _l in FLEET_ROUTES for r in good_runs(results, f"fleet/{route}")]
    lost = sum(r["lost"] > 0 for r in runs)
    return f"lost events in {lost} of {len(runs)} run(s)", not lost if runs else None


FLEET = Scenario(
    cases=tuple(
        Case(
            f"fleet/{route}",
            "fleet_bench.py",
            f"--handler ship --route {route}",
            timeout=150,
            runs="peers",
            receiver=False,  # its own fleet of Fluent Bit nodes
        )
        for route, _label in FLEET_ROUTES
    ),
    tables=(
        TableSpec(
            "12. A fleet: 50,000 events delivered, then node 0 killed and started again "
            "(20,000 events at 5,000/s)",
            tuple(Line(label, f"fleet/{route}") for route, label in FLEET_ROUTES),
            (
                fig("delivered/s", "events_per_s"),
                fig("seconds", "elapsed_s"),
                fig("lost at kill", "lost"),
                fig("dups at kill", "duplicates"),
                fig("held by node 0", "held_at_kill"),
                fig("all in +s", "recovered_after_s"),
                fig("retries", "stats.retries"),
                fig("spilled", "stats.spilled"),
            ),
            (Target("nothing lost at a kill, every route", nothing_lost_at_a_kill),),
            (
                "delivered: written by Fluent Bit's file outputs, read back, not only accepted. "
                "Nodes buffer on disk (storage.type filesystem); HAProxy checks each node's "
                "/health and retries a failed request on another (docs/scaling.md). held by node "
                "0: events it had taken and not yet written when killed, written after its "
                "restart; the only ones that can be written twice. all in +s: from the restart "
                "until every event was written. A ShipHandler at its defaults.",
                runs_note("fleet/"),
            ),
            first="case",
        ),
    ),
    spread=(Spread("delivered/s through HAProxy", "fleet/haproxy", "events_per_s"),),
)

SCENARIOS = (LATENCY, THROUGHPUT, SERVICE, OUTAGE, EXIT, SUSTAINED, DOWN, FLEET)
CASES = tuple(case for s in SCENARIOS for case in s.cases)
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
    specs = sorted(
        (t for s in SCENARIOS for t in s.tables), key=lambda t: int(t.title.split(".")[0])
    )
    tables = [t for t in (build(spec, results) for spec in specs) if t.rows]
    spread = spread_table([x for s in SCENARIOS for x in s.spread], results)
    return [t for t in (glance(tables), *tables, spread) if t.rows]
