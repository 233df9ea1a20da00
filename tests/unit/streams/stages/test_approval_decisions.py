"""apply_approval / expire: the state changes the worker applies to actions waiting for a human."""

from __future__ import annotations

from datetime import timedelta

import pytest

from executors.audit import AuditChains, verify
from schemas.records import ActionState, ApprovalDecision, AuditKind, Decision
from streams.stages.approval import (
    UNAUTHENTICATED_TENANT,
    Rejection,
    RejectionReason,
    apply_approval,
    audit_rejection,
    expire,
)
from tests.unit.streams.approval_helpers import NOW, action


def decision(verdict: Decision = Decision.APPROVE, *, tenant: str = "acme", action_id: str = "act-1",
             reason: str = "") -> ApprovalDecision:
    return ApprovalDecision(tenant=tenant, action_id=action_id, decision=verdict, approver="slack:U1",
                            channel="slack", decided_at=NOW, reason=reason)


def test_approve_moves_the_action_to_approved_and_names_who() -> None:
    result = apply_approval(action(), decision(), NOW)
    assert not isinstance(result, Rejection)
    assert result.state is ActionState.APPROVED and result.at == NOW
    assert result.result == "approved by slack:U1 via slack"
    assert result.params == action().params and result.dry_run


def test_reject_moves_the_action_to_rejected_with_the_reason() -> None:
    result = apply_approval(action(), decision(Decision.REJECT, reason="etcd is being defragmented"), NOW)
    assert not isinstance(result, Rejection)
    assert result.state is ActionState.REJECTED
    assert result.result == "rejected by slack:U1 via slack: etcd is being defragmented"


def test_a_decision_after_the_window_expires_the_action() -> None:
    late = NOW + timedelta(minutes=31)
    result = apply_approval(action(), decision(), late)
    assert not isinstance(result, Rejection)
    assert result.state is ActionState.EXPIRED and "after the approval window closed" in (result.result or "")


def test_a_decision_of_another_tenant_is_rejected_and_changes_nothing() -> None:
    result = apply_approval(action(), decision(tenant="other"), NOW)
    assert isinstance(result, Rejection)
    assert result.reason is RejectionReason.WRONG_TENANT and result.tenant == "acme"
    assert result.http_status == 403
    assert result.audit_detail()["reason"] == "wrong_tenant"


@pytest.mark.parametrize("state", [ActionState.APPROVED, ActionState.REJECTED, ActionState.EXPIRED,
                                   ActionState.RUNNING, ActionState.PROPOSED])
def test_only_actions_awaiting_approval_can_be_decided(state: ActionState) -> None:
    result = apply_approval(action(state=state), decision(), NOW)
    assert isinstance(result, Rejection) and result.reason is RejectionReason.ALREADY_DECIDED


def test_a_decision_for_another_action_is_refused() -> None:
    result = apply_approval(action(), decision(action_id="act-2"), NOW)
    assert isinstance(result, Rejection) and result.reason is RejectionReason.UNKNOWN_ACTION


def test_expire_only_touches_waiting_actions_past_their_window() -> None:
    assert expire(action(), NOW) is None
    assert expire(action(expires_at=None), NOW + timedelta(days=30)) is None
    assert expire(action(state=ActionState.APPROVED), NOW + timedelta(hours=1)) is None
    expired = expire(action(), NOW + timedelta(hours=1))
    assert expired is not None and expired.state is ActionState.EXPIRED
    assert expired.at == NOW + timedelta(hours=1) and "nobody decided" in (expired.result or "")


def test_a_rejection_becomes_an_audit_record_on_its_tenants_chain() -> None:
    chains = AuditChains()
    refused = apply_approval(action(), decision(tenant="other"), NOW)
    assert isinstance(refused, Rejection)
    record = audit_rejection(chains, refused)
    assert (record.tenant, record.seq, record.kind, record.action) == ("acme", 1, AuditKind.APPROVAL,
                                                                       "approval_rejected")
    assert record.actor == "slack:U1" and record.detail["reason"] == "wrong_tenant"
    anonymous = Rejection(reason=RejectionReason.BAD_SIGNATURE, message="slack: bad signature", channel="slack",
                          at=NOW)
    assert audit_rejection(chains, anonymous).tenant == UNAUTHENTICATED_TENANT
    assert verify([record]) == []
