"""The same alert from two tenants: each gets its own fingerprint, incident, records and cooldowns; acme's state
never decides anything of other's, and every record a stage emits carries (and is keyed by) its input's tenant."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from schemas.records import ActionEvent, ActionState, AlertEvent, Incident, RawMail, RcaResult, SourceKind
from streams.settings import Settings, TenantSettings
from streams.stages.core import Position, StageResult
from streams.wiring.runtime import Stages, build_stages
from tests.support.tenant_mail import jenkins_mail

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
SETTINGS = Settings(tenants={
    "acme": TenantSettings(namespaces=["*"], senders=["*@alerts.acme.test"]),
    "other": TenantSettings(namespaces=["*"], senders=["*@alerts.other.test"]),
})


def _own(result: StageResult, tenant: str) -> None:
    for out in result.outputs:
        assert getattr(out.record, "tenant", tenant) == tenant, out
        assert out.key.startswith(f"{tenant}:") or out.key == tenant, out.key


def _through(stages: Stages, tenant: str, memory: dict[str, str] | None = None
             ) -> tuple[Incident, dict[str, ActionEvent], dict[str, str]]:
    raw = jenkins_mail(sender=f"Insight <insight@alerts.{tenant}.test>", namespace="ci", pod="jenkins-0")
    mail = RawMail(tenant=tenant, message_id="<same@x>", mailbox="t", source=SourceKind.FILE, received_at=T0,
                   raw=raw)
    normalized = stages.normalize(mail, Position("raw-mail", 0, 1))
    _own(normalized, tenant)
    event = normalized.outputs[0].record
    assert isinstance(event, AlertEvent)
    deduped = stages.dedup(event, None)
    _own(deduped, tenant)
    incident = deduped.outputs[0].record
    assert isinstance(incident, Incident)
    analysed = asyncio.run(stages.rca(incident))
    _own(analysed, tenant)
    result = analysed.outputs[0].record
    assert isinstance(result, RcaResult)
    decided = stages.decide(result, memory)
    _own(decided, tenant)
    actions = {o.record.name: o.record for o in decided.outputs if isinstance(o.record, ActionEvent)}
    return incident, actions, dict(decided.state or {})


def test_the_same_alert_from_two_tenants_shares_no_state() -> None:
    stages = build_stages(SETTINGS, clock=lambda: T0)
    acme, acme_actions, acme_memory = _through(stages, "acme")
    assert acme_actions["collect_diagnostics"].state is ActionState.APPROVED
    assert acme_memory and all(key.startswith("acme:") for key in acme_memory)

    # other's identical mail, decided with acme's cooldown memory in hand: nothing of acme's applies.
    other, other_actions, other_memory = _through(stages, "other", memory=acme_memory)
    assert other.fingerprint != acme.fingerprint and other.incident_id != acme.incident_id
    assert other_actions["collect_diagnostics"].state is ActionState.APPROVED  # not "in cooldown" of acme's
    assert {a.action_id for a in other_actions.values()}.isdisjoint(a.action_id for a in acme_actions.values())
    assert {k for k in other_memory if k.startswith("other:")}

    # acme's own repeat is in cooldown: the memory works, it is just per tenant.
    stages_again = build_stages(SETTINGS, clock=lambda: T0)
    raw = jenkins_mail(sender="Insight <insight@alerts.acme.test>", namespace="ci", pod="jenkins-0")
    mail = RawMail(tenant="acme", message_id="<again@x>", mailbox="t", source=SourceKind.FILE, received_at=T0,
                   raw=raw)
    event = stages_again.normalize(mail, Position("raw-mail", 0, 2)).outputs[0].record
    assert isinstance(event, AlertEvent)
    incident = stages_again.dedup(event.model_copy(update={"event_id": "again"}), None).outputs[0].record
    assert isinstance(incident, Incident)
    result = asyncio.run(stages_again.rca(incident)).outputs[0].record
    assert isinstance(result, RcaResult)
    repeat = {o.record.name: o.record for o in stages_again.decide(result, acme_memory).outputs
              if isinstance(o.record, ActionEvent)}
    assert repeat["collect_diagnostics"].state is ActionState.REJECTED
    assert "cooldown" in repeat["collect_diagnostics"].reason
