"""The report: tables built from descriptions, as Markdown that reads as text too.

A table is described once (:class:`TableSpec`): its rows (each a case, set against its
NullHandler case), its columns (a header and what it reads from a row), its targets and
notes. :func:`build` makes it from a run's results: for each case key, ``{"median": ...,
"runs": [...]}``, plus ``"skipped": reason`` for one that could not run. Targets are
printed next to the figures, never asserted.
"""

from __future__ import annotations

import fnmatch
import operator
import re
import statistics
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

Results = dict[str, Any]


@dataclass
class Table:
    """A titled table with notes underneath."""

    title: str
    headers: Sequence[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([cell(c) for c in cells])

    def markdown(self) -> str:
        """A GitHub-flavoured Markdown table under a heading, the notes as a list: its columns
        aligned (the first to the left, the others to the right), to read as text too."""
        table = [list(self.headers), *self.rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(self.headers))]

        def line(cells: Sequence[str]) -> str:
            rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
            return "| " + " | ".join([cells[0].ljust(widths[0]), *rest]) + " |"

        rule = "|".join(["", "-" * (widths[0] + 2), *("-" * (w + 1) + ":" for w in widths[1:]), ""])
        out = [f"## {self.title}", "", line(self.headers), rule, *map(line, self.rows)]
        return "\n".join(out + ([""] if self.notes else []) + [f"- {n}" for n in self.notes])


def cell(value: object) -> str:
    """Format a number for a table: 3 significant figures, thousands separated; None as "-"."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) < 0.05:
            return "0"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing or ``b`` is zero."""
    return None if a is None or not b else a / b


def figure(data: Any, path: str) -> float | None:
    """The number at a dotted ``path`` (``"all.p99.9"``; an integer part indexes a list:
    ``"points.-1.events_per_s"``) in a result, or None when it is missing."""
    while path:
        head, _, rest = path.partition(".")
        if isinstance(data, list) and head.lstrip("-").isdigit():
            data, path = data[int(head)] if -len(data) <= int(head) < len(data) else None, rest
        elif not isinstance(data, dict):
            return None
        elif path in data:  # a key with a dot in it: "p99.9"
            data, path = data[path], ""
        else:
            data, path = data.get(head), rest
    return data if isinstance(data, (int, float)) and not isinstance(data, bool) else None


def median_of(runs: Sequence[Any]) -> Any:
    """The per-field median of repeated results of one case: numbers (None left out), and
    dicts and lists of the same shape field by field; anything else from the first run."""
    numbers = [r for r in runs if r is not None]
    if numbers and len(numbers) < len(runs) and _numeric(numbers):
        return median_of(numbers)
    first = runs[0]
    if isinstance(first, bool) or first is None:
        return first
    if _numeric(runs):
        m = statistics.median(runs)
        return int(m) if all(isinstance(r, int) for r in runs) and m == int(m) else m
    if isinstance(first, dict) and all(isinstance(r, dict) for r in runs):
        return {k: median_of([r.get(k) for r in runs]) for k in first}
    if isinstance(first, list) and all(isinstance(r, list) and len(r) == len(first) for r in runs):
        return [median_of(list(items)) for items in zip(*runs, strict=True)]
    return first


def _numeric(values: Sequence[Any]) -> bool:
    """Whether every value is a number (bools are not)."""
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def good_runs(results: Results, key: str) -> list[dict[str, Any]]:
    """The runs of case ``key`` that produced a result (none when it did not run or skipped)."""
    runs = (results.get(key) or {}).get("runs", [])
    return [r for r in runs if "error" not in r and "skipped" not in r]


def median(results: Results, key: str) -> dict[str, Any] | None:
    """The median result of case ``key``, or None."""
    entry = results.get(key)
    return entry.get("median") if entry else None


def floor_key(key: str, keys: Collection[str]) -> str:
    """The NullHandler case that case ``key`` is set against: ``name/null+suffix`` for
    ``name/KIND+suffix`` (or ``-suffix``) when ``keys`` has it, else ``name/null``."""
    name, _, rest = key.partition("/")
    suffix = re.search(r"[+-].*", rest)
    own = f"{name}/null{suffix.group() if suffix else ''}"
    return own if own in keys else f"{name}/null"


@dataclass(frozen=True)
class Row:
    """What a column reads: a row's figures, its floor's, its good runs, and every result."""

    key: str
    r: dict[str, Any]
    floor: dict[str, Any]
    runs: list[dict[str, Any]]
    results: Results
    part: str = "all"  # the part of a latency result the row shows: "all" or "exceptions"
    is_floor: bool = False  # the NullHandler's own row


