"""The worker applies only decisions the API signed: writing to the approvals topic is not enough to approve."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policies.decision_signature import ApprovalKeys
from schemas.records import ActionEvent, ActionState, ApprovalDecision, AuditRecord, Decision, Risk
from streams.stages.approval import Approval, RejectionReason, refusal_letter, refuse_decision
from streams.stages.audit import Audit, content_id
from streams.stages.core import StageContext
from tests.support.approval_keys import APPROVAL_KEY, APPROVAL_KEYS, signed_decision

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
ATTACKER_KEYS = ApprovalKeys.from_text("an attacker's own approval key, long enough to pass")


def awaiting() -> dict[str, object]:
    return ActionEvent(tenant="acme", action_id="a-1", incident_id="i-1", alert_class="etcd_latency",
                       name="restart_etcd_member", tool="k8s", operation="delete_pod", risk=Risk.HIGH,
                       params={"namespace": "kube-system", "pod": "etcd-0"}, state=ActionState.AWAITING_APPROVAL,
                       at=T0, expires_at=T0 + timedelta(minutes=30)).model_dump(mode="json")


def approval(keys: ApprovalKeys | None = APPROVAL_KEYS) -> Approval:
    return Approval(context=StageContext(clock=lambda: T0 + timedelta(minutes=5)), approval_keys=keys)


def genuine(**changes: object) -> ApprovalDecision:
    return signed_decision("acme", "a-1", decided_at=T0 + timedelta(minutes=4), **changes)  # type: ignore[arg-type]


FORGERIES = {
    "unsigned": genuine().model_copy(update={"signature": None}),
    "another key": signed_decision("acme", "a-1", decided_at=T0, keys=ATTACKER_KEYS),
    "approver renamed": genuine(approver="slack:U7").model_copy(update={"approver": "slack:U1"}),
    "reject turned approve": genuine(decision=Decision.REJECT).model_copy(update={"decision": Decision.APPROVE}),
    "other action": signed_decision("acme", "a-2", decided_at=T0).model_copy(update={"action_id": "a-1"}),
    "not a signature": genuine().model_copy(update={"signature": "rca1.0123.abcd"}),
}


@pytest.mark.parametrize("forgery", FORGERIES.values(), ids=FORGERIES.keys())
def test_a_decision_the_api_did_not_sign_moves_nothing(forgery: ApprovalDecision) -> None:
    result = approval()(forgery, awaiting())

    assert result.outputs == [] and result.refused is None
    assert result.outcome in {RejectionReason.UNSIGNED.value, RejectionReason.BAD_SIGNATURE.value}


def test_the_refusal_is_dead_lettered_and_chained_into_the_tenants_audit_trail() -> None:
    forged = FORGERIES["approver renamed"]
    result = approval()(forged, awaiting())

    refusal = refuse_decision(forged, result.outcome, None, T0 + timedelta(minutes=5))
    letter = refusal_letter(refusal, source_topic="approvals")
    assert letter.stage == "approvals" and letter.tenant == "acme"
    assert letter.reason.startswith("bad_signature: approve of action a-1 by slack:U1 via slack refused by the "
                                    "worker: its approval signature does not verify")
    audited = Audit(context=StageContext(clock=lambda: T0))(letter, None, content_id(letter.model_dump_json().encode()))
    (step,) = [o.record for o in audited.outputs]
    assert isinstance(step, AuditRecord) and step.action == "approval_rejected"
    assert step.detail["reason"] == "bad_signature" and step.subject_id == "a-1"
    unsigned = refuse_decision(FORGERIES["unsigned"], "unsigned", None, T0)
    assert unsigned.reason is RejectionReason.UNSIGNED and "carries no approval signature" in unsigned.message


def test_a_genuine_decision_approves_and_a_rotated_key_still_verifies() -> None:
    (out,) = approval()(genuine(), awaiting()).outputs
    assert isinstance(out.record, ActionEvent) and out.record.state is ActionState.APPROVED

    rotated = ApprovalKeys.from_text("the next approval key, at least 32 bytes long", (APPROVAL_KEY,))
    (out,) = approval(rotated)(genuine(), awaiting()).outputs  # signed before the rotation
    assert isinstance(out.record, ActionEvent) and out.record.state is ActionState.APPROVED


def test_a_worker_without_the_approval_key_applies_no_decision() -> None:
    result = approval(None)(genuine(), awaiting())
    assert result.outputs == [] and result.outcome == RejectionReason.BAD_SIGNATURE.value
