"""A high-risk action waits for a human; the approval on the approvals topic releases it to the executor."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from policies.decision_signature import ApprovalKeys
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
    Risk,
)
from schemas.topics import ACTIONS, APPROVALS, AUDIT, DEAD_LETTER
from streams.wiring.supervisor import Stack
from tests.integration.flow.approval_helpers import wait_until_the_worker_waits
from tests.integration.flow.conftest import stack_for
from tests.integration.flow.helpers import TopicReader, send_mail_file
from tests.support.approval_keys import signed_decision

#: The executor runs a human-approved action only when its approver is one of the tenant's.
APPROVERS = {"t-approved": ["slack:U123"], "t-forged": ["slack:U123"]}


@pytest.fixture(scope="module")
def stack(broker: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """This module's worker + executor, with :data:`APPROVERS` configured (topic prefix of its own)."""
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    with stack_for(bootstrap, tmp_path_factory.mktemp("stack"),
                   extra_env={"RCAFLOW_APPROVALS__APPROVERS": json.dumps(APPROVERS)}) as running:
        yield running


def _actions(records: list[Record], tenant: str) -> list[ActionEvent]:
    return [r for r in records if isinstance(r, ActionEvent) and r.tenant == tenant]


def test_approved_high_risk_action_runs_once_and_a_second_click_changes_nothing(
    stack: Stack, codec: Codec, samples_dir: Path
) -> None:
    tenant = "t-approved"
    prefix = stack.settings.kafka.topic_prefix
    publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
    send_mail_file(publisher, tenant, samples_dir / "jenkins_restart.eml")

    reader = TopicReader(stack.bootstrap, codec, ACTIONS, prefix, alive=stack.check)
    records = reader.wait_for(
        lambda rs: any(a.state is ActionState.AWAITING_APPROVAL for a in _actions(rs, tenant)),
        what="an action awaiting approval",
    )
    waiting = next(a for a in _actions(records, tenant) if a.state is ActionState.AWAITING_APPROVAL)
    assert waiting.risk is Risk.HIGH and waiting.expires_at is not None
    wait_until_the_worker_waits(stack, f"{tenant}:{waiting.action_id}")

    decision = signed_decision(tenant, waiting.action_id, approver="slack:U123", claim_id="slack:0f3c9a")
    for _ in range(2):  # a replayed callback that two replicas both let through
        publisher.publish_sync(APPROVALS, f"{tenant}:{waiting.action_id}", decision)

    def states(rs: list[Record]) -> list[ActionState]:
        return [a.state for a in _actions(rs, tenant) if a.action_id == waiting.action_id]

    reader.wait_for(lambda rs: ActionState.SUCCEEDED in states(rs), timeout=90, what="the approved action's run")
    reader.poll(3.0)  # anything a second approval might have caused would show up by now
    seen = states(reader.records)
    assert seen.count(ActionState.APPROVED) == 1, seen
    assert seen.count(ActionState.RUNNING) == 1, seen
    assert seen.count(ActionState.SUCCEEDED) == 1, seen
    approved = next(a for a in _actions(reader.records, tenant)
                    if a.action_id == waiting.action_id and a.state is ActionState.APPROVED)
    assert approved.approver == "slack:U123"  # the audit names the approver from this field
    letters = TopicReader(stack.bootstrap, codec, DEAD_LETTER, prefix, alive=stack.check)
    (refusal,) = [r for r in letters.wait_for(
        lambda rs: any(isinstance(r, DeadLetter) and r.tenant == tenant for r in rs), what="the replay's refusal")
        if isinstance(r, DeadLetter) and r.tenant == tenant]
    assert refusal.reason.startswith("replayed: the slack request behind this approve by slack:U123"), refusal.reason
    letters.close()
    reader.close()
    publisher.close_sync()


