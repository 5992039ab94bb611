"""The chart of the comparison with the peers: one panel per headline figure, one bar per handler.

``run.py`` writes it, also from a past run (``--from``), as SVG or PNG by the
file's name, with matplotlib; without it, :func:`write` says why and writes
nothing.
"""

from __future__ import annotations

from typing import Any

from _report import Results, cell, figure, median, ratio
from install import not_installed, read_failures
from scenarios import CONTENDERS

#: The panels: what, case name, its table, figure, and whether over the NullHandler's.
PANELS = (
    ("per-call p50", "latency", 1, "all.p50", True),
    ("per-call p99.9", "latency", 1, "all.p99.9", True),
    ("a service's request p99.9", "service", 3, "request.p99.9", True),
    ("events/s delivered end to end", "throughput", 2, "events_per_s", False),
    ("CPU per event end to end", "throughput", 2, "cpu_us_per_event", True),
)
LOGSHIP, OTHERS, FLOOR = "#1f6feb", "#8c959f", "#d0d7de"


def write(results: Results, info: dict[str, Any], path: str) -> str | None:
    """Draw the chart to ``path``; None when it was written, else why it was not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError as e:
        return not_installed(["matplotlib"], read_failures()) or f"matplotlib: {e}"
    plt.rcParams.update({"svg.fonttype": "none", "font.size": 8})
    labels = [label for label, _kind in CONTENDERS]
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(7.5, 1.55 * len(PANELS) + 0.6))
    for ax, (what, name, table, figure_at, over_null) in zip(axes, PANELS, strict=True):
        ys = [figure(median(results, f"{name}/{kind}"), figure_at) for _label, kind in CONTENDERS]
        if over_null:  # CONTENDERS starts with the floor
            ys = [ratio(y, ys[0]) for y in ys]
        how = ", x NullHandler" if over_null else ""
        better = "lower" if over_null else "higher"
        ax.set_title(f"{what}{how} (table {table}; {better} is better)", loc="left", fontsize=9)
        ax.invert_yaxis()
        ax.set_yticks(range(len(labels)), labels)
        ax.spines[["top", "right"]].set_visible(False)
        shown = [y for y in ys if y]
        if not shown:
            ax.text(0.5, 0.5, "not measured in this run", transform=ax.transAxes, ha="center")
            ax.set_xticks([])
            continue
        colours = [FLOOR, LOGSHIP, *[OTHERS] * (len(ys) - 2)]
        ax.barh(range(len(ys)), [y or 0 for y in ys], color=colours, height=0.7)
        if max(shown) / min(shown) > 20:  # p99.9 and events/s span orders of magnitude
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,g}"))
        for i, y in enumerate(ys):
            text = "-" if not y else f"{cell(y)}x" if over_null else cell(y)
            ax.text(y or min(shown), i, f" {text}", va="center", fontsize=7)
        ax.set_xlim(right=max(shown) * (3 if ax.get_xscale() == "log" else 1.2))
    fig.suptitle(
        f"logship and its peers: the run of {info.get('date', '?')[:10]} (Python "
        f"{info.get('python', '?')}, {info.get('cpus', '?')} CPUs; tables in latest.md)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None} if path.endswith(".svg") else None)
    plt.close(fig)
    return None
