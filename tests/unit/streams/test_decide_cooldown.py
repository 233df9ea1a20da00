"""The decide stage remembers what went ahead per fingerprint, so a target is not acted on again too soon."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from schemas.records import ActionEvent, ActionState, Incident, RawMail, RcaResult, SourceKind
from streams.pipeline import Pipeline, Position
from streams.runtime import build_pipeline
from streams.settings import Settings

SAMPLES = Path(__file__).resolve().parents[3] / "samples"
T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def _triaged(pipeline: Pipeline, offset: int) -> RcaResult:
    mail = RawMail(tenant="acme", message_id=f"<m{offset}@x>", mailbox="t", source=SourceKind.FILE,
                   received_at=T0, raw=(SAMPLES / "jenkins_restart.eml").read_bytes())
    raw = pipeline.codec.encode(mail, topic="raw-mail")
    event = pipeline.normalize(raw, Position("raw-mail", 0, offset)).outputs[0]
    opened, _ = pipeline.dedup(pipeline.codec.encode(event.record, topic="normalized"), None, Position("n", 0, offset))
    incident = opened.outputs[0].record
    assert isinstance(incident, Incident)
    out = asyncio.run(pipeline.rca(pipeline.codec.encode(incident, topic="incidents"), Position("i", 0, offset)))
    result = out.outputs[0].record
    assert isinstance(result, RcaResult)
    return result


def _decide(
    pipeline: Pipeline, result: RcaResult, memory: dict[str, str] | None
) -> tuple[dict[str, ActionState], dict[str, str]]:
    decided = pipeline.decide(pipeline.codec.encode(result, topic="rca-result"), Position("r", 0, 1), memory)
    states = {o.record.name: o.record.state for o in decided.outputs if isinstance(o.record, ActionEvent)}
    assert decided.state is not None
    return states, decided.state


def test_an_action_in_cooldown_is_refused_for_the_next_incident_of_the_same_target() -> None:
    pipeline = build_pipeline(Settings())
    pipeline.clock = lambda: T0
    first, memory = _decide(pipeline, _triaged(pipeline, 1), None)
    assert first["restart_controller"] is ActionState.AWAITING_APPROVAL

    # A new incident for the same fingerprint ten minutes later (after its dedup window closed).
    pipeline.clock = lambda: T0 + timedelta(minutes=10)
    second, _ = _decide(pipeline, _triaged(pipeline, 2), memory)
    assert second["restart_controller"] is ActionState.REJECTED
    assert second["collect_diagnostics"] is ActionState.APPROVED  # read-only, no cooldown in the policy

    # Without the memory (another target, or after the cooldown) it is proposed again.
    third, _ = _decide(pipeline, _triaged(pipeline, 3), None)
    assert third["restart_controller"] is ActionState.AWAITING_APPROVAL