def test_a_refused_approval_request_reaches_the_tenants_audit_chain(stack: Stack, codec: Codec) -> None:
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    prefix = stack.settings.kafka.topic_prefix
    publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
    detail = {"reason": "unknown_approver", "channel": "slack", "approver": "slack:U9", "action_id": "a-1"}
    letter = DeadLetter(tenant=tenant, stage="approvals", source_topic=APPROVALS.full_name(prefix),
                        payload=json.dumps(detail).encode(), reason="unknown_approver: slack:U9",
                        error_type="ApprovalRefused", at=datetime.now(UTC))
    publisher.publish_sync(DEAD_LETTER, APPROVALS.full_name(prefix), letter)
    audit = TopicReader(stack.bootstrap, codec, AUDIT, prefix, alive=stack.check)
    records = audit.wait_for(
        lambda rs: any(isinstance(r, AuditRecord) and r.tenant == tenant for r in rs), what="the refusal's audit record"
    )
    (record,) = [r for r in records if isinstance(r, AuditRecord) and r.tenant == tenant]
    assert record.action == "approval_rejected" and record.actor == "slack:U9"
    audit.close()
    publisher.close_sync()


def test_a_decision_the_api_did_not_sign_approves_nothing_and_is_dead_lettered_and_audited(
    stack: Stack, codec: Codec, samples_dir: Path
) -> None:
    """Anyone who can write the approvals topic used to approve in a real approver's name."""
    tenant = "t-forged"
    prefix = stack.settings.kafka.topic_prefix
    publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
    send_mail_file(publisher, tenant, samples_dir / "jenkins_restart.eml")
    reader = TopicReader(stack.bootstrap, codec, ACTIONS, prefix, alive=stack.check)
    records = reader.wait_for(
        lambda rs: any(a.state is ActionState.AWAITING_APPROVAL for a in _actions(rs, tenant)),
        what="an action awaiting approval",
    )
    waiting = next(a for a in _actions(records, tenant) if a.state is ActionState.AWAITING_APPROVAL)
    wait_until_the_worker_waits(stack, f"{tenant}:{waiting.action_id}")
    key = f"{tenant}:{waiting.action_id}"

    unsigned = ApprovalDecision(tenant=tenant, action_id=waiting.action_id, decision=Decision.APPROVE,
                                approver="slack:U123", channel="slack", decided_at=datetime.now(UTC))
    forged = signed_decision(tenant, waiting.action_id, approver="slack:U123",
                             keys=ApprovalKeys.from_text("an attacker's own key, long enough to be accepted"))
    altered = signed_decision(tenant, waiting.action_id, approver="slack:U666").model_copy(
        update={"approver": "slack:U123"})  # a genuine signature, another approver's name
    for bad in (unsigned, forged, altered):
        publisher.publish_sync(APPROVALS, key, bad)

    letters = TopicReader(stack.bootstrap, codec, DEAD_LETTER, prefix, alive=stack.check)

    def refusals(rs: list[Record]) -> list[DeadLetter]:
        return [r for r in rs if isinstance(r, DeadLetter) and r.tenant == tenant and r.stage == "approvals"]

    found = refusals(letters.wait_for(lambda rs: len(refusals(rs)) >= 3, what="three refused decisions"))
    assert [r.reason.split(":")[0] for r in found] == ["unsigned", "bad_signature", "bad_signature"]
    assert all(f"of action {waiting.action_id} by slack:U123" in r.reason for r in found)
    audit = TopicReader(stack.bootstrap, codec, AUDIT, prefix, alive=stack.check)

    def rejected_steps(rs: list[Record]) -> list[AuditRecord]:
        return [r for r in rs if isinstance(r, AuditRecord) and r.tenant == tenant
                and r.action == "approval_rejected"]

    steps = rejected_steps(audit.wait_for(lambda rs: len(rejected_steps(rs)) >= 3, what="their audit steps"))
    assert {s.detail["reason"] for s in steps} == {"unsigned", "bad_signature"}
    assert all(s.subject_id == waiting.action_id for s in steps)

    # Nothing moved: the genuine decision, published after them, is the one that approves.
    publisher.publish_sync(APPROVALS, key, signed_decision(tenant, waiting.action_id, approver="slack:U123"))
    states = reader.wait_for(
        lambda rs: any(a.action_id == waiting.action_id and a.state is ActionState.APPROVED
                       for a in _actions(rs, tenant)), what="the genuine approval")
    approved = [a for a in _actions(states, tenant)
                if a.action_id == waiting.action_id and a.state is ActionState.APPROVED]
    assert len(approved) == 1 and approved[0].approver == "slack:U123"
    for closing in (audit, letters, reader):
        closing.close()
    publisher.close_sync()
