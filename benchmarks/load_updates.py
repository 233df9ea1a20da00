"""Why a load run saw the ``chat.update`` calls it did: what in the run should have edited a first response.

The worker edits an incident's first response (docs/approvals.md, streams/notify/) when the LLM's second
opinion arrives, when an action that waited for approval is decided (approved, rejected, expired, withdrawn),
and when an action's outcome is known (succeeded, failed, rolled back). A load run whose tenants have no
scope gets every action rejected at decide ("outside tenant scope: … read-only"), shown in the first message
itself; with no LLM configured either, nothing is left to edit, and zero updates is the right count. This
module counts those triggers from the records the run wrote, so the report says which case it was instead
of a bare 0. Pure; unit-tested in tests/unit/test_load_bench_updates.py.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from schemas.records import ActionEvent, ActionState, Engine, RcaResult

#: States a decision on a waiting action ends in; shown by editing the message that offered the approval.
_DECIDED = frozenset({ActionState.APPROVED, ActionState.REJECTED, ActionState.EXPIRED, ActionState.WITHDRAWN})
#: Execution outcomes the message shows (streams.notify.requests.shows_outcome).
_OUTCOMES = frozenset({ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK})


@dataclass
class UpdateTriggers:
    """What a run wrote that edits a first response: LLM results, decisions on waiting actions, outcomes.

    Fed record by record while the topics are read once after the run (any order across partitions: the
    states of one action share its key, but a decision is counted only once its wait was seen too).
    """

    llm_results: int = 0
    #: Action records per state.
    states: Counter[str] = field(default_factory=Counter)
    #: Rejections per reason, up to its first colon ("outside tenant scope", "cooldown" …).
    rejected_for: Counter[str] = field(default_factory=Counter)
    _states_of: dict[str, set[ActionState]] = field(default_factory=dict)

    def rca(self, result: RcaResult) -> None:
        if result.engine is Engine.LLM:
            self.llm_results += 1

    def action(self, action: ActionEvent) -> None:
        self.states[action.state.value] += 1
        self._states_of.setdefault(action.action_id, set()).add(action.state)
        if action.state is ActionState.REJECTED:
            self.rejected_for[(action.reason or "no reason").split(":", 1)[0]] += 1

    def decisions(self) -> int:
        """Actions that waited for approval and were then decided (the decision edits the message)."""
        return sum(1 for states in self._states_of.values()
                   if ActionState.AWAITING_APPROVAL in states and states & _DECIDED)

    def outcomes(self) -> int:
        """Outcome records (each is shown by an edit, unless it arrived before the first message was out)."""
        return sum(n for state, n in self.states.items() if ActionState(state) in _OUTCOMES)

    def total(self) -> int:
        return self.llm_results + self.decisions() + self.outcomes()

    def report(self, updates: int) -> dict[str, Any]:
        """The report's ``chat_update_triggers``: the counts and one sentence on how they square with ``updates``."""
        return {"llm_results": self.llm_results, "decisions_after_waiting": self.decisions(),
                "outcomes": self.outcomes(), "actions_by_state": dict(sorted(self.states.items())),
                "rejected_for": dict(self.rejected_for.most_common()), "note": self.note(updates)}

    def note(self, updates: int) -> str:
        total = self.total()
        if total == 0:
            shown = ", ".join(f"{state} {n}" for state, n in sorted(self.states.items())) or "none"
            why = "; ".join(f"{n} {reason}" for reason, n in self.rejected_for.most_common(3))
            hint = (" (tenants with a scope exercise them: docs/performance.md, Sustained load)"
                    if "outside tenant scope" in self.rejected_for else "")
            return ("no chat.update expected: no LLM second opinion, no action waited for a decision, none ran "
                    f"(actions by state: {shown}{'; rejected: ' + why if why else ''}); every first response "
                    f"already shows its final state{hint}")
        if updates == 0:
            return (f"{total} events should have edited a first response, none did: updates are being lost "
                    "(or every one came before its first message, which then showed it)")
        return (f"{updates} chat.update for {total} events that edit a first response (fewer when an event "
                "came before its first message, or several arrived together)")
