"""The worker's approval logic without a broker: decisions, expiry, and what cannot be decided."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from schemas.records import (
    ActionEvent,
    ActionState,
    ApprovalDecision,
    AuditKind,
    AuditRecord,
    DeadLetter,
    Decision,
    Risk,
)
from streams.pipeline import Pipeline, Position
from streams.runtime import build_pipeline
from streams.settings import Settings

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def _awaiting(expires_in: timedelta = timedelta(minutes=30)) -> ActionEvent:
    return ActionEvent(tenant="acme", action_id="a-1", incident_id="i-1", alert_class="etcd_latency",
                       name="restart_etcd_member", tool="k8s", operation="delete_pod", risk=Risk.HIGH,
                       state=ActionState.AWAITING_APPROVAL, at=T0, expires_at=T0 + expires_in)


def _pipeline(now: datetime) -> Pipeline:
    pipeline = build_pipeline(Settings())
    pipeline.clock = lambda: now
    return pipeline


def _decision(tenant: str = "acme", decision: Decision = Decision.APPROVE) -> ApprovalDecision:
    return ApprovalDecision(tenant=tenant, action_id="a-1", decision=decision, approver="slack:U1",
                            channel="slack", decided_at=T0)


def _apply(pipeline: Pipeline, decision: ApprovalDecision, pending: ActionEvent | None) -> list[ActionEvent]:
    value = pipeline.codec.encode(decision, topic="approvals")
    state = pending.model_dump(mode="json") if pending else None
    outs = pipeline.approval(value, state, Position("approvals", 0, 1)).outputs
    return [o.record for o in outs if isinstance(o.record, ActionEvent)]


def test_approve_and_reject_move_the_awaiting_action() -> None:
    pipeline = _pipeline(T0 + timedelta(minutes=5))
    (approved,) = _apply(pipeline, _decision(), _awaiting())
    assert approved.state is ActionState.APPROVED
    (rejected,) = _apply(pipeline, _decision(decision=Decision.REJECT), _awaiting())
    assert rejected.state is ActionState.REJECTED


def test_a_late_yes_expires_the_action_instead_of_running_it() -> None:
    (late,) = _apply(_pipeline(T0 + timedelta(hours=2)), _decision(), _awaiting())
    assert late.state is ActionState.EXPIRED


def test_decisions_that_cannot_apply_change_nothing() -> None:
    pipeline = _pipeline(T0 + timedelta(minutes=5))
    assert _apply(pipeline, _decision(tenant="other"), _awaiting()) == []  # across tenants
    assert _apply(pipeline, _decision(), None) == []  # nothing awaiting (already decided, unknown)


def test_the_timer_expires_only_what_is_past_its_window() -> None:
    pipeline = _pipeline(T0 + timedelta(minutes=45))
    due = [_awaiting(timedelta(minutes=30)).model_dump(mode="json"),
           _awaiting(timedelta(hours=3)).model_copy(update={"action_id": "a-2"}).model_dump(mode="json")]
    expired = [o.record for o in pipeline.expired(due)]
    assert [(a.action_id, a.state) for a in expired] == [("a-1", ActionState.EXPIRED)]  # type: ignore[attr-defined]


def test_the_audit_trail_names_the_approver_of_a_human_decision() -> None:
    pipeline = _pipeline(T0 + timedelta(minutes=5))
    (approved,) = _apply(pipeline, _decision(), _awaiting())
    value = pipeline.codec.encode(approved, topic="actions")
    result, _head = pipeline.audit(value, None, Position("actions", 0, 9))
    (record,) = [o.record for o in result.outputs]
    assert record.kind.value == "approval"  # type: ignore[attr-defined]
    assert record.actor == "slack:U1"  # type: ignore[attr-defined]
    assert record.detail["result"].startswith("approved by slack:U1")  # type: ignore[attr-defined]


def _letter(stage: str, payload: bytes) -> DeadLetter:
    return DeadLetter(tenant="acme", stage=stage, source_topic="approvals", payload=payload,
                      reason="unknown_approver: slack:U9 may not decide for acme", error_type="ApprovalRefused", at=T0)


def test_a_refused_approval_request_is_chained_into_the_tenants_audit_trail() -> None:
    pipeline = _pipeline(T0)
    detail = {"reason": "unknown_approver", "channel": "slack", "approver": "slack:U9", "action_id": "a-1",
              "message": "slack:U9 may not decide for acme"}
    value = pipeline.codec.encode(_letter("approvals", json.dumps(detail).encode()), topic="dead-letter")
    assert pipeline.tenant_of_action(value) == "acme"
    result, head = pipeline.audit(value, None, Position("dead-letter", 1, 4))
    (record,) = [o.record for o in result.outputs]
    assert isinstance(record, AuditRecord)
    assert (record.kind, record.action, record.actor, record.subject_id) == (
        AuditKind.APPROVAL, "approval_rejected", "slack:U9", "a-1")
    assert record.detail["reason"] == "unknown_approver"
    assert head is not None and head["record"]["hash"] == record.hash


def test_other_dead_letters_and_garbage_are_not_audited_and_do_not_loop() -> None:
    pipeline = _pipeline(T0)
    parse_failure = pipeline.codec.encode(_letter("normalize", b"not a mail"), topic="dead-letter")
    for value in (parse_failure, b"\x00garbage"):
        result, head = pipeline.audit(value, None, Position("dead-letter", 0, 1))
        assert result.outputs == [] and head is None
