"""The PNG of a load run: throughput, consumer lag, RSS (and table rows) over time, one panel each, one time axis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a build machine

import matplotlib.pyplot as plt  # the backend is chosen before pyplot is imported

#: Topics (and counters) drawn in the throughput panel, in pipeline order.
THROUGHPUT = ("raw-mail", "normalized", "incidents", "rca-result", "actions", "notified")


def plot(points: Sequence[dict[str, Any]], out: Path, title: str, *, load_s: float | None = None,
         table_rows: tuple[Sequence[float], Mapping[str, Sequence[int]]] | None = None) -> None:
    """``points``: :func:`benchmarks.load_stats.series`. ``load_s``: when sending stopped (a dashed line).
    ``table_rows``: (times, table → live rows at each time) from :mod:`benchmarks.load_tables`, a fourth panel."""
    t = [p["t_s"] for p in points]
    panels = 4 if table_rows and table_rows[1] else 3
    fig, axes = plt.subplots(panels, 1, figsize=(11, 3 * panels), sharex=True)
    thr, lag, rss = axes[:3]
    for name in THROUGHPUT:
        thr.plot(t, [p["per_min"].get(name, 0.0) for p in points], label=name, linewidth=1.2)
    thr.set_ylabel("records/min written")
    thr.set_title(title, fontsize=10)
    lag_keys = sorted({k for p in points for k, v in p["lag"].items() if v})
    for key in lag_keys:
        lag.plot(t, [p["lag"].get(key, 0) for p in points], label=key, linewidth=1.2)
    lag.set_ylabel("consumer lag (records)")
    for role in sorted({r for p in points for r in p["rss_mb"]}):
        rss.plot(t, [p["rss_mb"].get(role) for p in points], label=f"{role} RSS", linewidth=1.2)
    load = rss.twinx()
    load.plot(t, [p["load1"] for p in points], color="grey", linestyle=":", label="load average (1 min)")
    load.set_ylabel("load average")
    rss.set_ylabel("RSS (MiB)")
    if panels == 4 and table_rows is not None:
        times, rows = table_rows
        for name, counts in sorted(rows.items()):
            axes[3].plot(times, counts, label=name, linewidth=1.2)
        axes[3].set_ylabel("table rows (changelog)")
    axes[-1].set_xlabel("seconds since the load started")
    for axis in axes:
        if load_s is not None:
            axis.axvline(load_s, color="black", linestyle="--", linewidth=0.8)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7, loc="upper left", ncol=3)
    load.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
