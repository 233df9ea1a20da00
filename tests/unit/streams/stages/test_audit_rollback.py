"""A rollback is its own kind of step in the audit trail: the undo action and the undone action both say so."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.codec import make_codec
from schemas.records import ActionEvent, ActionState, AuditKind, AuditRecord, Risk
from streams.stages.audit import Audit, content_id

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def _audit(action: ActionEvent, offset: int) -> AuditRecord:
    result = Audit()(action, None, content_id(make_codec(None).encode(action, topic="actions")))
    (record,) = [o.record for o in result.outputs]
    assert isinstance(record, AuditRecord)
    return record


def test_rollback_steps_are_audited_as_rollbacks_and_name_what_they_undo() -> None:
    failed = ActionEvent(tenant="acme", action_id="a-1", incident_id="i-1", alert_class="vmalert_reload_failure",
                         name="restart_vmalert", tool="k8s", operation="rollout_restart", risk=Risk.HIGH,
                         state=ActionState.FAILED, dry_run=False, at=T0, on_failure="undo")
    undo = failed.model_copy(update={"action_id": "rb-1", "name": "restart_vmalert:rollback",
                                     "operation": "undo_restart", "state": ActionState.SUCCEEDED,
                                     "rollback_of": "a-1"})
    rolled_back = failed.model_copy(update={"state": ActionState.ROLLED_BACK, "result": "rolled back by rb-1"})

    assert _audit(failed, 1).kind is AuditKind.EXECUTION
    undo_record = _audit(undo, 2)
    assert undo_record.kind is AuditKind.ROLLBACK and undo_record.detail["rollback_of"] == "a-1"
    undone = _audit(rolled_back, 3)
    assert undone.kind is AuditKind.ROLLBACK and undone.action == "restart_vmalert:rolled_back"


def test_a_rollback_an_operator_asked_for_names_the_operator() -> None:
    asked = ActionEvent(tenant="acme", action_id="rb-1", incident_id="i-1", alert_class="vminsert_write_errors",
                        name="scale_vminsert:rollback", tool="k8s", operation="scale", risk=Risk.HIGH,
                        state=ActionState.APPROVED, at=T0, rollback_of="a-1",
                        reason="rollback of a-1 (scale_vminsert) requested by alice",
                        result="approved by alice via rcaflow rollback", approver="alice")
    record = _audit(asked, 4)
    assert record.kind is AuditKind.ROLLBACK and record.actor == "alice"
