"""Run every benchmark case in its own subprocess and report them against a NullHandler floor.

The machine is shared and noisy, so nothing here is an absolute figure to
compare across runs: every case is set against the same measurement with a
``logging.NullHandler`` taken in the same run, the cases are interleaved,
and each is repeated (``--repeat``) with the per-figure median reported.

Prints the tables of ``_tables`` (latency, end-to-end throughput, memory
with the endpoint down, spill and replay, latency while spilling, and the
spread over the repeats) with the targets next to the figures, and writes
``benchmarks/results/latest.json`` and ``benchmarks/results/latest.md``.

Then the comparison with the peers (``peers.py``): the standard library's
``QueueHandler`` around ``HTTPHandler``, python-logstash-async,
fluent-logger, the OpenTelemetry SDK and logzio-python-handler, each at its
defaults, in a fresh process, against ``peer_receivers.py`` in another:
per-call latency and end to end (more rows of the tables above, by the same
scripts), an outage, exit, and a sustained load, each set against the
NullHandler floor (``_peer_tables``). A peer whose package does not import
is reported as skipped. The comparison repeats ``--peer-repeat`` times, the
sustained load (30 s per handler) once.

A case may replay the spill folder that another leaves: in every repeat the
other runs first, with a fresh ``--spill-dir``, and the replaying case gets
that folder in a process of its own right after (``--only`` adds it).

Repeats stop when the next would end past ``--budget`` seconds, judged by
how long its cases took the last time; the comparison's repeats go first.

    .venv/bin/python benchmarks/run.py [--repeat 5] [--peer-repeat 2] [--only latency,memory]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from _common import receiver_stats
from _harness import HERE, PEER_RECEIVER, RECEIVER, missing, receiver, run_case
from _peer_tables import PEER_TABLES
from _report import Table, median_of
from _tables import TABLES
from install import not_installed, read_failures
from peers import PEERS
from redact import redact_table

RESULTS_DIR = os.path.join(HERE, "results")
#: Events/s of the paced spill cases: steady, and well within what the worker
#: spills on a 2-CPU machine (about 80,000/s there before the first drop).
SPILL_RATE = 50_000


@dataclass(frozen=True)
class Case:
    """One benchmark case: a script, its arguments, whether it needs a receiver."""

    key: str
    script: str
    args: tuple[str, ...]
    live: bool = False  # needs a fresh receiver; gets ``--url``
    timeout: float = 60.0
    #: The key of a case that runs just before this one, in every repeat, with
    #: ``--spill-dir`` a fresh folder that this one then gets (and removes).
    replays: str = ""
    #: The receiver's command line (``_harness``), when ``live``.
    receiver: tuple[str, ...] = RECEIVER
    #: How many runs it gets: ``--repeat`` (""), ``--peer-repeat`` ("peers") or one ("once").
    runs: str = ""
    #: The peer it needs: skipped, with the reason, when that peer does not import.
    peer: str = ""
    #: Gets a fresh ``--spill-dir`` of its own, removed after the run.
    folder: bool = False


def comparison_cases() -> list[Case]:
    """The comparison's own scenarios: outage, exit and sustained load, for every handler.

    Each has a NullHandler floor (no receiver), a ShipHandler and every peer,
    all against ``peer_receivers.py``.
    """
    scenarios: tuple[tuple[str, str, str, tuple[str, ...], float, str, bool], ...] = (
        # (key prefix, key suffix, script, more arguments, timeout, runs, folder)
        ("outage", "", "outage.py", (), 75.0, "peers", False),
        ("exit", "", "shutdown.py", (), 30.0, "peers", True),
        # The same exit with nothing logged: what the interpreter takes to
        # exit with the handler's modules loaded and nothing to deliver.
        ("exit", "+idle", "shutdown.py", ("--events", "0"), 30.0, "peers", True),
        ("sustained", "", "sustained.py", (), 60.0, "once", False),
    )
    cases = []
    for prefix, suffix, script, more, timeout, runs, folder in scenarios:
        cases.append(
            Case(
                f"{prefix}/null{suffix}",
                script,
                ("--handler", "null", *more),
                timeout=timeout,
                runs=runs,
            )
        )
        for kind in ("ship", *(p.kind for p in PEERS)):
            cases.append(
                Case(
                    f"{prefix}/{kind}{suffix}",
                    script,
                    ("--handler", kind, *more),
                    live=True,
                    timeout=timeout,
                    receiver=PEER_RECEIVER,
                    runs=runs,
                    peer="" if kind == "ship" else kind,
                    folder=folder,
                )
            )
    return cases


CASES = (
    Case("latency/null", "latency.py", ("--handler", "null")),
    Case("latency/ship", "latency.py", ("--handler", "ship"), live=True),
    Case("latency/down", "latency.py", ("--handler", "down")),
    *(
        Case(
            f"latency/{p.kind}",
            "latency.py",
            ("--handler", p.kind),
            live=True,
            receiver=PEER_RECEIVER,
            runs="peers",
            peer=p.kind,
        )
        for p in PEERS
    ),
    Case("latency/null+exc", "latency.py", ("--handler", "null", "--exception-every", "100")),
    Case(
        "latency/ship+exc",
        "latency.py",
        ("--handler", "ship", "--exception-every", "100"),
        live=True,
    ),
    *(
        Case(
            f"latency/{p.kind}+exc",
            "latency.py",
            ("--handler", p.kind, "--exception-every", "100"),
            live=True,
            receiver=PEER_RECEIVER,
            runs="peers",
            peer=p.kind,
        )
        for p in PEERS
    ),
    Case("throughput/null", "throughput.py", ("--handler", "null")),
    Case(
        "throughput/ship",
        "throughput.py",
        ("--handler", "ship", "--deadline", "45"),
        live=True,
        timeout=75,
    ),
    Case(
        "throughput/ship-block",
        "throughput.py",
        ("--handler", "ship", "--overflow", "block", "--deadline", "45"),
        live=True,
        timeout=75,
    ),
    # 50,000 is a multiple of batch_max_records: the last batch goes out full at
    # the last call. A burst that ends mid-batch shows what its tail waits for.
    Case(
        "throughput/ship-tail",
        "throughput.py",
        ("--handler", "ship", "--events", "50500", "--deadline", "45"),
        live=True,
        timeout=75,
    ),
    *(
        Case(
            f"throughput/{p.kind}",
            "throughput.py",
            ("--handler", p.kind, "--deadline", "45"),
            live=True,
            timeout=75,
            receiver=PEER_RECEIVER,
            runs="peers",
            peer=p.kind,
        )
        for p in PEERS
    ),
    Case("memory/null", "memory.py", ("--handler", "null")),
    Case("memory/down", "memory.py", ("--handler", "down")),
    Case("spill/null", "spill.py", ("--handler", "null")),
    Case("spill/down", "spill.py", ("--handler", "down")),
    Case("spill/null-paced", "spill.py", ("--handler", "null", "--rate", str(SPILL_RATE))),
    Case("spill/down-paced", "spill.py", ("--handler", "down", "--rate", str(SPILL_RATE))),
    Case(
        "spill/replay",
        "replay.py",
        ("--handler", "ship"),
        live=True,
        replays="spill/down-paced",
    ),
    Case("redact/null", "redact.py", ("--handler", "null")),
    Case("redact/ship", "redact.py", ("--handler", "ship"), live=True),
    Case("redact/ship+redact", "redact.py", ("--handler", "ship", "--redact"), live=True),
    Case(
        "redact/ship+redact-secret",
        "redact.py",
        ("--handler", "ship", "--redact", "--secret"),
        live=True,
    ),
    *comparison_cases(),
)


def select(prefixes: list[str]) -> list[Case]:
    """The cases whose key starts with one of ``prefixes`` (all if none), and those they replay."""
    chosen = {c.key for c in CASES if not prefixes or c.key.startswith(tuple(prefixes))}
    chosen |= {c.replays for c in CASES if c.key in chosen and c.replays}
    return [c for c in CASES if c.key in chosen]


def runs_of(case: Case, repeat: int, peer_repeat: int) -> int:
    """How many runs ``case`` gets."""
    return {"": repeat, "peers": peer_repeat, "once": 1}[case.runs]


def skipped_peers(cases: list[Case]) -> dict[str, str]:
    """Each peer that ``cases`` need and that cannot run, with the reason.

    A package that ``install.py`` could not install is named with pip's
    reason; otherwise the peer is tried by importing its modules.
    """
    needed = {c.peer for c in cases if c.peer}
    failures = read_failures()
    reasons = {}
    for p in PEERS:
        if p.kind in needed and (reason := missing(p.modules)):
            # A package installed by hand since install.py ran imports: not skipped.
            reasons[p.kind] = not_installed(p.packages, failures) or reason
    return reasons


def run_all(
    cases: list[Case], repeat: int, peer_repeat: int, budget: float, skipped: dict[str, str]
) -> dict[str, Any]:
    """Run ``cases``, interleaved, each its number of times; return each one's runs and median.

    A repeat after the first that would end past ``budget`` seconds (judged
    by how long its cases took the last time) is given up, first for the
    comparison's cases, then whole. Cases whose peer is in ``skipped`` do not
    run and carry the reason.
    """
    runs: dict[str, list[dict[str, Any]]] = {c.key: [] for c in cases}
    took: dict[str, float] = {}  # seconds each case took the last time
    replayed = {c.replays for c in cases if c.replays}
    cases = [c for c in cases if c.peer not in skipped]
    started = time.perf_counter()
    planned = sum(runs_of(c, repeat, peer_repeat) for c in cases)
    n = 0
    for r in range(repeat):
        todo = [c for c in cases if r < runs_of(c, repeat, peer_repeat)]
        if r:
            left = budget - (time.perf_counter() - started)
            cut = [c for c in todo if c.runs] if sum(took[c.key] for c in todo) > left else []
            if cut:
                todo = [c for c in todo if not c.runs]
                cases = [c for c in cases if not c.runs]
                planned -= sum(runs_of(c, repeat, peer_repeat) - r for c in cut)
                print(f"(time budget of {budget:.0f} s: the comparison's runs {r + 1}+ skipped)")
            if not todo or sum(took[c.key] for c in todo) > left:
                print(f"(time budget of {budget:.0f} s spent: {repeat - r} repeat(s) skipped)")
                break
        folders: dict[str, str] = {}  # spill folders left for the case that replays them
        try:
            for case in todo:
                n += 1
                print(f"[{n:>3}/{planned}] {case.key:<24}", end=" ", flush=True)
                if case.key in replayed:
                    folders[case.key] = tempfile.mkdtemp(prefix="logship-bench-spill-")
                folder = folders.get(case.key) or folders.get(case.replays)
                t0 = time.perf_counter()
                result = run_one(case, folder)
                took[case.key] = time.perf_counter() - t0
                status = (
                    "ok" if "error" not in result else "ERROR: " + result["error"].splitlines()[0]
                )
                print(f"{took[case.key]:5.1f} s  {status}", flush=True)
                runs[case.key].append(result)
                if case.replays in folders:
                    shutil.rmtree(folders.pop(case.replays), ignore_errors=True)
        finally:
            for folder in folders.values():
                shutil.rmtree(folder, ignore_errors=True)
    out: dict[str, Any] = {}
    for key, results in runs.items():
        good = [x for x in results if "error" not in x]
        out[key] = {"median": median_of(good) if good else None, "runs": results}
    for case in CASES:
        if case.key in out and case.peer in skipped:
            out[case.key]["skipped"] = skipped[case.peer]
    return out


def run_one(case: Case, spill_dir: str | None = None) -> dict[str, Any]:
    """Run one case once, with a fresh receiver of its own when it needs one.

    ``spill_dir``, when given, is passed on as ``--spill-dir``; a case that
    wants a folder of its own gets a fresh one. A live case's result (or
    error) also gets the receiver's counts once the process has ended
    (``receiver_after``).
    """
    own = tempfile.mkdtemp(prefix="logship-bench-") if case.folder and not spill_dir else None
    spill_dir = spill_dir or own
    args = [*case.args, "--spill-dir", spill_dir] if spill_dir else list(case.args)
    try:
        if not case.live:
            return run_case(case.script, args, case.timeout)
        with receiver(case.receiver) as url:
            result = run_case(case.script, [*args, "--url", url], case.timeout)
            try:
                result["receiver_after"] = receiver_stats(url)
            except OSError as e:
                result.setdefault("error", f"the receiver did not answer: {e}")
            return result
    except RuntimeError as e:  # the receiver did not start
        return {"error": str(e)}
    finally:
        if own:
            shutil.rmtree(own, ignore_errors=True)


def meta(repeat: int, peer_repeat: int, wall: float) -> dict[str, Any]:
    """Where and how this run was made, to read its figures with."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "repeat": repeat,
        "peer_repeat": peer_repeat,
        "wall_s": round(wall, 1),
    }


