"""Run every benchmark case in a fresh process and report them against a NullHandler floor.

The machine is shared and noisy, so no figure here is to be compared across
runs: each is set against the same measurement with a ``logging.NullHandler``
in the same run, the cases are interleaved, and each is repeated with the
per-figure median reported. The cases and their tables are described in
``scenarios.py``; the options, and how to read the tables, in
``docs/performance.md``. Prints the tables, and writes ``latest.json``,
``latest.md`` and the chart ``latest.svg`` to ``--results``.

    .venv/bin/python benchmarks/run.py [--repeat 5] [--peer-repeat 2] [--only latency,service]
    .venv/bin/python benchmarks/run.py --from benchmarks/results/latest.json  # tables and chart
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from typing import Any

import chart
from _common import HERE, receiver, receiver_stats, run_case
from _report import Results, floor_key, median_of
from scenarios import CASES, Case, report


def select(prefixes: list[str]) -> list[Case]:
    """The cases whose key starts with one of ``prefixes`` (all if none), their floors, and
    the cases whose spill folder they replay."""
    keys = {c.key for c in CASES}
    chosen = {c.key for c in CASES if not prefixes or c.key.startswith(tuple(prefixes))}
    chosen |= {c.replays for c in CASES if c.key in chosen and c.replays}
    chosen |= {floor_key(key, keys) for key in chosen} & keys
    return [c for c in CASES if c.key in chosen]


def with_durations(case: Case, seconds: dict[str, tuple[float, float]]) -> Case:
    """A service or sustained case with its timed and probed ``seconds``, and a timeout for them."""
    timed, probed = seconds.get(case.key.split("/")[0], (0.0, 0.0))
    if not timed:
        return case
    args = f"{case.args} --seconds {timed:g} --probe {probed:g}"
    # Twice the schedule: a handler the load overwhelms finishes its requests late.
    return dataclasses.replace(case, args=args, timeout=case.timeout + 2 * (timed + probed))


def run_all(cases: list[Case], repeat: int, peer_repeat: int, budget: float) -> Results:
    """Run ``cases``, interleaved, each its number of times; return each one's runs and median.

    A repeat after the first that would end past ``budget`` seconds (judged
    by how long its cases took the last time) is given up, first for the
    comparison's cases, then whole. A case that reports itself skipped (a peer
    not installed, the fleet without Fluent Bit) carries the reason and does
    not run again.
    """
    runs: dict[str, list[dict[str, Any]]] = {c.key: [] for c in cases}
    took: dict[str, float] = {}  # seconds each case took the last time
    replayed = {c.replays for c in cases if c.replays}
    todo = list(cases)
    runs_of = {c.key: {"": repeat, "peers": peer_repeat, "once": 1}[c.runs] for c in cases}
    started, n = time.perf_counter(), 0
    for r in range(repeat):
        todo = [c for c in todo if r < runs_of[c.key] and not skipped(runs[c.key])]
        left = budget - (time.perf_counter() - started)
        if r and sum(took[c.key] for c in todo) > left and any(c.runs for c in todo):
            todo = [c for c in todo if not c.runs]
            print(f"(time budget of {budget:.0f} s: the comparison's runs {r + 1}+ skipped)")
        if not todo:
            break
        if r and sum(took[c.key] for c in todo) > left:
            print(f"(time budget of {budget:.0f} s spent: {repeat - r} repeat(s) skipped)")
            break
        planned = n + sum(runs_of[c.key] - r for c in todo)  # the runs done and still to do
        folders: dict[str, str] = {}  # spill folders kept for the case that replays them
        try:
            for case in todo:
                n += 1
                print(f"[{n:>3}/{planned}] {case.key:<28}", end=" ", flush=True)
                folder = folders.pop(case.replays, None)
                if case.folder or case.key in replayed:
                    folder = tempfile.mkdtemp(prefix="logship-bench-")
                t0 = time.perf_counter()
                result = run_one(case, folder)
                took[case.key] = time.perf_counter() - t0
                runs[case.key].append(result)
                if case.key in replayed and folder:
                    folders[case.key] = folder
                elif folder:
                    shutil.rmtree(folder, ignore_errors=True)
                error = result.get("error", "").split("\n")[0]
                said = f"skipped: {result['skipped']}" if "skipped" in result else "ok"
                print(f"{took[case.key]:5.1f} s  {f'ERROR: {error}' if error else said}")
        finally:
            for folder in folders.values():
                shutil.rmtree(folder, ignore_errors=True)
    out: Results = {}
    for case in cases:
        results = runs[case.key]
        good = [x for x in results if "error" not in x and "skipped" not in x]
        out[case.key] = {"median": median_of(good) if good else None, "runs": results}
        if reason := skipped(results):
            out[case.key]["skipped"] = reason
    return out


def skipped(runs: list[dict[str, Any]]) -> str:
    """Why a case's runs were skipped, or ""."""
    return next((x["skipped"] for x in runs if "skipped" in x), "")


