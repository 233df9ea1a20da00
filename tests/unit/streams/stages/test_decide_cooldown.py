"""The decide stage remembers what went ahead per fingerprint, so a target is not acted on again too soon."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from schemas.records import ActionEvent, ActionState, AlertEvent, Incident, RawMail, RcaResult, SourceKind
from streams.settings import Settings, TenantSettings
from streams.stages.core import Position
from streams.wiring.runtime import Stages, build_stages

SAMPLES = Path(__file__).resolve().parents[4] / "samples"
T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def _triaged(stages: Stages, offset: int) -> RcaResult:
    mail = RawMail(tenant="acme", message_id=f"<m{offset}@x>", mailbox="t", source=SourceKind.FILE,
                   received_at=T0, raw=(SAMPLES / "jenkins_restart.eml").read_bytes())
    event = stages.normalize(mail, Position("raw-mail", 0, offset)).outputs[0].record
    assert isinstance(event, AlertEvent)
    incident = stages.dedup(event, None).outputs[0].record
    assert isinstance(incident, Incident)
    out = asyncio.run(stages.rca(incident))
    result = out.outputs[0].record
    assert isinstance(result, RcaResult)
    return result


def _decide(
    stages: Stages, result: RcaResult, memory: dict[str, str] | None
) -> tuple[dict[str, ActionState], dict[str, str]]:
    decided = stages.decide(result, memory)
    states = {o.record.name: o.record.state for o in decided.outputs if isinstance(o.record, ActionEvent)}
    assert decided.state is not None
    return states, decided.state


def test_an_action_in_cooldown_is_refused_for_the_next_incident_of_the_same_target() -> None:
    now = [T0]
    # The tenant owns every namespace, so its actions go ahead (an unscoped tenant is read-only).
    stages = build_stages(Settings(tenants={"default": TenantSettings(namespaces=["*"])}), clock=lambda: now[0])
    first, memory = _decide(stages, _triaged(stages, 1), None)
    assert first["restart_controller"] is ActionState.AWAITING_APPROVAL

    # A new incident for the same fingerprint ten minutes later (after its dedup window closed).
    now[0] = T0 + timedelta(minutes=10)
    second, _ = _decide(stages, _triaged(stages, 2), memory)
    assert second["restart_controller"] is ActionState.REJECTED
    assert second["collect_diagnostics"] is ActionState.APPROVED  # read-only, no cooldown in the policy

    # Without the memory (another target, or after the cooldown) it is proposed again.
    third, _ = _decide(stages, _triaged(stages, 3), None)
    assert third["restart_controller"] is ActionState.AWAITING_APPROVAL
