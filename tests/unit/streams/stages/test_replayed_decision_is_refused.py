"""Two replicas that both let the same captured request through: the worker keeps the first, refuses the copy."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from schemas.records import ActionEvent, ActionState, ApprovalDecision, Decision, Risk
from streams.stages.approval import RejectionReason, apply_approval, refusal_letter, refuse_decision, remember_decision

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def awaiting() -> ActionEvent:
    return ActionEvent(tenant="acme", action_id="a-1", incident_id="i-1", alert_class="etcd_latency",
                       name="restart_etcd_member", tool="k8s", operation="delete_pod", risk=Risk.HIGH,
                       state=ActionState.AWAITING_APPROVAL, at=T0, expires_at=T0 + timedelta(minutes=30))


def decision(claim_id: str, verdict: Decision = Decision.APPROVE) -> ApprovalDecision:
    return ApprovalDecision(tenant="acme", action_id="a-1", decision=verdict, approver="link:alice@acme.example",
                            channel="link", decided_at=T0 + timedelta(minutes=3), claim_id=claim_id)


def test_a_second_decision_spending_the_same_credential_is_refused_as_a_replay() -> None:
    first = decision("link:5f1c")
    moved = apply_approval(awaiting(), first, T0 + timedelta(minutes=3))
    assert isinstance(moved, ActionEvent)
    remembered = json.loads(json.dumps(remember_decision(moved, first)))  # as the Faust table keeps it

    refusal = refuse_decision(decision("link:5f1c"), "not_pending", remembered, T0 + timedelta(minutes=4))

    assert refusal.reason is RejectionReason.REPLAYED and refusal.http_status == 409
    assert refusal.message.startswith("the link request behind this approve by link:alice@acme.example "
                                      "was already used at 2026-11-25 03:03:00 UTC (approved)")
    letter = refusal_letter(refusal, source_topic="approvals")
    assert letter.reason.startswith("replayed: ") and letter.tenant == "acme"


def test_a_second_decision_with_its_own_credential_is_refused_as_already_decided() -> None:
    first = decision("link:5f1c")
    moved = apply_approval(awaiting(), first, T0 + timedelta(minutes=3))
    assert isinstance(moved, ActionEvent)
    refusal = refuse_decision(decision("slack:77aa", Decision.REJECT), "not_pending",
                              remember_decision(moved, first), T0 + timedelta(minutes=4))
    assert refusal.reason is RejectionReason.ALREADY_DECIDED