@dataclass(frozen=True)
class Col:
    """A column: its header and what it reads from a row."""

    header: str
    get: Callable[[Row], object]


def _reader(mark: str, path: str, per: str = "") -> Callable[[Row], object]:
    """What :func:`cols` reads for ``path`` after its ``mark``."""

    def get(row: Row) -> object:
        if not path.startswith(".") and row.part != "all":
            return None  # a figure of the whole run, not of a part
        at = row.part + path if path.startswith(".") else path  # ".p50": "all.p50"
        mine, floor = figure(row.r, at), figure(median(row.results, per) if per else row.floor, at)
        if mark == "/":
            return ratio(mine, floor)
        if row.is_floor and mark in ("-", "!", "^"):
            return None
        if mark == "^":
            return max((x for r in row.runs if (x := figure(r, at)) is not None), default=None)
        if mark == "%":
            return None if mine is None else 100 * mine
        return mine if mark != "-" else None if mine is None or floor is None else mine - floor

    return get


def cols(*specs: str | Col) -> tuple[Col, ...]:
    """Columns: each a :class:`Col`, or ``"header: path | header: path ..."``, the row's figure
    at ``path`` (``.path``: in the row's part; any other, none on a row of a part):
    ``/path`` over the floor's (``/path@KEY``: over case KEY's), ``-path`` less it (not on
    the floor's row), ``!path`` as it is but not on the floor's row, ``^path`` the most of
    one run (not on the floor's row), ``%path`` in %."""
    out: list[Col] = []
    for spec in specs:
        if isinstance(spec, Col):
            out.append(spec)
            continue
        for item in spec.split("|"):
            header, path = (x.strip() for x in item.rsplit(":", 1))
            mark = path[0] if path[0] in "/-!^%" else ""
            path, _, per = path.lstrip(mark).partition("@")
            out.append(Col(header, _reader(mark, path, per)))
    return tuple(out)


@dataclass(frozen=True)
class Line:
    """A row of a table: its label and its case (set against :func:`floor_key`'s)."""

    label: str
    key: str
    part: str = "all"


@dataclass(frozen=True)
class Target:
    """A target printed under its table: what it says, and its figure and verdict from results."""

    text: str
    check: Callable[[Results], tuple[str, bool | None]]


#: How a target shows its figure, by the unit its line names.
UNITS = {"": "{:.2f}x", "/s": "{:,.0f}/s", "µs": "{:.1f} µs", "%": "{:.2%}"}
TESTS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq}


def target(text: str, rule: str, unit: str = "") -> Target:
    """Target ``rule``: ``"KEY PATH [/ OTHER | - OTHER] <= LIMIT"`` (or ``>=``, ``==``): case
    KEY's figure at PATH, over (or less) case OTHER's (``floor``: KEY's own floor; a KIND:
    case ``scenario/KIND`` of KEY's scenario), shown in ``unit`` (of :data:`UNITS`); the
    text names KEY. With ``unit`` "runs", checked in each run of every case KEY matches
    (``fleet/*``): :func:`in_runs`."""
    key, path, *other, test, limit = rule.split()
    if unit == "runs":

        def ok(row: Row) -> bool:
            x = figure(row.r, path)
            return x is not None and TESTS[test](x, float(limit))

        return in_runs(text, key, ok)

    def check(results: Results) -> tuple[str, bool | None]:
        x = figure(median(results, key), path)
        if other:
            op, of = other
            of = floor_key(key, results) if of == "floor" else f"{key.split('/')[0]}/{of}"
            y = figure(median(results, of), path)
            x = ratio(x, y) if op == "/" else None if x is None or y is None else x - y
        if x is None:
            return "-", None
        return UNITS[unit].format(x), TESTS[test](x, float(limit))

    return Target(f"{text}, {key}", check)


def targets(text: str, *more: Target) -> tuple[Target, ...]:
    """A target for each line ``text | rule | unit`` of ``text`` (:func:`target`'s), then
    ``more``; a rule ``KEY PATH / floor <= LIMIT`` without a text reads "NAME ≤ LIMIT x
    NullHandler's", NAME the last part of PATH."""
    out = []
    for line in text.strip().splitlines():
        said, rule, unit = ([x.strip() for x in line.split("|")] + ["", ""])[:3]
        if not said:
            _key, path, *_, limit = rule.split()
            said = f"{path.split('.', 1)[-1]} ≤ {limit} x NullHandler's"
        out.append(target(said, rule, unit))
    return (*out, *more)


