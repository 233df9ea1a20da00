"""The LLM stage as the worker runs it: a scripted OpenAI-compatible server, the real policy and codec."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry

from schemas.records import ActionState, AlertEvent, Engine, Incident, RawMail, RcaResult, SourceKind
from streams.settings import Settings, TenantSettings
from streams.stages.core import Position
from streams.stages.metrics import StageMetrics
from streams.stages.second_opinion import SecondOpinion
from streams.wiring.runtime import Stages, build_stages
from tests.unit.executors.llm.standin import ChatStandIn, Reply, answer_json, make_client

SAMPLES = Path(__file__).resolve().parents[4] / "samples"


def _triaged(stages: Stages) -> RcaResult:
    """The policy's result for the etcd sample, produced by the real stages."""
    mail = RawMail(tenant="acme", message_id="<m@x>", mailbox="t", source=SourceKind.FILE,
                   received_at=datetime.now(UTC), raw=(SAMPLES / "etcd_latency.eml").read_bytes())
    (out, *_) = stages.normalize(mail, Position("raw-mail", 0, 7)).outputs
    event = out.record
    assert isinstance(event, AlertEvent) and event.alert_class == "etcd_latency"
    incident = stages.dedup(event, None).outputs[0].record
    assert isinstance(incident, Incident)
    rca = asyncio.run(stages.rca(incident))
    triaged = rca.outputs[0].record
    assert isinstance(triaged, RcaResult) and triaged.engine is Engine.POLICY
    return triaged


def test_the_model_refines_the_diagnosis_but_cannot_add_an_action_the_policy_lacks() -> None:
    registry = CollectorRegistry()
    # The tenant owns every namespace, so the accepted action goes ahead (an unscoped tenant is read-only).
    stages = build_stages(Settings(tenants={"default": TenantSettings(namespaces=["*"])}),
                          StageMetrics(registry, tenants=["acme"]))
    triaged = _triaged(stages)
    labels = triaged.incident.event.labels
    diagnostics = {"name": "collect_diagnostics", "reason": "look at the member",
                   "params": [{"name": "namespace", "value": labels["namespace"]},
                              {"name": "workload", "value": labels["workload"]}]}
    injected = {"name": "delete_namespace", "reason": "the alert text said so",
                "params": [{"name": "namespace", "value": labels["namespace"]}]}
    standin = ChatStandIn([Reply(answer_json([diagnostics, injected], summary="WAL fsync slow on master-01"))])

    async def go() -> list[object]:
        async with standin.http() as http:
            second_opinion = SecondOpinion(make_client(standin, http), stages.policies, context=stages.context)
            return [o.record for o in (await second_opinion(triaged)).outputs]

    records = asyncio.run(go())
    answer = records[0]
    assert isinstance(answer, RcaResult)
    assert answer.engine is Engine.LLM and answer.model and answer.tokens
    assert answer.diagnosis.startswith("WAL fsync slow")
    assert [a.name for a in answer.actions] == ["collect_diagnostics"]
    rejected = [r for r in records[1:] if getattr(r, "state", None) is ActionState.REJECTED]
    assert [r.name for r in rejected] == ["delete_namespace"]  # type: ignore[attr-defined]
    spent = registry.get_sample_value("rcaflow_llm_tokens_total", {"model": answer.model or "", "tenant": "acme"})
    assert spent == answer.tokens

    # The prompt points the model at rcaflow's runbook of the class before the upstream ones.
    prompt = standin.requests[0]["messages"][1]["content"]
    assert "- docs/runbooks/etcd_latency.md\n- https://" in prompt

    # The model's accepted action is the same action (same id) the triage proposed: it cannot run twice.
    triage_ids = {a.name: a.action_id for a in triaged.actions}
    assert answer.actions[0].action_id == triage_ids["collect_diagnostics"]
    decided = stages.decide(answer)
    states = {o.record.name: o.record.state for o in decided.outputs}  # type: ignore[attr-defined]
    assert states == {"collect_diagnostics": ActionState.APPROVED}


def test_an_llm_result_is_not_sent_to_the_llm_again() -> None:
    stages = build_stages(Settings())
    triaged = _triaged(stages).model_copy(update={"engine": Engine.LLM})
    standin = ChatStandIn([])

    async def go() -> str:
        async with standin.http() as http:
            second_opinion = SecondOpinion(make_client(standin, http), stages.policies)
            return (await second_opinion(triaged)).outcome

    assert asyncio.run(go()) == "skipped"
    assert standin.requests == []
