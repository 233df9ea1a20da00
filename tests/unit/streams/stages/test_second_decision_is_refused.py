"""The worker acts on the first decision for an action; a later one is a refusal naming who decided, and when."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from schemas.records import ActionEvent, ActionState, ApprovalDecision, AuditRecord, Decision, Risk
from streams.stages.approval import (
    DECIDED_OUTCOMES,
    REFUSALS_STAGE,
    RejectionReason,
    apply_approval,
    forget_decisions,
    refusal_letter,
    refuse_decision,
    remember_decision,
)
from streams.stages.audit import Audit, content_id
from streams.stages.core import StageContext

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def awaiting() -> ActionEvent:
    return ActionEvent(tenant="acme", action_id="a-1", incident_id="i-1", alert_class="etcd_latency",
                       name="restart_etcd_member", tool="k8s", operation="delete_pod", risk=Risk.HIGH,
                       state=ActionState.AWAITING_APPROVAL, at=T0, expires_at=T0 + timedelta(minutes=30))


def decision(approver: str, verdict: Decision, channel: str = "slack") -> ApprovalDecision:
    return ApprovalDecision(tenant="acme", action_id="a-1", decision=verdict, approver=approver, channel=channel,
                            decided_at=T0 + timedelta(minutes=3))


def test_a_reject_after_an_approve_on_another_replica_is_refused_with_who_decided_and_when() -> None:
    first = apply_approval(awaiting(), decision("slack:U1", Decision.APPROVE), T0 + timedelta(minutes=3))
    assert isinstance(first, ActionEvent) and first.state.value in DECIDED_OUTCOMES
    remembered = json.loads(json.dumps(remember_decision(first, decision("slack:U1", Decision.APPROVE))))

    refusal = refuse_decision(decision("link:9f8e7d6c", Decision.REJECT, "link"), "not_pending", remembered,
                              T0 + timedelta(minutes=4))

    assert refusal.reason is RejectionReason.ALREADY_DECIDED and refusal.http_status == 409
    assert refusal.message.startswith("already decided by slack:U1 at 2026-11-25 03:03:00 UTC: approved via slack")
    assert "reject by link:9f8e7d6c changes nothing" in refusal.message
    assert (refusal.tenant, refusal.action_id, refusal.approver) == ("acme", "a-1", "link:9f8e7d6c")


def test_the_refusal_is_a_dead_letter_the_audit_agent_chains_under_the_second_approver() -> None:
    remembered = remember_decision(awaiting().model_copy(update={"state": ActionState.APPROVED}),
                                   decision("slack:U1", Decision.APPROVE))
    refusal = refuse_decision(decision("slack:U2", Decision.APPROVE), "not_pending", remembered, T0)
    letter = refusal_letter(refusal, source_topic="approvals")
    assert letter.stage == REFUSALS_STAGE and letter.tenant == "acme" and letter.error_type == "ApprovalRefused"
    assert letter.reason.startswith("already_decided: already decided by slack:U1")

    result = Audit(context=StageContext(clock=lambda: T0))(letter, None, content_id(letter.model_dump_json().encode()))
    (record,) = [o.record for o in result.outputs]
    assert isinstance(record, AuditRecord) and record.tenant == "acme"
    assert (record.action, record.actor, record.subject_id) == ("approval_rejected", "slack:U2", "a-1")
    assert record.detail["reason"] == "already_decided" and "slack:U1" in record.detail["message"]


def test_an_expiry_decided_by_the_clock_is_named_as_such() -> None:
    expired = awaiting().model_copy(update={"state": ActionState.EXPIRED, "at": T0 + timedelta(minutes=31)})
    refusal = refuse_decision(decision("slack:U1", Decision.APPROVE), "not_pending", remember_decision(expired),
                              T0 + timedelta(minutes=40))
    assert refusal.message.startswith("already decided by the approval window at 2026-11-25 03:31:00 UTC: expired")


def test_without_a_remembered_decision_the_refusal_says_the_action_is_not_waiting() -> None:
    refusal = refuse_decision(decision("slack:U1", Decision.APPROVE), "not_pending", None, T0)
    assert refusal.reason is RejectionReason.UNKNOWN_ACTION and "not awaiting approval" in refusal.message
    other = refuse_decision(decision("slack:U1", Decision.APPROVE), "wrong_tenant", None, T0)
    assert other.reason is RejectionReason.WRONG_TENANT


def test_remembered_decisions_are_forgotten_after_the_retention_only_in_owned_keys() -> None:
    old = remember_decision(awaiting().model_copy(update={"state": ActionState.APPROVED}))
    new = remember_decision(awaiting().model_copy(update={"state": ActionState.REJECTED,
                                                          "at": T0 + timedelta(hours=30)}))
    store = {"acme:a-1": old, "acme:a-2": new, "beta:a-3": old, "acme:a-4": {"at": "garbage"}}
    gone = forget_decisions(store, now=T0 + timedelta(hours=36), keep=timedelta(hours=24),
                            owned=lambda key: key.startswith("acme:"))
    assert sorted(gone) == ["acme:a-1", "acme:a-4"] and sorted(store) == ["acme:a-2", "beta:a-3"]
