"""A high-risk action waits for a human; the approval on the approvals topic releases it to the executor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import ActionEvent, ActionState, ApprovalDecision, Decision, RawMail, Record, Risk, SourceKind
from schemas.topics import ACTIONS, APPROVALS, RAW_MAIL
from streams.supervisor import Stack
from tests.integration.flow.helpers import TopicReader


def _actions(records: list[Record], tenant: str) -> list[ActionEvent]:
    return [r for r in records if isinstance(r, ActionEvent) and r.tenant == tenant]


def test_approved_high_risk_action_runs_once_and_a_second_click_changes_nothing(
    stack: Stack, codec: Codec, samples_dir: Path
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    prefix = stack.settings.kafka.topic_prefix
    publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
    mail = RawMail(tenant=tenant, message_id=f"<{uuid.uuid4().hex}@t>", mailbox="t", source=SourceKind.FILE,
                   received_at=datetime.now(UTC), raw=(samples_dir / "jenkins_restart.eml").read_bytes())
    publisher.publish_sync(RAW_MAIL, f"{tenant}:m", mail)

    reader = TopicReader(stack.bootstrap, codec, ACTIONS, prefix, alive=stack.check)
    records = reader.wait_for(
        lambda rs: any(a.state is ActionState.AWAITING_APPROVAL for a in _actions(rs, tenant)),
        what="an action awaiting approval",
    )
    waiting = next(a for a in _actions(records, tenant) if a.state is ActionState.AWAITING_APPROVAL)
    assert waiting.risk is Risk.HIGH and waiting.expires_at is not None

    decision = ApprovalDecision(tenant=tenant, action_id=waiting.action_id, decision=Decision.APPROVE,
                                approver="slack:U123", channel="slack", decided_at=datetime.now(UTC))
    for _ in range(2):  # a double click, or a replayed callback
        publisher.publish_sync(APPROVALS, f"{tenant}:{waiting.action_id}", decision)

    def states(rs: list[Record]) -> list[ActionState]:
        return [a.state for a in _actions(rs, tenant) if a.action_id == waiting.action_id]

    reader.wait_for(lambda rs: ActionState.SUCCEEDED in states(rs), timeout=90, what="the approved action's run")
    reader.poll(3.0)  # anything a second approval might have caused would show up by now
    seen = states(reader.records)
    assert seen.count(ActionState.APPROVED) == 1, seen
    assert seen.count(ActionState.RUNNING) == 1, seen
    assert seen.count(ActionState.SUCCEEDED) == 1, seen
    reader.close()
    publisher.close_sync()
