"""One analytics document per tenant, UTC day and alert class, rolled up from per-incident facts; pure, no I/O.

The facts are the knowledge base's incident documents (streams/kb/document.py folds them
order-independently), so a daily document depends only on which incidents opened that day and
what happened to them, never on the order records arrived in: a replay into a fresh index gives
byte-identical documents. Nothing time-of-writing (no "updated_at") goes in, for the same reason.

Sums and counts are stored next to the means (``mtta.sum_s`` and ``mtta.n``) so that several days
merge exactly (``merge``), which is what ``rcaflow stats --since 7d`` does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

#: Alerts kept per day and class for "top noisy alerts" (ranked by alerts folded, then name).
TOP_ALERTS = 10
ACTION_COUNTS = ("proposed", "approved", "ran", "succeeded", "rolled_back")


def day_of(opened_at: str) -> str:
    """``YYYY-MM-DD`` (UTC) of an ISO timestamp as the KB documents store it."""
    moment = datetime.fromisoformat(opened_at.replace("Z", "+00:00"))
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.date().isoformat()


def doc_id(tenant: str, day: str, alert_class: str) -> str:
    """``tenant:day:class``: the same key gives the same document, so writes are idempotent."""
    return f"{tenant}:{day}:{alert_class}"


def _mean(total: float, n: int) -> float | None:
    return round(total / n, 3) if n else None


def _timing(values: Iterable[float | None]) -> dict[str, Any]:
    kept = [float(v) for v in values if v is not None]
    total = round(sum(kept), 3)
    return {"n": len(kept), "sum_s": total, "avg_s": _mean(total, len(kept))}


def rollup(tenant: str, day: str, alert_class: str, facts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The daily document of the incidents (KB documents) of one tenant that opened on ``day`` in ``alert_class``.

    MTTA is alert → first response (the policy's diagnosis, which is what the first message posts);
    MTTR is alert → resolved; adoption is proposed → succeeded (after approval or automatically);
    rollback rate is rolled back / ran.
    """
    incidents = sorted(facts, key=lambda d: str(d.get("incident_id")))
    timings = [d.get("timings") or {} for d in incidents]
    llm = [((d.get("diagnosis") or {}).get("llm") or {}) for d in incidents]
    latencies = [float(x["latency_ms"]) for x in llm if x.get("latency_ms") is not None]
    actions = {name: sum(int((d.get("action_counts") or {}).get(name, 0)) for d in incidents)
               for name in ACTION_COUNTS}
    noisy: Counter[str] = Counter()
    for d in incidents:
        noisy[str(d.get("alert") or "")] += int(d.get("count") or 1)
    top = sorted(noisy.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_ALERTS]
    latency_total = round(sum(latencies), 3)
    return {
        "tenant": tenant,
        "day": day,
        "alert_class": alert_class,
        "incidents": len(incidents),
        "resolved": sum(1 for d in incidents if d.get("status") == "resolved"),
        "alerts": sum(int(d.get("count") or 1) for d in incidents),
        "mtta": _timing(t.get("to_diagnosis_s") for t in timings),
        "mttr": _timing(t.get("to_resolve_s") for t in timings),
        "llm": {"answers": len(latencies), "latency_ms_sum": latency_total,
                "latency_ms_avg": _mean(latency_total, len(latencies)),
                "tokens": sum(int(x.get("tokens") or 0) for x in llm)},
        "actions": actions,
        "adoption_rate": _mean(actions["succeeded"], actions["proposed"]),
        "rollback_rate": _mean(actions["rolled_back"], actions["ran"]),
        "top_alerts": [{"alert": name, "alerts": n} for name, n in top],
    }


class DailyTotals(BaseModel):
    """Several daily documents of one tenant (or all) and class, merged; what ``rcaflow stats`` prints."""

    model_config = ConfigDict(frozen=True)

    alert_class: str
    days: int
    incidents: int
    resolved: int
    alerts: int
    mtta_s: float | None
    mttr_s: float | None
    llm_answers: int
    llm_latency_ms: float | None
    llm_tokens: int
    actions: dict[str, int]
    adoption_rate: float | None
    rollback_rate: float | None
    top_alerts: list[tuple[str, int]]


