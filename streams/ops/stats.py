"""What rcaflow did over a period, per alert class: incidents, how fast the analysis came, what ran and how it ended.

The numbers an SRE lead asks for after a week on call (how many incidents,
how long to a root cause, how often the automation acted, how often a human
had to approve and how long that took, what failed or was rolled back) come
straight from the incidents, rca-result and actions topics; nothing else is stored.

Alerts come from the incidents topic: dedup writes one Incident record per alert it
folds into an incident (``count`` 1, 2, 3 …), while the rca-result carries the
incident as it was opened (count 1), so an incident's alerts are the highest count
seen for it (a re-delivered record counts once). A dry run is its own outcome
(``dry_run``), never ``succeeded``: nothing was changed.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from schemas.records import ActionEvent, ActionState, Engine, Incident, RcaResult

#: The outcome of an action the executor only simulated (``dry_run``) and that went through.
DRY_RUN = "dry_run"
_FINAL = (ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK, ActionState.REJECTED,
          ActionState.EXPIRED, ActionState.WITHDRAWN)


@dataclass
class ClassStats:
    incidents: int = 0
    alerts: int = 0
    #: Seconds from the first alert of the incident to the policy's analysis, and to the LLM's.
    to_triage_s: list[float] = field(default_factory=list)
    to_llm_s: list[float] = field(default_factory=list)
    actions: int = 0
    auto_approved: int = 0
    human_approved: int = 0
    #: Seconds an approved action waited for its human.
    approval_wait_s: list[float] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    dry_runs: int = 0
    llm_tokens: int = 0
    #: Proposals the policy gate refused (never actions).
    refused: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "incidents": self.incidents, "alerts": self.alerts,
            "to_triage_s": _summary(self.to_triage_s), "to_llm_s": _summary(self.to_llm_s),
            "actions": self.actions, "auto_approved": self.auto_approved, "human_approved": self.human_approved,
            "approval_wait_s": _summary(self.approval_wait_s), "outcomes": dict(sorted(self.outcomes.items())),
            "dry_runs": self.dry_runs, "llm_tokens": self.llm_tokens, "refused_by_policy": self.refused,
        }


def alerts_per_incident(incidents: Iterable[Incident]) -> dict[tuple[str, str], int]:
    """(tenant, incident id) → how many alerts it folded: the highest ``count`` of its records."""
    alerts: dict[tuple[str, str], int] = {}
    for incident in incidents:
        key = (incident.tenant, incident.incident_id)
        alerts[key] = max(alerts.get(key, 0), incident.count)
    return alerts


def summarize(results: Iterable[RcaResult], actions: Iterable[ActionEvent], *, since: datetime,
              tenant: str | None = None, incidents: Iterable[Incident] = ()) -> dict[str, ClassStats]:
    """Per alert class (plus ``*`` for all), for incidents opened at or after ``since``.

    ``incidents`` (the incidents topic) give the alerts per incident; an incident with none of its records
    there counts the one alert that opened it.
    """
    folded: Mapping[tuple[str, str], int] = alerts_per_incident(incidents)
    by_class: dict[str, ClassStats] = defaultdict(ClassStats)
    seen: set[tuple[str, str]] = set()
    opened: dict[str, str] = {}  # incident id -> class, for the actions below
    for result in results:
        incident = result.incident
        if (tenant and result.tenant != tenant) or incident.opened_at < since:
            continue
        stats = by_class[result.alert_class]
        elapsed = (result.produced_at - incident.event.received_at).total_seconds()
        if (result.incident_id, "incident") not in seen:
            seen.add((result.incident_id, "incident"))
            opened[result.incident_id] = result.alert_class
            stats.incidents += 1
            stats.alerts += max(folded.get((result.tenant, result.incident_id), 0), incident.count, 1)
        if result.engine is Engine.POLICY and (result.incident_id, "policy") not in seen:
            seen.add((result.incident_id, "policy"))
            stats.to_triage_s.append(max(elapsed, 0.0))
        elif result.engine is Engine.LLM and (result.incident_id, "llm") not in seen:
            seen.add((result.incident_id, "llm"))
            stats.to_llm_s.append(max(elapsed, 0.0))
            stats.llm_tokens += result.tokens or 0
    for records in _by_action(actions).values():
        first = records[0]
        cls = opened.get(first.incident_id)
        if cls is None:
            continue  # its incident is outside the window
        stats = by_class[cls]
        if first.state is ActionState.REJECTED:
            stats.refused += 1  # proposed (by the policy's triage or the LLM) and refused by the policy gate
            continue
        stats.actions += 1
        waiting = next((r for r in records if r.state is ActionState.AWAITING_APPROVAL), None)
        approved = next((r for r in records if r.state is ActionState.APPROVED), None)
        if approved is not None and waiting is None:
            stats.auto_approved += 1
        elif approved is not None and waiting is not None:
            stats.human_approved += 1
            stats.approval_wait_s.append(max((approved.at - waiting.at).total_seconds(), 0.0))
        final = next((r for r in reversed(records) if r.state in _FINAL), None)
        dry = final is not None and final.dry_run and final.state in (ActionState.SUCCEEDED, ActionState.FAILED)
        if dry:
            stats.dry_runs += 1
        if dry and final is not None and final.state is ActionState.SUCCEEDED:
            stats.outcomes[DRY_RUN] += 1  # simulated: nothing changed, so not "succeeded"
        else:
            stats.outcomes[final.state.value if final else records[-1].state.value] += 1
    total = ClassStats()
    for stats in by_class.values():
        total.incidents += stats.incidents
        total.alerts += stats.alerts
        total.to_triage_s += stats.to_triage_s
        total.to_llm_s += stats.to_llm_s
        total.actions += stats.actions
        total.auto_approved += stats.auto_approved
        total.human_approved += stats.human_approved
        total.approval_wait_s += stats.approval_wait_s
        total.dry_runs += stats.dry_runs
        total.refused += stats.refused
        total.llm_tokens += stats.llm_tokens
        for state, count in stats.outcomes.items():
            total.outcomes[state] += count
    return {**dict(sorted(by_class.items())), "*": total}


def _by_action(actions: Iterable[ActionEvent]) -> dict[str, list[ActionEvent]]:
    """Each action's records in topic order; a rollback counts with the action it undid, not on its own."""
    grouped: dict[str, list[ActionEvent]] = defaultdict(list)
    for action in actions:
        if action.rollback_of is None:
            grouped[action.action_id].append(action)
    return grouped


def _summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {"n": len(ordered), "p50": round(statistics.median(ordered), 3),
            "p95": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 3),
            "max": round(ordered[-1], 3)}


def render(stats: dict[str, ClassStats]) -> list[str]:
    """One line per class, for a terminal."""
    def secs(values: list[float]) -> str:
        summary = _summary(values)
        return f"{summary['p50']:.1f}/{summary['p95']:.1f}" if summary else "-"

    head = (f"{'class':34} {'inc':>4} {'alerts':>6} {'triage s':>10} {'llm s':>10} {'actions':>7} {'auto':>4} "
            f"{'human':>5} {'wait s':>10}  outcomes")
    lines = [head, "-" * len(head)]
    for name, s in stats.items():
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(s.outcomes.items())) or "-"
        lines.append(f"{'all classes' if name == '*' else name:34} {s.incidents:>4} {s.alerts:>6} "
                     f"{secs(s.to_triage_s):>10} {secs(s.to_llm_s):>10} {s.actions:>7} {s.auto_approved:>4} "
                     f"{s.human_approved:>5} {secs(s.approval_wait_s):>10}  {outcomes}")
    return lines
