"""Two API replicas each accept a click for the same action: the worker acts on the first decision only.

The second decision is kept as a refusal ("already decided by X at T") in dead-letter and in the
tenant's audit chain; the action runs once and its decision never flips.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import (
    ActionEvent,
    ActionState,
    ApprovalDecision,
    AuditRecord,
    DeadLetter,
    Decision,
    Record,
)
from schemas.topics import ACTIONS, APPROVALS, AUDIT, DEAD_LETTER
from streams.wiring.supervisor import Stack
from tests.integration.flow.helpers import TopicReader, send_mail_file


def test_an_approve_and_a_reject_from_two_replicas_run_the_action_once_and_refuse_the_second(
    stack: Stack, codec: Codec, samples_dir: Path
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    prefix = stack.settings.kafka.topic_prefix
    publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
    send_mail_file(publisher, tenant, samples_dir / "jenkins_restart.eml")

    actions = TopicReader(stack.bootstrap, codec, ACTIONS, prefix, alive=stack.check)

    def mine(records: list[Record]) -> list[ActionEvent]:
        return [r for r in records if isinstance(r, ActionEvent) and r.tenant == tenant]

    records = actions.wait_for(lambda rs: any(a.state is ActionState.AWAITING_APPROVAL for a in mine(rs)),
                               what="an action awaiting approval")
    waiting = next(a for a in mine(records) if a.state is ActionState.AWAITING_APPROVAL)
    key = f"{tenant}:{waiting.action_id}"
    # Each replica's in-memory claim let its click through: both decisions reach the approvals topic.
    for approver, verdict in (("slack:U1", Decision.APPROVE), ("slack:U2", Decision.REJECT)):
        publisher.publish_sync(APPROVALS, key, ApprovalDecision(
            tenant=tenant, action_id=waiting.action_id, decision=verdict, approver=approver, channel="slack",
            decided_at=datetime.now(UTC)))

    def states(rs: list[Record]) -> list[ActionState]:
        return [a.state for a in mine(rs) if a.action_id == waiting.action_id]

    actions.wait_for(lambda rs: ActionState.SUCCEEDED in states(rs), timeout=90, what="the approved action's run")

    letters = TopicReader(stack.bootstrap, codec, DEAD_LETTER, prefix, alive=stack.check)
    (refusal,) = [r for r in letters.wait_for(
        lambda rs: any(isinstance(r, DeadLetter) and r.tenant == tenant for r in rs), what="the refusal")
        if isinstance(r, DeadLetter) and r.tenant == tenant]
    assert refusal.stage == "approvals" and refusal.error_type == "ApprovalRefused"
    assert refusal.reason.startswith("already_decided: already decided by slack:U1 at "), refusal.reason
    assert "reject by slack:U2 changes nothing" in refusal.reason

    audit = TopicReader(stack.bootstrap, codec, AUDIT, prefix, alive=stack.check)
    audit.wait_for(lambda rs: any(isinstance(r, AuditRecord) and r.tenant == tenant
                                  and r.action == "approval_rejected" for r in rs), what="the refusal's audit record")
    (refused,) = [r for r in audit.records if isinstance(r, AuditRecord) and r.tenant == tenant
                  and r.action == "approval_rejected"]
    assert refused.actor == "slack:U2" and refused.subject_id == waiting.action_id
    assert refused.detail["reason"] == "already_decided"

    actions.poll(3.0)  # anything the second decision might have caused would show up by now
    seen = states(actions.records)
    assert seen.count(ActionState.APPROVED) == 1 and ActionState.REJECTED not in seen, seen
    assert seen.count(ActionState.RUNNING) == 1 and seen.count(ActionState.SUCCEEDED) == 1, seen
    for reader in (actions, letters, audit):
        reader.close()
    publisher.close_sync()
