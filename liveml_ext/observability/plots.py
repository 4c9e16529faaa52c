"""Matplotlib plots of a deployment's metrics: one panel per metric, one line per replica."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from .metrics import UNITS

SCALE = {"bytes": (1 / 2**20, "MiB")}


def plot_metrics(rows: list[dict[str, Any]], title: str = "", names: list[str] | None = None) -> Any:
    """Rows from ``GET .../metrics`` -> a matplotlib Figure (not shown; save or display it)."""
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure

    series: dict[str, dict[str, list[tuple[dt.datetime, float]]]] = defaultdict(
        lambda: defaultdict(list))
    for row in rows:
        if names and row["name"] not in names:
            continue
        if row["name"].startswith("status_"):
            continue
        when = dt.datetime.fromisoformat(row["time"])
        series[row["name"]][row["nodeId"]].append((when, row["value"]))
    order = [n for n in UNITS if n in series] + sorted(n for n in series if n not in UNITS)
    fig = Figure(figsize=(9, max(2.6, 2.4 * len(order))), layout="constrained")
    if not order:
        ax = fig.subplots()
        ax.text(0.5, 0.5, "no samples in this window", ha="center", va="center")
        ax.set_axis_off()
        return fig
    axes = fig.subplots(len(order), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, order):
        unit = UNITS.get(name, "")
        factor, unit = SCALE.get(unit, (1.0, unit))
        for node, points in sorted(series[name].items()):
            xs, ys = zip(*sorted(points))
            ax.plot(xs, [y * factor for y in ys], linewidth=1.4,
                    label="all replicas" if node == "*" else node)
        ax.set_ylabel(f"{name}\n({unit})" if unit else name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper left")
    axes[-1].set_xlabel("time (UTC)")
    axes[-1].xaxis.set_major_formatter(DateFormatter("%H:%M:%S"))
    if title:
        fig.suptitle(title)
    return fig
