"""Matplotlib plots of a deployment's metrics: one panel per metric, one line per replica."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from .metrics import UNITS

SCALE = {"bytes": (1 / 2**20, "MiB")}
NAMES = {"memory_bytes": "memory", "cpu_cores": "CPU", "cpu_percent": "CPU",
         "memory_percent": "memory", "requests_per_second": "requests", "p50_ms": "p50 latency",
         "p95_ms": "p95 latency", "p99_ms": "p99 latency", "inflight": "in flight",
         "count": "requests", "errors": "errors"}
FLOOR = {"%": 1.0, "cores": 0.05, "MiB": 1.0}  # the least y range drawn, so a flat line shows


def sample_counts(rows: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """How many samples each (metric, replica) series has (per-status counters left out)."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        if not row["name"].startswith("status_"):
            counts[(row["name"], row["nodeId"])] += 1
    return dict(counts)


def samples_per_replica(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Per replica (node id), the sample count of its longest series."""
    out: dict[str, int] = {}
    for (_, node), n in sample_counts(rows).items():
        out[node] = max(out.get(node, 0), n)
    return out


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
        top = 0.0
        for node, points in sorted(series[name].items()):
            xs, ys = zip(*sorted(points))
            values = [y * factor for y in ys]
            top = max(top, *values)
            # markers while there are few samples: every point shows, even on a flat line
            ax.plot(xs, values, linewidth=1.4, marker="o" if len(xs) <= 40 else None,
                    markersize=3.5, label="all replicas" if node == "*" else node)
        if min(v for pts in series[name].values() for _, v in pts) >= 0:
            high = max(top * 1.15, FLOOR.get(unit, 1.0))
            ax.set_ylim(-0.03 * high, high)  # a line at zero stays above the axis, visible
        label = NAMES.get(name, name)
        ax.set_ylabel(f"{label}\n({unit})" if unit else label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the data
    axes[-1].set_xlabel("time (UTC)")
    axes[-1].xaxis.set_major_formatter(DateFormatter("%H:%M:%S"))
    counts = sample_counts(rows)
    times = [dt.datetime.fromisoformat(r["time"]) for r in rows]
    span = f"{min(times):%H:%M:%S}–{max(times):%H:%M:%S} UTC" if times else ""
    if title:
        fig.suptitle(title)
    low, high = min(counts.values()), max(counts.values())
    axes[0].set_title(f"{low if low == high else f'{low}–{high}'} samples per series, {span}",
                      fontsize="small", loc="right", color="#555")
    return fig


def plot_comparison(doc: dict[str, Any], title: str = "") -> Any:
    """A comparison (``GET .../compare``) -> a Figure: each numeric output's absolute
    difference (p50, p95, max), each categorical output's agreement, and both releases'
    latency (p50, p99)."""
    from matplotlib.figure import Figure

    numeric, categorical = doc["numeric"], doc["categorical"]
    panels = (1 if numeric else 0) + (1 if categorical else 0) + 1
    fig = Figure(figsize=(9, 2.8 * panels), layout="constrained")
    axes = list(fig.subplots(panels, 1, squeeze=False)[:, 0])
    a, b = doc["a"], doc["b"]
    if numeric:
        ax = axes.pop(0)
        names = [n["column"] for n in numeric]
        for i, (key, label) in enumerate((("p50Abs", "p50"), ("p95Abs", "p95"),
                                          ("maxAbs", "max"))):
            ax.bar([j + (i - 1) * 0.27 for j in range(len(names))], [n[key] for n in numeric],
                   width=0.27, label=label)
        ax.set_xticks(range(len(names)), names)
        ax.set_ylabel(f"|{b['version']} - {a['version']}|")
        ax.set_title("difference of the numeric outputs", fontsize="medium")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3, axis="y")
    if categorical:
        ax = axes.pop(0)
        ax.barh([c["column"] for c in categorical], [100 * c["agreement"] for c in categorical])
        ax.set_xlim(0, 100)
        ax.set_xlabel("rows where both releases agree (%)")
        ax.grid(alpha=0.3, axis="x")
    ax = axes.pop(0)
    sides = [f"{a['version']} (serving)", f"{b['version']} ({doc['source']})"]
    for i, (key, label) in enumerate((("p50Ms", "p50"), ("p99Ms", "p99"))):
        ax.bar([j + (i - 0.5) * 0.35 for j in range(2)], [a.get(key) or 0, b.get(key) or 0],
               width=0.35, label=label)
    ax.set_xticks(range(2), sides)
    ax.set_ylabel("latency (ms)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title or f"{doc['queries']} queries answered by both releases",
                 fontsize="medium")
    return fig