def run_one(case: Case, spill_dir: str | None = None) -> dict[str, Any]:
    """Run one case once, with a fresh receiver when it needs one, whose counts once the
    process has ended are kept as ``receiver_after``."""
    args = case.args.split() + (["--spill-dir", spill_dir] if spill_dir else [])
    if not case.live:
        return run_case(case.script, args, case.timeout)
    try:
        with receiver() as url:
            result = run_case(case.script, [*args, "--url", url], case.timeout)
            try:
                result["receiver_after"] = receiver_stats(url)
            except OSError as e:
                result.setdefault("error", f"the receiver did not answer: {e}")
            return result
    except RuntimeError as e:  # the receiver did not start
        return {"error": str(e)}


def meta(results: Results, wall: float) -> dict[str, Any]:
    """Where and how this run was made, to read its figures with."""
    done: dict[str, int] = {}  # the most runs a case of each kind got
    for c in CASES:
        if c.key in results:
            done[c.runs] = max(done.get(c.runs, 0), len(results[c.key]["runs"]))
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "repeat": done.get("", 0),
        "peer_repeat": done.get("peers", 0),
        "wall_s": round(wall, 1),
    }


def write_markdown(path: str, info: dict[str, Any], tables: str) -> None:
    """``latest.md``: how the run was made, then the tables."""
    header = (
        f"# logship benchmarks: latest run\n\n{info['date']}, Python {info['python']}, "
        f"{info['cpus']} CPUs, {info['platform']}; load average at the end {info['loadavg']}; "
        f"median of {info['repeat']} interleaved run(s) per case ({info['peer_repeat']} for the "
        "peers, 1 for the service and the sustained load). Ratios are against a NullHandler "
        f"measured in the same run. {info['wall_s']:.0f} s in all. What each table measures and "
        "how to read it: [docs/performance.md](../../docs/performance.md); the chart: "
        "[latest.svg](latest.svg).\n\n"
    )
    with open(path, "w", encoding="utf-8") as f:
        f.write(header + tables + "\n")


def main() -> None:
    """Parse the command line, run the cases (or read a past run), print and write the reports."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs per case (median reported)")
    parser.add_argument("--peer-repeat", type=int, default=2, help="runs per case of a peer")
    parser.add_argument("--only", default="", help="comma-separated case key prefixes")
    parser.add_argument("--budget", type=float, default=780.0, help="seconds for the whole run")
    parser.add_argument("--service-seconds", type=float, default=10.0, help="timed, per handler")
    parser.add_argument("--probe-seconds", type=float, default=5.0, help="probed, per handler")
    parser.add_argument("--sustained-seconds", type=float, default=30.0, help="per handler")
    parser.add_argument("--results", default=os.path.join(HERE, "results"), help="where to write")
    parser.add_argument("--from", dest="past", help="report this latest.json instead of running")
    args = parser.parse_args()
    t0 = time.perf_counter()
    if args.past:
        with open(args.past, encoding="utf-8") as f:
            past = json.load(f)
        info, results = past["meta"], past["cases"]
    else:
        cases = select([p for p in args.only.split(",") if p])
        seconds = {"service": (args.service_seconds, args.probe_seconds)}
        seconds["sustained"] = (args.sustained_seconds, 0.0)
        cases = [with_durations(c, seconds) for c in cases]
        repeat, peer_repeat = max(1, args.repeat), max(1, min(args.repeat, args.peer_repeat))
        results = run_all(cases, repeat, peer_repeat, args.budget)
        info = meta(results, time.perf_counter() - t0)
    tables = "\n\n".join(t.markdown() for t in report(results))
    print(f"\n\n{tables}")
    for key, entry in results.items():
        errors = [
            f"{r['error']}\n{r.get('stderr', '')}".strip() for r in entry["runs"] if "error" in r
        ]
        for text in dict.fromkeys(errors):  # each distinct failure once
            print(f"\n{key} failed in {errors.count(text)} of {len(entry['runs'])} runs: {text}")
    os.makedirs(args.results, exist_ok=True)
    if not args.past:
        with open(os.path.join(args.results, "latest.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps({"meta": info, "cases": results}, indent=2) + "\n")
    write_markdown(os.path.join(args.results, "latest.md"), info, tables)
    skipped_chart = chart.write(results, info, os.path.join(args.results, "latest.svg"))
    written = ["latest.md"] + ([] if skipped_chart else ["latest.svg"])
    written = written if args.past else ["latest.json", *written]
    print(f"\nwritten to {os.path.relpath(args.results)}: {', '.join(written)}")
    if skipped_chart:
        print(f"chart skipped: {skipped_chart}")


if __name__ == "__main__":
    main()
