"""The numbers of a load run, from what was sampled and stamped: latency percentiles, rates over time, capacity.

Pure functions over plain data, so they are unit-tested without a broker (tests/unit/test_load_bench_stats.py).
Times are milliseconds on the wall clock (broker CreateTime, the producer's send time, the chat stand-in's
arrival time: one machine, one clock).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.load_sampler import Sample

#: Where a mail sits on raw-mail: (partition, offset), the key every later record points back to.
Position = tuple[int, int]


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, p50, p95, p99 and max in ms (nearest rank); None for an empty list."""
    if not values:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 1)

    return {"n": len(ordered), "p50_ms": rank(0.50), "p95_ms": rank(0.95), "p99_ms": rank(0.99),
            "max_ms": round(ordered[-1], 1)}


@dataclass
class Stamps:
    """When each step of each mail and incident happened.

    ``sent``: raw-mail position → when the producer sent it; ``normalized``: raw position → first AlertEvent;
    ``opened``: incident id → (raw position of the mail that opened it, its first Incident record);
    ``rca``/``actions``/``notified``: incident id → first policy RcaResult / first ActionEvent / first chat post.
    """

    sent: dict[Position, float] = field(default_factory=dict)
    normalized: dict[Position, float] = field(default_factory=dict)
    opened: dict[str, tuple[Position, float]] = field(default_factory=dict)
    rca: dict[str, float] = field(default_factory=dict)
    actions: dict[str, float] = field(default_factory=dict)
    notified: dict[str, float] = field(default_factory=dict)


def _diffs(later: Mapping[Any, float], earlier: Mapping[Any, float]) -> list[float]:
    return [later[k] - earlier[k] for k in later.keys() & earlier.keys()]


def stage_latencies(stamps: Stamps) -> dict[str, Any]:
    """Per stage (from one record's timestamp to the next one's) and end to end from the mail's send time.

    The stages of the critical path: normalize (raw-mail → normalized, every mail), dedup + correlate
    (normalized → incidents, the mails that opened an incident), rca (→ rca-result), decide (→ the first
    action record), notify (first action → first chat message; decide asks notify after its actions are out).
    """
    opened_at = {incident: at for incident, (_, at) in stamps.opened.items()}
    opened_pos = {incident: pos for incident, (pos, _) in stamps.opened.items()}
    sent_of = {incident: stamps.sent[pos] for incident, pos in opened_pos.items() if pos in stamps.sent}
    normalized_of = {incident: stamps.normalized[pos] for incident, pos in opened_pos.items()
                     if pos in stamps.normalized}
    return {
        "stages": {
            "normalize": percentiles(_diffs(stamps.normalized, stamps.sent)),
            "dedup+correlate": percentiles(_diffs(opened_at, normalized_of)),
            "rca": percentiles(_diffs(stamps.rca, opened_at)),
            "decide": percentiles(_diffs(stamps.actions, stamps.rca)),
            "notify": percentiles(_diffs(stamps.notified, stamps.actions)),
        },
        "mail_to_incident": percentiles(_diffs(opened_at, sent_of)),
        "mail_to_rca_result": percentiles(_diffs(stamps.rca, sent_of)),
        "mail_to_notification": percentiles(_diffs(stamps.notified, sent_of)),
    }


