"""Rollback records: how an action's recorded inverse becomes an action of its own, and back.

Used by the executor (automatic rollback after a failed check) and by
``rcaflow rollback`` (an operator undoes something rcaflow did). A rollback
record carries ``rollback_of`` and, in ``undo_action``/``undo_params``, the
operation it undoes, so whoever finishes it can write the original's
``rolled_back`` state without reading the original back.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from policies.decision_signature import DecisionKeys
from policies.recheck import ROLLBACK_SUFFIX
from schemas.records import ActionEvent, ActionState
from streams.errors import StreamsError

__all__ = ["ROLLBACK_SUFFIX", "RollbackRefusedError", "plan_rollback", "rollback_action", "rollback_id",
           "rolled_back"]

#: How long a rollback's signed decision stays valid for the executor to start it.
ROLLBACK_VALID_FOR = timedelta(hours=1)


class RollbackRefusedError(StreamsError):
    """This action cannot be rolled back (unknown, not finished, nothing recorded to undo, already undone)."""


def rollback_id(action_id: str) -> str:
    """The rollback's own id: derived, so asking twice (or a retry) names the same rollback, which runs once."""
    return hashlib.sha256(f"rollback\x1f{action_id}".encode()).hexdigest()[:24]


def rollback_action(original: ActionEvent, *, state: ActionState, reason: str, at: datetime, keys: DecisionKeys,
                    result: str | None = None, approver: str | None = None) -> ActionEvent:
    """The rollback of ``original``, whose finished record holds the inverse in ``undo_action``/``undo_params``.

    Signed with the decision key like any decision: whoever holds the key (the executor, an operator's
    ``rcaflow rollback``) authorises it, and the executor verifies it before running it.
    """
    if not original.undo_action:
        raise RollbackRefusedError(f"{original.action_id} recorded nothing to undo")
    tool, _, operation = original.undo_action.partition(".")
    unsigned = ActionEvent(
        tenant=original.tenant, action_id=rollback_id(original.action_id), incident_id=original.incident_id,
        alert_class=original.alert_class, name=f"{original.name}{ROLLBACK_SUFFIX}", tool=tool, operation=operation,
        params=dict(original.undo_params), risk=original.risk, state=state, dry_run=False, reason=reason,
        result=result, at=at, rollback_of=original.action_id, approver=approver,
        undo_action=f"{original.tool}.{original.operation}", undo_params=dict(original.params),
    )
    return keys.sign(unsigned, decided_at=at, valid_for=ROLLBACK_VALID_FOR)


def rolled_back(done: ActionEvent, *, at: datetime) -> ActionEvent:
    """The original action's ``rolled_back`` record, written once its rollback ``done`` succeeded for real."""
    if done.rollback_of is None or not done.undo_action:
        raise ValueError(f"{done.action_id} is not a rollback record")
    tool, _, operation = done.undo_action.partition(".")
    return ActionEvent(
        tenant=done.tenant, action_id=done.rollback_of, incident_id=done.incident_id, alert_class=done.alert_class,
        name=done.name.removesuffix(ROLLBACK_SUFFIX), tool=tool, operation=operation, params=dict(done.undo_params),
        risk=done.risk, state=ActionState.ROLLED_BACK, dry_run=False, reason=done.reason,
        result=f"rolled back by {done.action_id}: {done.result or ''}"[:4000], at=at,
    )


_FINISHED = frozenset({ActionState.SUCCEEDED, ActionState.FAILED})


def plan_rollback(history: list[ActionEvent], action_id: str, *, by: str, at: datetime,
                  keys: DecisionKeys) -> ActionEvent:
    """An approved rollback of ``action_id`` from its records (topic order), or why there cannot be one."""
    own = [r for r in history if r.action_id == action_id]
    if not own:
        raise RollbackRefusedError(f"no action {action_id} on the actions topic")
    latest = own[-1]
    if latest.rollback_of is not None:
        raise RollbackRefusedError(f"{action_id} is itself the rollback of {latest.rollback_of}")
    undone = [r for r in history if r.rollback_of == action_id]
    if latest.state is ActionState.ROLLED_BACK or undone:
        by_whom = undone[-1].action_id if undone else "an earlier rollback"
        state = undone[-1].state.value if undone else latest.state.value
        raise RollbackRefusedError(f"{action_id} is already being or has been rolled back by {by_whom} ({state})")
    if latest.state not in _FINISHED:
        raise RollbackRefusedError(f"{action_id} is {latest.state.value}; only a finished action can be rolled back")
    if latest.dry_run:
        raise RollbackRefusedError(f"{action_id} ran as a dry run: it changed nothing, there is nothing to undo")
    if not latest.undo_action:
        raise RollbackRefusedError(
            f"{action_id} ({latest.tool}.{latest.operation}) recorded nothing to undo: it changed nothing, or its "
            "effect cannot be reversed (a deleted pod, a reload); see its result"
        )
    who = by.strip()[:200]
    if not who:
        raise RollbackRefusedError("say who asks for the rollback (--by)")
    return rollback_action(latest, state=ActionState.APPROVED, at=at, keys=keys,
                           reason=f"rollback of {action_id} ({latest.name}) requested by {who}",
                           result=f"approved by {who} via rcaflow rollback", approver=who)
