"""What the executor knows of each action from the actions topic: has it started, is it still running."""

from __future__ import annotations

from schemas.records import ActionEvent, ActionState

_AFTER_APPROVAL = frozenset(
    {ActionState.RUNNING, ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK}
)



class ActionLedger:
    """Latest known state per action id, as read from the actions topic (and the record of each still running)."""

    def __init__(self) -> None:
        self._state: dict[str, ActionState] = {}
        self._running: dict[str, ActionEvent] = {}

    def see(self, action: ActionEvent) -> None:
        known = self._state.get(action.action_id)
        if known in _AFTER_APPROVAL and action.state not in _AFTER_APPROVAL:
            return  # an old approval re-read after the run started must not hide the run
        self._state[action.action_id] = action.state
        if action.state is ActionState.RUNNING:
            self._running[action.action_id] = action
        else:
            self._running.pop(action.action_id, None)

    def already_started(self, action_id: str) -> bool:
        return self._state.get(action_id) in _AFTER_APPROVAL

    def still_running(self, action_id: str) -> ActionEvent | None:
        """The ``running`` record of an action that has no outcome yet, if that is where it stands."""
        return self._running.get(action_id)
