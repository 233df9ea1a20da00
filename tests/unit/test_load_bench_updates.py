"""The load benchmark's account of chat.update calls: zero is explained by what the run wrote, not left bare."""

from __future__ import annotations

from benchmarks.load_updates import UpdateTriggers
from schemas.records import ActionEvent, ActionState
from tests.unit.executors.notify.notify_helpers import actions, rca
from tests.unit.streams.notify.test_notifier import llm

SCOPE = "outside tenant scope: tenant tenant0 has no namespaces configured, so it is read-only"


def state(action: ActionEvent, new: ActionState, reason: str | None = None) -> ActionEvent:
    return action.model_copy(update={"state": new, "reason": reason or action.reason})


def test_a_run_whose_actions_were_all_refused_at_decide_expects_no_update_and_says_why() -> None:
    triggers = UpdateTriggers()
    triggers.rca(rca())  # the policy's triage: it is the first response, not an edit
    for action in actions():
        triggers.action(state(action, ActionState.REJECTED, SCOPE))
    report = triggers.report(updates=0)
    assert (report["llm_results"], report["decisions_after_waiting"], report["outcomes"]) == (0, 0, 0)
    assert report["actions_by_state"] == {"rejected": 2}
    assert report["rejected_for"] == {"outside tenant scope": 2}
    assert report["note"].startswith("no chat.update expected")
    assert "rejected 2" in report["note"] and "outside tenant scope" in report["note"]


def test_llm_results_decisions_on_waiting_actions_and_outcomes_each_count_once() -> None:
    waiting, diagnostics = actions()  # act-1 awaits approval; act-2 succeeded
    triggers = UpdateTriggers()
    triggers.rca(llm())
    # Read back in any order across partitions: the approval comes before the wait it ends.
    triggers.action(state(waiting, ActionState.APPROVED))
    triggers.action(waiting)
    triggers.action(state(diagnostics, ActionState.APPROVED))  # auto-approved at decide: in the first message
    triggers.action(diagnostics)
    assert (triggers.llm_results, triggers.decisions(), triggers.outcomes(), triggers.total()) == (1, 1, 1, 3)
    assert triggers.note(updates=3).startswith("3 chat.update for 3 events")


def test_triggers_without_any_update_are_called_lost() -> None:
    triggers = UpdateTriggers()
    triggers.action(actions()[1])  # an outcome
    assert "updates are being lost" in triggers.note(updates=0)
