"""What `rcaflow rollback` agrees to undo, and what it refuses with a reason an operator can act on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from policies.decision_signature import DecisionKeys
from schemas.records import ActionEvent, ActionState, Risk
from streams.executor.rollbacks import RollbackRefusedError, plan_rollback, rollback_id, rolled_back

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
KEYS = DecisionKeys.from_text("k" * 40)
SCALE = {"namespace": "insight-system", "kind": "deployment", "name": "vminsert", "replicas": "6"}


def _history(*states: ActionState, dry_run: bool = False, undo: bool = True) -> list[ActionEvent]:
    base = ActionEvent(tenant="acme", action_id="a-1", incident_id="i-1", alert_class="vminsert_write_errors",
                       name="scale_vminsert", tool="k8s", operation="scale", params=SCALE, risk=Risk.HIGH,
                       state=ActionState.APPROVED, dry_run=dry_run, at=T0)
    records = [base]
    for state in states:
        update: dict[str, object] = {"state": state}
        if state is ActionState.SUCCEEDED and undo:
            update.update(undo_action="k8s.scale", undo_params={**SCALE, "replicas": "2"})
        records.append(base.model_copy(update=update))
    return records


def test_a_finished_real_run_with_a_recorded_inverse_becomes_an_approved_rollback() -> None:
    plan = plan_rollback(_history(ActionState.RUNNING, ActionState.SUCCEEDED), "a-1", by="alice", at=T0,
                         keys=KEYS)
    assert plan.state is ActionState.APPROVED and plan.action_id == rollback_id("a-1")
    assert (plan.tool, plan.operation, plan.params["replicas"]) == ("k8s", "scale", "2")
    assert plan.rollback_of == "a-1" and plan.risk is Risk.HIGH
    assert plan.result == "approved by alice via rcaflow rollback"
    # It names what it undoes, so the executor can mark the original rolled back without reading it again.
    done = plan.model_copy(update={"state": ActionState.SUCCEEDED, "result": "scaled back", "dry_run": False})
    original = rolled_back(done, at=T0)
    assert (original.action_id, original.name, original.state) == ("a-1", "scale_vminsert", ActionState.ROLLED_BACK)
    assert original.params == SCALE
    assert (original.result or "").startswith(f"rolled back by {plan.action_id}")


@pytest.mark.parametrize(("history", "action_id", "why"), [
    (_history(ActionState.RUNNING, ActionState.SUCCEEDED), "a-9", "no action a-9"),
    (_history(ActionState.RUNNING), "a-1", "a-1 is running; only a finished action"),
    (_history(ActionState.RUNNING, ActionState.SUCCEEDED, dry_run=True), "a-1", "ran as a dry run"),
    (_history(ActionState.RUNNING, ActionState.SUCCEEDED, undo=False), "a-1", "recorded nothing to undo"),
    (_history(ActionState.RUNNING, ActionState.FAILED, ActionState.ROLLED_BACK), "a-1", "already"),
])
def test_what_cannot_be_rolled_back_is_refused_with_the_reason(
    history: list[ActionEvent], action_id: str, why: str
) -> None:
    with pytest.raises(RollbackRefusedError, match=why):
        plan_rollback(history, action_id, by="alice", at=T0, keys=KEYS)


def test_a_second_request_while_the_first_is_under_way_is_refused() -> None:
    history = _history(ActionState.RUNNING, ActionState.SUCCEEDED)
    history.append(plan_rollback(history, "a-1", by="alice", at=T0, keys=KEYS))
    with pytest.raises(RollbackRefusedError, match=f"already being or has been rolled back by {rollback_id('a-1')}"):
        plan_rollback(history, "a-1", by="bob", at=T0, keys=KEYS)
    with pytest.raises(RollbackRefusedError, match="itself the rollback of a-1"):
        plan_rollback(history, rollback_id("a-1"), by="bob", at=T0, keys=KEYS)


def test_the_requester_must_be_named() -> None:
    with pytest.raises(RollbackRefusedError, match="--by"):
        plan_rollback(_history(ActionState.RUNNING, ActionState.SUCCEEDED), "a-1", by="  ", at=T0,
                      keys=KEYS)
