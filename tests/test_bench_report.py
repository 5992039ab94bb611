"""The benchmark's report: every scenario's cases and tables, read from a run's results.

No case runs here: the results are made up, in the shape the case scripts print.
"""

from __future__ import annotations

import os
import sys

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCHMARKS)

import run  # noqa: E402
import scenarios  # noqa: E402
from _report import figure, floor_key  # noqa: E402


def test_a_figure_is_found_by_its_path_even_with_a_dot_in_its_name():
    result = {"all": {"p99.9": 27.5, "p50": 4}, "ok": True}
    assert figure(result, "all.p99.9") == 27.5
    assert figure(result, "all.p50") == 4
    assert figure(result, "all.p95") is None
    assert figure(result, "ok") is None  # a bool is no figure


def test_every_case_has_a_floor_and_a_script():
    keys = {c.key for c in scenarios.CASES}
    assert len(keys) == len(scenarios.CASES), "a case key is used twice"
    for case in scenarios.CASES:
        # A replay has no floor: nothing but logship replays a spill folder; nor
        # has the fleet, which only logship ships to.
        floorless = case.replays or case.key.startswith("fleet/")
        assert floor_key(case.key, keys) in keys or floorless, case.key
        assert os.path.exists(os.path.join(BENCHMARKS, case.script)), case.script
        assert case.args.startswith("--handler "), case.key
    assert floor_key("latency/ship+exc", keys) == "latency/null+exc"
    assert floor_key("latency/ship+redact", keys) == "latency/null"
    assert floor_key("spill/down-paced", keys) == "spill/null-paced"


def test_only_brings_in_the_floors_and_what_is_replayed():
    chosen = {c.key for c in run.select(["latency/ship+exc", "replay/ship"])}
    replay = {"replay/ship", "spill/down-paced", "spill/null-paced"}
    assert chosen == {"latency/ship+exc", "latency/null+exc", *replay}


def test_the_tables_show_each_scenario_against_its_floor():
    def latency(p50: float) -> dict[str, object]:
        summary = {"n": 10, "p50": p50, "p99": 2 * p50, "p99.9": 3 * p50, "max": 4 * p50}
        return {"all": {**summary, "mean": p50}, "calls_per_s": 1e5, "stats": None}

    service = {"request": {"n": 10, "p50": 200.0, "p99": 300.0, "p99.9": 400.0, "max": 500.0}}
    results = {
        "latency/null": {"median": latency(4.0), "runs": [latency(4.0)]},
        "latency/ship": {"median": latency(5.0), "runs": [latency(5.0)]},
        "latency/otel": {"median": None, "runs": [], "skipped": "not installed"},
        "service/null": {"median": {**service, "cpu_us_per_event": 50.0}, "runs": [service]},
        "service/ship": {"median": {**service, "cpu_us_per_event": 56.0}, "runs": [service]},
    }
    tables = {t.title.split(" ", 1)[0]: t for t in scenarios.report(results)}
    assert set(tables) == {"At", "1.", "3.", "11.", "Spread"}
    rows = {r[0]: r for r in tables["1."].rows}
    assert rows["logship ShipHandler"][6] == "1.25"  # p50 x null
    assert rows["OpenTelemetry SDK (OTLP/HTTP)"][1] == "skipped"
    assert "target p50 ≤ 1.25 x NullHandler's, latency/ship: 1.25x  MET" in tables["1."].notes
    assert "target p99.9 ≤ 20 x NullHandler's, latency/ship: 1.25x  MET" in tables["1."].notes
    assert any("6.0 µs  MET" in n for n in tables["3."].notes)
    glance = {r[0]: r for r in tables["At"].rows}
    assert glance["logship ShipHandler"][1] == "1.25"


def test_a_case_that_finds_what_it_needs_missing_is_reported_skipped(monkeypatch):
    (case,) = [c for c in scenarios.CASES if c.key == "fleet/haproxy"]
    monkeypatch.setattr(run, "run_one", lambda case, spill_dir=None: {"skipped": "no HAProxy"})
    results = run.run_all([case], 1, 1, 60.0)
    assert results["fleet/haproxy"] == {
        "median": None,
        "runs": [{"skipped": "no HAProxy"}],
        "skipped": "no HAProxy",
    }


def test_the_fleet_table_shows_each_route_and_the_losses_at_a_kill():
    fleet = {
        "events_per_s": 20_000.0,
        "elapsed_s": 2.5,
        "lost": 0,
        "duplicates": 12,
        "held_at_kill": 35,
        "recovered_after_s": 0.5,
        "stats": {"retries": 1, "spilled": 0},
    }
    results = {
        "fleet/haproxy": {"median": fleet, "runs": [fleet]},
        "fleet/single": {"median": None, "runs": [{"skipped": "no Fluent Bit"}], "skipped": "x"},
    }
    (table,) = [t for t in scenarios.report(results) if t.title.startswith("12.")]
    rows = {r[0]: r for r in table.rows}
    assert rows["logship → HAProxy → 3 nodes"][1:5] == ["20,000", "2.5", "0", "12"]
    assert rows["logship → one Fluent Bit node"][1] == "skipped"
    assert "target nothing lost at a kill, every route: in 1 of 1 run(s)  MET" in table.notes
