"""Run every benchmark case in its own subprocess and report them against a NullHandler floor.

The machine is shared and noisy, so nothing here is an absolute figure to
compare across runs: every case is set against the same measurement with a
``logging.NullHandler`` taken in the same run, the cases are interleaved,
and each is repeated (``--repeat``) with the per-figure median reported.

Prints the tables of ``_tables`` (latency, end-to-end throughput, memory
with the endpoint down, spill and replay, latency while spilling, and the
spread over the repeats) with the targets next to the figures, and writes
``benchmarks/results/latest.json`` and ``benchmarks/results/latest.md``.

A case may replay the spill folder that another leaves: in every repeat the
other runs first, with a fresh ``--spill-dir``, and the replaying case gets
that folder in a process of its own right after (``--only`` adds it).

    .venv/bin/python benchmarks/run.py [--repeat 5] [--only latency,memory]
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
from dataclasses import dataclass
from typing import Any

from _harness import HERE, receiver, run_case
from _report import Table, median_of
from _tables import TABLES
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


CASES = (
    Case("latency/null", "latency.py", ("--handler", "null")),
    Case("latency/ship", "latency.py", ("--handler", "ship"), live=True),
    Case("latency/down", "latency.py", ("--handler", "down")),
    Case("latency/null+exc", "latency.py", ("--handler", "null", "--exception-every", "100")),
    Case(
        "latency/ship+exc",
        "latency.py",
        ("--handler", "ship", "--exception-every", "100"),
        live=True,
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
)


def select(prefixes: list[str]) -> list[Case]:
    """The cases whose key starts with one of ``prefixes`` (all if none), and those they replay."""
    chosen = {c.key for c in CASES if not prefixes or c.key.startswith(tuple(prefixes))}
    chosen |= {c.replays for c in CASES if c.key in chosen and c.replays}
    return [c for c in CASES if c.key in chosen]


def run_all(cases: list[Case], repeat: int, budget: float) -> dict[str, Any]:
    """Run ``cases`` ``repeat`` times, interleaved; return each case's runs and their median.

    Repeats after the first are skipped once ``budget`` seconds have passed.
    """
    runs: dict[str, list[dict[str, Any]]] = {c.key: [] for c in cases}
    replayed = {c.replays for c in cases if c.replays}
    started = time.perf_counter()
    total = len(cases) * repeat
    for r in range(repeat):
        if r and time.perf_counter() - started > budget:
            print(f"(time budget of {budget:.0f} s spent: {repeat - r} repeat(s) skipped)")
            break
        folders: dict[str, str] = {}  # spill folders left for the case that replays them
        try:
            for i, case in enumerate(cases):
                n = r * len(cases) + i + 1
                print(f"[{n:>2}/{total}] {case.key:<22}", end=" ", flush=True)
                if case.key in replayed:
                    folders[case.key] = tempfile.mkdtemp(prefix="logship-bench-spill-")
                folder = folders.get(case.key) or folders.get(case.replays)
                t0 = time.perf_counter()
                result = run_one(case, folder)
                status = (
                    "ok" if "error" not in result else "ERROR: " + result["error"].splitlines()[0]
                )
                print(f"{time.perf_counter() - t0:5.1f} s  {status}", flush=True)
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
    return out


def run_one(case: Case, spill_dir: str | None = None) -> dict[str, Any]:
    """Run one case once, with a fresh receiver of its own when it needs one.

    ``spill_dir``, when given, is passed on as ``--spill-dir``.
    """
    args = [*case.args, "--spill-dir", spill_dir] if spill_dir else list(case.args)
    if not case.live:
        return run_case(case.script, args, case.timeout)
    try:
        with receiver() as url:
            return run_case(case.script, [*args, "--url", url], case.timeout)
    except RuntimeError as e:  # the receiver did not start
        return {"error": str(e)}


def meta(repeat: int, wall: float) -> dict[str, Any]:
    """Where and how this run was made, to read its figures with."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "repeat": repeat,
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
        "run(s) per case. Ratios are against a NullHandler measured in the same run.",
    ]
    with open(os.path.join(RESULTS_DIR, "latest.md"), "w", encoding="utf-8") as f:
        f.write("\n\n".join(["\n".join(header), *(t.markdown() for t in tables)]) + "\n")


def main() -> None:
    """Parse the command line, run the cases, print and write the reports."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per case (median reported)")
    parser.add_argument("--only", default="", help="comma-separated case key prefixes")
    parser.add_argument("--budget", type=float, default=110.0, help="seconds before repeats stop")
    args = parser.parse_args()
    cases = select([p for p in args.only.split(",") if p])
    t0 = time.perf_counter()
    results = run_all(cases, max(1, args.repeat), args.budget)
    done = max((len(e["runs"]) for e in results.values()), default=0)
    info = meta(done, time.perf_counter() - t0)
    tables = [
        make(results)
        for prefix, make in (*TABLES, ("redact/", redact_table))
        if any(k.startswith(prefix) for k in results)
    ]
    print()
    print("\n\n".join(t.text() for t in tables))
    for key, entry in results.items():
        errors = [
            f"{r['error']}\n{r.get('stderr', '')}".strip() for r in entry["runs"] if "error" in r
        ]
        for text in dict.fromkeys(errors):  # each distinct failure once
            print(f"\n{key} failed in {errors.count(text)} of {len(entry['runs'])} runs: {text}")
    write_results(info, results, tables)
    print(f"\nwritten: {os.path.relpath(RESULTS_DIR)}/latest.json, latest.md ({info['wall_s']} s)")


if __name__ == "__main__":
    main()