def write_results(info: dict[str, Any], results: dict[str, Any], tables: list[Table]) -> None:
    """Write ``results/latest.json`` and ``results/latest.md``."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, "latest.json"), "w", encoding="utf-8") as f:
        json.dump({"meta": info, "cases": results}, f, indent=2)
        f.write("\n")
    header = [
        "# logship benchmarks: latest run",
        "",
        f"{info['date']}, Python {info['python']}, {info['cpus']} CPUs, {info['platform']}; "
        f"load average at the end {info['loadavg']}; median of {info['repeat']} interleaved "
        f"run(s) per case ({info['peer_repeat']} for the comparison with the peers, 1 for its "
        "sustained load). Ratios are against a NullHandler measured in the same run. "
        f"{info['wall_s']:.0f} s in all.",
    ]
    with open(os.path.join(RESULTS_DIR, "latest.md"), "w", encoding="utf-8") as f:
        f.write("\n\n".join(["\n".join(header), *(t.markdown() for t in tables)]) + "\n")


def make_tables(
    makers: Sequence[tuple[str, Callable[[dict[str, Any]], Table]]], results: dict[str, Any]
) -> list[Table]:
    """The tables whose case keys' prefix has results, left out when they have no row."""
    tables = [
        make(results) for prefix, make in makers if any(k.startswith(prefix) for k in results)
    ]
    return [t for t in tables if t.rows]


