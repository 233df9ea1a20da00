"""The worker's approval logic without a broker: decisions, expiry, and what cannot be decided."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from schemas.codec import make_codec
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
from streams.stages.approval import Approval
from streams.stages.audit import AUDITED, Audit, content_id, is_audited
from streams.stages.core import Position, StageContext
from streams.worker.edge import decode
from tests.support.approval_keys import APPROVAL_KEYS, signed_decision

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def _awaiting(expires_in: timedelta = timedelta(minutes=30)) -> ActionEvent:
    return ActionEvent(tenant="acme", action_id="a-1", incident_id="i-1", alert_class="etcd_latency",
                       name="restart_etcd_member", tool="k8s", operation="delete_pod", risk=Risk.HIGH,
                       state=ActionState.AWAITING_APPROVAL, at=T0, expires_at=T0 + expires_in)


def _approval(now: datetime) -> Approval:
    return Approval(context=StageContext(clock=lambda: now), approval_keys=APPROVAL_KEYS)


def _audit(record: ActionEvent | DeadLetter, now: datetime = T0) -> tuple[list[AuditRecord], dict[str, object] | None]:
    result = Audit(context=StageContext(clock=lambda: now))(record, None, content_id(record.model_dump_json().encode()))
    return [o.record for o in result.outputs if isinstance(o.record, AuditRecord)], result.state


def _decision(tenant: str = "acme", decision: Decision = Decision.APPROVE) -> ApprovalDecision:
    return signed_decision(tenant, "a-1", decision, decided_at=T0)


def _apply(approval: Approval, decision: ApprovalDecision, pending: ActionEvent | None) -> list[ActionEvent]:
    state = pending.model_dump(mode="json") if pending else None
    outs = approval(decision, state).outputs
    return [o.record for o in outs if isinstance(o.record, ActionEvent)]


def test_approve_and_reject_move_the_awaiting_action() -> None:
    approval = _approval(T0 + timedelta(minutes=5))
    (approved,) = _apply(approval, _decision(), _awaiting())
    assert approved.state is ActionState.APPROVED
    (rejected,) = _apply(approval, _decision(decision=Decision.REJECT), _awaiting())
    assert rejected.state is ActionState.REJECTED


def test_a_late_yes_expires_the_action_instead_of_running_it() -> None:
    (late,) = _apply(_approval(T0 + timedelta(hours=2)), _decision(), _awaiting())
    assert late.state is ActionState.EXPIRED


def test_decisions_that_cannot_apply_change_nothing() -> None:
    approval = _approval(T0 + timedelta(minutes=5))
    assert _apply(approval, _decision(tenant="other"), _awaiting()) == []  # across tenants
    assert _apply(approval, _decision(), None) == []  # nothing awaiting (already decided, unknown)


def test_the_timer_expires_only_what_is_past_its_window() -> None:
    approval = _approval(T0 + timedelta(minutes=45))
    due = [_awaiting(timedelta(minutes=30)).model_dump(mode="json"),
           _awaiting(timedelta(hours=3)).model_copy(update={"action_id": "a-2"}).model_dump(mode="json")]
    expired = [o.record for o in approval.expired(due)]
    assert [(a.action_id, a.state) for a in expired] == [("a-1", ActionState.EXPIRED)]  # type: ignore[attr-defined]


def test_the_audit_trail_names_the_approver_of_a_human_decision() -> None:
    approval = _approval(T0 + timedelta(minutes=5))
    (approved,) = _apply(approval, _decision(), _awaiting())
    (record,), _head = _audit(approved)
    assert record.kind.value == "approval"
    assert record.actor == "slack:U1"
    assert record.detail["result"].startswith("approved by slack:U1")


def test_the_approver_comes_from_the_record_field_never_from_the_result_text() -> None:
    approval = _approval(T0 + timedelta(minutes=5))
    (approved,) = _apply(approval, _decision(), _awaiting())
    assert approved.approver == "slack:U1"
    # The result is prose for people; an approver named only there (or contradicted there) is not believed.
    spoofed = approved.model_copy(update={"result": "approved by slack:UBOSS via slack"})
    (record,), _head = _audit(spoofed)
    assert (record.kind, record.actor, record.detail["approver"]) == (AuditKind.APPROVAL, "slack:U1", "slack:U1")
    unattributed = approved.model_copy(update={"approver": None})
    (record,), _head = _audit(unattributed)
    assert (record.kind, record.actor) == (AuditKind.DECISION, "decide")


def _letter(stage: str, payload: bytes) -> DeadLetter:
    return DeadLetter(tenant="acme", stage=stage, source_topic="approvals", payload=payload,
                      reason="unknown_approver: slack:U9 may not decide for acme", error_type="ApprovalRefused", at=T0)


def test_a_refused_approval_request_is_chained_into_the_tenants_audit_trail() -> None:
    detail = {"reason": "unknown_approver", "channel": "slack", "approver": "slack:U9", "action_id": "a-1",
              "message": "slack:U9 may not decide for acme"}
    letter = _letter("approvals", json.dumps(detail).encode())
    assert is_audited(letter) and letter.tenant == "acme"
    (record,), head = _audit(letter)
    assert (record.kind, record.action, record.actor, record.subject_id) == (
        AuditKind.APPROVAL, "approval_rejected", "slack:U9", "a-1")
    assert record.detail["reason"] == "unknown_approver"
    assert head is not None and head["record"]["hash"] == record.hash


def test_other_dead_letters_and_garbage_are_not_audited_and_do_not_loop() -> None:
    parse_failure = _letter("normalize", b"not a mail")
    assert not is_audited(parse_failure)
    assert _audit(parse_failure) == ([], None)
    # Bytes that are none of the audited records never reach the stage: the edge cannot decode them.
    assert all(decode(make_codec(None), b"\x00garbage", kind, Position("dead-letter", 0, 1)) is None
               for kind in AUDITED.values())