def merge(docs: Iterable[Mapping[str, Any]]) -> dict[str, DailyTotals]:
    """Per class (plus ``*`` for all): sums of the counts, means from the stored sums (exact across days).
    Top alerts are summed from each day's top list, so an alert that never made a day's top is not counted."""
    by_class: dict[str, list[Mapping[str, Any]]] = {}
    for doc in docs:
        by_class.setdefault(str(doc["alert_class"]), []).append(doc)
    out = {name: _merge(name, group) for name, group in sorted(by_class.items())}
    everything = [d for group in by_class.values() for d in group]
    out["*"] = _merge("*", everything)
    return out


def _merge(name: str, docs: list[Mapping[str, Any]]) -> DailyTotals:
    def total(path: tuple[str, ...]) -> float:
        out = 0.0
        for d in docs:
            value: Any = d
            for key in path:
                value = (value or {}).get(key)
            out += float(value or 0)
        return out

    actions = {n: int(total(("actions", n))) for n in ACTION_COUNTS}
    noisy: Counter[str] = Counter()
    for d in docs:
        for item in d.get("top_alerts") or []:
            noisy[str(item["alert"])] += int(item["alerts"])
    return DailyTotals(
        alert_class=name,
        days=len({str(d["day"]) for d in docs}),
        incidents=int(total(("incidents",))),
        resolved=int(total(("resolved",))),
        alerts=int(total(("alerts",))),
        mtta_s=_mean(total(("mtta", "sum_s")), int(total(("mtta", "n")))),
        mttr_s=_mean(total(("mttr", "sum_s")), int(total(("mttr", "n")))),
        llm_answers=int(total(("llm", "answers"))),
        llm_latency_ms=_mean(total(("llm", "latency_ms_sum")), int(total(("llm", "answers")))),
        llm_tokens=int(total(("llm", "tokens"))),
        actions=actions,
        adoption_rate=_mean(actions["succeeded"], actions["proposed"]),
        rollback_rate=_mean(actions["rolled_back"], actions["ran"]),
        top_alerts=sorted(noisy.items(), key=lambda kv: (-kv[1], kv[0]))[:5],
    )


def day_range(day: str) -> tuple[str, str]:
    """The [start, end) of a UTC day as ISO strings, for a range query on ``opened_at``."""
    start = date.fromisoformat(day)
    begin = datetime(start.year, start.month, start.day, tzinfo=UTC)
    end = datetime.fromordinal(begin.toordinal() + 1).replace(tzinfo=UTC)
    return begin.isoformat(), end.isoformat()


def render_daily(totals: Mapping[str, DailyTotals]) -> list[str]:
    """The analytics documents' numbers , one line per class, for a terminal."""
    def num(value: float | None, scale: float = 1.0, fmt: str = ".1f") -> str:
        return "-" if value is None else format(value * scale, fmt)

    head = (f"{'class':34} {'inc':>4} {'resolved':>8} {'alerts':>6} {'MTTA s':>8} {'MTTR s':>8} {'llm ms':>8} "
            f"{'tokens':>7} {'proposed':>8} {'approved':>8} {'succeeded':>9} {'adoption':>8} {'rollback':>8}  "
            f"noisiest alert")
    lines = [head, "-" * len(head)]
    for name, t in totals.items():
        noisy = f"{t.top_alerts[0][0]} ({t.top_alerts[0][1]})" if t.top_alerts else "-"
        lines.append(f"{'all classes' if name == '*' else name:34} {t.incidents:>4} {t.resolved:>8} {t.alerts:>6} "
                     f"{num(t.mtta_s):>8} {num(t.mttr_s):>8} {num(t.llm_latency_ms, fmt='.0f'):>8} "
                     f"{t.llm_tokens:>7} {t.actions['proposed']:>8} {t.actions['approved']:>8} "
                     f"{t.actions['succeeded']:>9} {num(t.adoption_rate, 100, '.0f') + '%':>8} "
                     f"{num(t.rollback_rate, 100, '.0f') + '%':>8}  {noisy}")
    return lines
