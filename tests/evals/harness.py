"""Eval harness: one case folder -> policy triage + LLM (recorded replies) + gate + decide -> a score.

No real model runs here: each case's ``llm_answer*.txt`` are served verbatim by the scripted
OpenAI-compatible stand-in, so a score measures rcaflow's side (prompt plumbing, parsing, repair,
the policy gate, decide, and the fallback to the policy triage), not a model's intelligence.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from executors.llm import ClassBrief, LlmRca, analyse
from policies import PolicySet, decide, incident_id_for, load_policies, triage
from producers.fingerprint import alert_fingerprint, event_id
from schemas.records import AlertEvent, AlertMetrics, AlertStatus, Incident, RcaResult
from streams.stages.second_opinion import brief_for
from tests.unit.executors.llm.standin import ChatStandIn, FakeClock, Reply, make_client

CASES_DIR = Path(__file__).resolve().parent
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TENANT = "eval"


@dataclass
class CaseScore:
    case: str
    kind: str
    expected_class: str
    alert_class: str
    engine: str
    cause_ok: bool
    precision: float
    recall: float
    proposed: list[str]
    accepted: list[str]
    dropped: int
    forbidden: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def class_ok(self) -> bool:
        return self.alert_class == self.expected_class

    @property
    def passed(self) -> bool:
        return self.class_ok and self.cause_ok and not self.forbidden and self.precision == 1.0 and self.recall == 1.0


def load_case(folder: Path) -> dict[str, Any]:
    case: dict[str, Any] = yaml.safe_load((folder / "case.yaml").read_text(encoding="utf-8"))
    outputs = folder / "tool_outputs.yaml"
    case["tool_outputs"] = yaml.safe_load(outputs.read_text(encoding="utf-8")) if outputs.exists() else {}
    files = sorted(folder.glob("llm_answer*.txt"), key=lambda p: (p.name != "llm_answer.txt", p.name))
    case["llm_answers"] = [p.read_text(encoding="utf-8") for p in files]
    return case


def incident_for(case: dict[str, Any], policies: PolicySet) -> Incident:
    ev = case["event"]
    labels = {str(k): str(v) for k, v in ev.get("labels", {}).items()}
    fingerprint = alert_fingerprint(TENANT, ev["alert"], labels)
    eid = event_id(TENANT, case["id"], 0)
    draft = AlertEvent(
        tenant=TENANT,
        event_id=eid,
        fingerprint=fingerprint,
        alert=ev["alert"],
        severity=str(ev.get("severity", "warning")),
        status=AlertStatus(ev.get("status", "firing")),
        labels=labels,
        annotations={str(k): str(v) for k, v in ev.get("annotations", {}).items()},
        metrics=AlertMetrics(times=int(ev.get("times", 1)), first_occur=NOW),
        received_at=NOW,
        parser="eval",
    )
    event = draft.model_copy(update={"alert_class": policies.classify(draft)})
    return Incident(
        tenant=TENANT,
        incident_id=incident_id_for(TENANT, fingerprint, eid),
        fingerprint=fingerprint,
        alert_class=event.alert_class,
        opened_at=NOW,
        last_seen_at=NOW,
        count=1,
        last_event_id=eid,
        event=event,
    )


def _replies(case: dict[str, Any]) -> list[Reply]:
    if case.get("llm_status"):
        return [Reply(status=int(case["llm_status"]), text="upstream unavailable")] * 10
    return [Reply(text) for text in case["llm_answers"]]


async def _run_llm(case: dict[str, Any], incident: Incident, brief: ClassBrief, policy: RcaResult) -> Any:
    standin = ChatStandIn(_replies(case))
    async with standin.http() as http:
        client = make_client(standin, http, FakeClock(), max_retries=1)
        return await analyse(client, incident, brief, policy.evidence)


def run_case(folder: Path, policies: PolicySet | None = None) -> CaseScore:
    policies = policies or load_policies()
    case = load_case(folder)
    expected = case["expected"]
    incident = incident_for(case, policies)
    values = {k: float(v) for k, v in (case["tool_outputs"] or {}).items()}
    policy = triage(incident, policies, NOW, values)
    cls = policies.get(incident.alert_class)
    notes: list[str] = []
    proposed: list[str] = []
    dropped = 0
    result = policy
    engine = "policy"
    if cls is not None:
        outcome = asyncio.run(_run_llm(case, incident, brief_for(cls, incident, policy), policy))
        if isinstance(outcome, LlmRca):
            result = outcome.to_rca_result(incident, NOW, policy.evidence)
            engine = "llm" + ("+repair" if outcome.repaired else "")
            proposed = [a.name for a in outcome.actions] + [r.name for r in outcome.rejected]
            dropped = len(outcome.rejected)
        else:
            engine = "policy(fallback)"
            notes.append(f"LLM failed: {outcome.kind}: {outcome.reason[:80]}")
    decisions = decide(result, policies, NOW)
    dropped += len(decisions.rejected)
    accepted = sorted({a.name for a in decisions.actions})
    want = set(expected.get("actions", []))
    got = set(accepted)
    precision = len(got & want) / len(got) if got else (1.0 if not want else 0.0)
    recall = len(got & want) / len(want) if want else 1.0
    text = f"{result.diagnosis} {result.cause}".casefold()
    cause_ok = all(k.casefold() in text for k in expected.get("cause_keywords", []))
    forbidden = sorted(got & set(expected.get("forbidden_actions", [])))
    if expected.get("engine") and not engine.startswith(expected["engine"]):
        notes.append(f"expected engine {expected['engine']}, got {engine}")
        cause_ok = False
    return CaseScore(
        case=case["id"],
        kind=case.get("kind", ""),
        expected_class=expected["alert_class"],
        alert_class=incident.alert_class,
        engine=engine,
        cause_ok=cause_ok,
        precision=precision,
        recall=recall,
        proposed=proposed,
        accepted=accepted,
        dropped=dropped,
        forbidden=forbidden,
        notes=notes,
    )


def case_folders() -> list[Path]:
    return sorted(p.parent for p in CASES_DIR.glob("*/case.yaml"))
