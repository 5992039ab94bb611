"""Tables for the terminal and for Markdown, and the median of repeated runs."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    """A titled table with notes underneath, printable as text or Markdown."""

    title: str
    headers: Sequence[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        """Append a row; each cell is formatted with :func:`cell`."""
        self.rows.append([cell(c) for c in cells])

    def add_failed(self, label: str) -> None:
        """Append a row for a case that produced no result."""
        self.rows.append([label, *["failed"] * (len(self.headers) - 1)])

    def text(self) -> str:
        """Aligned columns: the first left-aligned, the others right-aligned."""
        widths = [
            max(len(r[i]) for r in [list(self.headers), *self.rows])
            for i in range(len(self.headers))
        ]

        def line(cells: Sequence[str]) -> str:
            first = cells[0].ljust(widths[0])
            return "  ".join(
                [first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))]
            )

        out = [self.title, "=" * len(self.title), line(self.headers)]
        out.append("  ".join("-" * w for w in widths))
        out += [line(r) for r in self.rows]
        out += self.notes
        return "\n".join(out)

    def markdown(self) -> str:
        """A GitHub-flavoured Markdown table under a heading."""
        out = [f"## {self.title}", "", "| " + " | ".join(self.headers) + " |"]
        out.append("|" + "|".join(["---"] + ["---:"] * (len(self.headers) - 1)) + "|")
        out += ["| " + " | ".join(r) + " |" for r in self.rows]
        if self.notes:
            out += ["", *(f"- {n.strip()}" for n in self.notes)]
        return "\n".join(out)


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
    if a is None or not b:
        return None
    return a / b


def verdict(ok: bool | None) -> str:
    """How a target reads next to its figure."""
    return "n/a" if ok is None else ("MET" if ok else "MISSED")


def median_of(runs: Sequence[Any]) -> Any:
    """The per-field median of repeated results of one case.

    Numbers become their median (runs without the figure, None, left out);
    dicts and lists of the same shape are combined field by field; anything
    else is taken from the first run.
    """
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