def in_runs(
    text: str,
    keys: str,
    ok: Callable[[Row], bool],
    detail: Callable[[list[Row]], str] | None = None,
    figures: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
) -> Target:
    """Target: ``ok`` of a row made of each run of the cases ``keys`` ("KEY KEY ...", each a
    pattern: ``fleet/*``), set against its floor's median; in how many runs it held, and
    ``detail`` of those rows. ``figures``: a run's figures (by default, the run unless it
    failed)."""

    def check(results: Results) -> tuple[str, bool | None]:
        rows = []
        for key in [k for pattern in keys.split() for k in fnmatch.filter(results, pattern)]:
            floor = median(results, floor_key(key, results)) or {}
            for run in (results.get(key) or {}).get("runs", []):
                r = figures(run) if figures else None if "error" in run else run
                if r and "skipped" not in r:
                    rows.append(Row(key, r, floor, [run], results))
        held = sum(map(ok, rows))
        shown = f"in {held} of {len(rows)} run(s)"
        if not rows:
            return shown, None
        return shown + (f" ({detail(rows)})" if detail else ""), held == len(rows)

    return Target(text, check)


@dataclass(frozen=True)
class TableSpec:
    """One table: title, rows, columns, targets and notes."""

    title: str
    lines: tuple[Line, ...]
    columns: tuple[Col, ...]
    targets: tuple[Target, ...] = ()
    notes: str = ""
    #: A case's figures from its entry in the results: by default the median of its runs.
    figures: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda entry: entry.get("median")
    first: str = "handler"
    medians: bool = False  # a note says how many runs each figure is the median of


def build(spec: TableSpec, results: Results) -> Table:
    """The table ``spec`` describes, a row for each of its cases that ran: a ``skipped`` or
    ``failed`` one (no result) with its reason in a note."""
    t = Table(spec.title, [spec.first, *(c.header for c in spec.columns)])
    for line in spec.lines:
        entry = results.get(line.key)
        if entry is None:
            continue
        r = None if "skipped" in entry else spec.figures(entry)
        if r is None:
            failed = "skipped" if "skipped" in entry else "failed"
            errors = {x["error"].splitlines()[0] for x in entry["runs"] if "error" in x}
            why = entry.get("skipped") or "; ".join(sorted(errors)) or "no run"
            t.rows.append([line.label, *[failed] * len(spec.columns)])
            t.notes.append(f"{line.label}: {failed}: {why}")
            continue
        floor = floor_key(line.key, results)
        floor_figures = spec.figures(results[floor]) if floor in results else None
        runs = good_runs(results, line.key)
        row = Row(line.key, r, floor_figures or {}, runs, results, line.part, line.key == floor)
        t.add(line.label, *(c.get(row) for c in spec.columns))
    for target in spec.targets:
        shown, ok = target.check(results)
        verdict = "n/a" if ok is None else "MET" if ok else "MISSED"
        t.notes.append(f"target {target.text}: {shown}  {verdict}")
    t.notes += [spec.notes] if spec.notes else []
    if spec.medians:
        counts = sorted({len(results[x.key]["runs"]) for x in spec.lines if x.key in results})
        counts = [n for n in counts if n] or [0]
        shown = str(counts[0]) if counts[0] == counts[-1] else f"{counts[0]} to {counts[-1]}"
        t.notes.append(f"median of {shown} run(s) per handler.")
    return t


def spread_table(spreads: Sequence[str], results: Results) -> Table:
    """Each figure's minimum, median and maximum over the repeats: ``"label: key path"``,
    ``/path`` a ratio to the case's floor, taken within each repeat."""
    t = Table(
        "Spread over the repeats (noise)", ["figure", "runs", "min", "median", "max", "max/min"]
    )
    for spec in spreads:
        label, rest = spec.rsplit(":", 1)
        key, path = rest.split()
        values = [figure(r, path.lstrip("/")) for r in (results.get(key) or {}).get("runs", [])]
        if path.startswith("/"):  # case and floor ran back to back in each repeat
            floors = (results.get(floor_key(key, results)) or {}).get("runs", [])
            values = [ratio(v, figure(f, path[1:])) for v, f in zip(values, floors, strict=False)]
        got = [v for v in values if v is not None]
        if got:
            t.add(label, len(got), min(got), median_of(got), max(got), ratio(max(got), min(got)))
    return t