def series(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    """Per sampling interval: records/min written to each topic (and counter), lag per group/topic, RSS."""
    out = []
    for before, now in itertools.pairwise(samples):
        span = now.t_s - before.t_s
        if span <= 0:
            continue
        out.append({
            "t_s": now.t_s,
            "per_min": {k: round((v - before.ends.get(k, 0)) / span * 60, 1) for k, v in now.ends.items()},
            "lag": dict(now.lag),
            "rss_mb": dict(now.rss_mb),
            "load1": now.load1,
        })
    return out


def consumed(sample: Sample, topic: str = "raw-mail", group: str = "worker") -> int:
    """Records of ``topic`` the group is past: written minus its lag."""
    return sample.ends.get(topic, 0) - sample.lag.get(f"{group}/{topic}", 0)


def _slope_per_s(points: Sequence[tuple[float, float]]) -> float | None:
    if len(points) < 2:
        return None
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var


def slope_per_min(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute; None with fewer than two distinct times."""
    slope = _slope_per_s(points)
    return None if slope is None else round(slope * 60, 1)


def rss_second_half(samples: Sequence[Sample], load_s: float) -> dict[str, Any]:
    """Per role, the RSS over the second half of the load: first, last, max and the least-squares slope in MB/hour.

    The first half is where the tables fill up to their retention (rows made faster than the prune ticks
    delete them); a worker whose memory is bounded shows a slope near zero after that, one that leaks a
    steady climb. Per hour, not per minute: a leak of a few MB/hour is what matters on a long-running worker.
    """
    half = [s for s in samples if load_s / 2 <= s.t_s <= load_s]
    out: dict[str, Any] = {"window_s": [half[0].t_s, half[-1].t_s] if half else None}
    for role in sorted({r for s in half for r in s.rss_mb}):
        points = [(s.t_s, mb) for s in half for mb in [s.rss_mb.get(role)] if mb is not None]
        slope = _slope_per_s(points)
        out[role] = {"first_mb": points[0][1] if points else None, "last_mb": points[-1][1] if points else None,
                     "max_mb": max((mb for _, mb in points), default=None),
                     "slope_mb_per_hour": None if slope is None else round(slope * 3600, 1)}
    return out


def load_phase(samples: Sequence[Sample], load_s: float, *, skip_s: float = 30.0) -> list[Sample]:
    """The samples while mails were being sent, without the first ``skip_s`` (the worker's pipeline filling)."""
    return [s for s in samples if skip_s <= s.t_s <= load_s]


def sustained(samples: Sequence[Sample], load_s: float, *, skip_s: float = 30.0) -> dict[str, Any]:
    """While the load was on: how fast the worker took mails off raw-mail, and whether it fell behind.

    ``consumed_mails_per_min`` is the slope of raw-mail records the worker group is past; ``written_per_min`` the
    slope of each topic's (and counter's) records; ``*_lag_growth_per_min`` the slope of the worker group's lag,
    in total, on raw-mail and, summed, on its other input topics (the stages after normalize). Lag that grows
    steadily means the offered rate is over capacity (normalize, the cheap first stage, may keep up while the
    stages after it fall behind: :func:`capacity` looks at the end of the path).
    """
    phase = load_phase(samples, load_s, skip_s=skip_s)
    raw_lag = [(s.t_s, float(s.lag.get("worker/raw-mail", 0))) for s in phase]
    downstream = [(s.t_s, float(sum(v for k, v in s.lag.items()
                                     if k.startswith("worker/") and k != "worker/raw-mail"))) for s in phase]
    total = [(s.t_s, float(sum(v for k, v in s.lag.items() if k.startswith("worker/")))) for s in phase]
    rss = [mb for s in phase for mb in [s.rss_mb.get("worker")] if mb is not None]
    return {
        "window_s": [phase[0].t_s, phase[-1].t_s] if phase else None,
        "offered_mails_per_min": slope_per_min([(s.t_s, float(s.produced)) for s in phase]),
        "consumed_mails_per_min": slope_per_min([(s.t_s, float(consumed(s))) for s in phase]),
        "written_per_min": {topic: slope_per_min([(s.t_s, float(s.ends.get(topic, 0))) for s in phase])
                            for topic in (phase[-1].ends if phase else {})},
        "worker_lag_growth_per_min": slope_per_min(total),
        "worker_lag_max": max((v for _, v in total), default=None),
        "raw_mail_lag_growth_per_min": slope_per_min(raw_lag),
        "downstream_lag_growth_per_min": slope_per_min(downstream),
        "raw_mail_lag_max": max((v for _, v in raw_lag), default=None),
        "downstream_lag_max": max((v for _, v in downstream), default=None),
        "worker_rss_mb_first_last_max": [rss[0], rss[-1], max(rss)] if rss else None,
        "worker_rss_growth_mb_per_min": slope_per_min([(s.t_s, mb) for s in phase
                                                       for mb in [s.rss_mb.get("worker")] if mb is not None]),
    }


def capacity(steady: dict[str, Any], offered_per_min: float, new_alert_ratio: float) -> dict[str, Any]:
    """Whether the worker fell behind, and if so the mails/min it carried to the end of the triage path.

    Saturated: the worker group's total lag grew by more than 5 % of the offered rate per minute. Then each
    new alert's rca-result and chat message come out at the bottleneck's pace; divided by the share of mails
    that open an incident (repeats only bump a count), that is the mails/min the worker sustains at this mix.
    The smaller of the two (rca-result, chat) is the capacity.
    """
    growth = steady.get("worker_lag_growth_per_min") or 0.0
    saturated = growth > 0.05 * offered_per_min
    written = steady.get("written_per_min") or {}
    by = {name: round(rate / new_alert_ratio, 1) for name in ("rca-result", "notified")
          for rate in [written.get(name)] if rate is not None and new_alert_ratio > 0}
    return {"saturated": saturated, "mails_per_min_by_output": by,
            "capacity_mails_per_min": min(by.values()) if saturated and by else None}