def main() -> None:
    """Parse the command line, run the cases, print and write the reports."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per case (median reported)")
    parser.add_argument(
        "--peer-repeat", type=int, default=2, help="runs per case of the comparison with the peers"
    )
    parser.add_argument("--only", default="", help="comma-separated case key prefixes")
    parser.add_argument("--budget", type=float, default=630.0, help="seconds for the whole run")
    args = parser.parse_args()
    cases = select([p for p in args.only.split(",") if p])
    t0 = time.perf_counter()
    skipped = skipped_peers(cases)
    for kind, reason in skipped.items():
        print(f"peer {kind} skipped: {reason}")
    repeat, peer_repeat = max(1, args.repeat), max(1, min(args.repeat, args.peer_repeat))
    results = run_all(cases, repeat, peer_repeat, args.budget, skipped)
    done = max((len(e["runs"]) for e in results.values()), default=0)
    peers_done = max((len(results[c.key]["runs"]) for c in cases if c.runs == "peers"), default=0)
    info = meta(done, peers_done, time.perf_counter() - t0)
    own = make_tables((*TABLES, ("redact/", redact_table)), results)
    peers = make_tables(PEER_TABLES, results)
    tables = [*own, *peers]
    print()
    print("\n\n".join(t.text() for t in tables))
    for key, entry in results.items():
        errors = [
            f"{r['error']}\n{r.get('stderr', '')}".strip() for r in entry["runs"] if "error" in r
        ]
        for text in dict.fromkeys(errors):  # each distinct failure once
            print(f"\n{key} failed in {errors.count(text)} of {len(entry['runs'])} runs: {text}")
    write_results(info, results, [*peers, *own])  # the comparison first, for the README
    print(f"\nwritten: {os.path.relpath(RESULTS_DIR)}/latest.json, latest.md ({info['wall_s']} s)")


if __name__ == "__main__":
    main()
