"""The executor's bookkeeping on its own: offsets move only past a handled prefix; a started action never restarts."""

from __future__ import annotations

from datetime import UTC, datetime

from confluent_kafka import TopicPartition

from schemas.records import ActionEvent, ActionState, Risk
from streams.executor.ledger import ActionLedger
from streams.executor.offsets import OffsetTracker

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def _committable(tracker: OffsetTracker) -> dict[tuple[str, int], int]:
    return {(tp.topic, tp.partition): tp.offset for tp in tracker.take()}


def test_a_slow_action_holds_its_partitions_offset_until_it_is_done() -> None:
    tracker = OffsetTracker()
    slow = tracker.start("actions", 0, 10)  # a restart watched for minutes
    quick = tracker.start("actions", 0, 11)  # a silence, done at once
    other = tracker.start("actions", 1, 5)
    tracker.done("actions", 0, quick)
    tracker.done("actions", 1, other)
    # Partition 1 moves; partition 0 must not move past 10 while 10 still runs, or a crash would lose it.
    assert _committable(tracker) == {("actions", 1): 6}
    assert tracker.busy == 2  # both records of partition 0 still wait for their commit
    tracker.done("actions", 0, slow)
    assert _committable(tracker) == {("actions", 0): 12}  # past both, in one step
    assert _committable(tracker) == {}  # nothing moved since


def test_revoked_partitions_are_forgotten_so_the_next_owner_decides() -> None:
    tracker = OffsetTracker()
    entry = tracker.start("actions", 2, 40)
    tracker.forget([TopicPartition("actions", 2)])
    tracker.done("actions", 2, entry)  # finishing after the revoke commits nothing for the old owner
    assert _committable(tracker) == {} and tracker.busy == 0


def _action(state: ActionState) -> ActionEvent:
    return ActionEvent(tenant="acme", action_id="a-1", incident_id="i-1", alert_class="etcd_latency",
                       name="restart_etcd_member", tool="k8s", operation="delete_pod", risk=Risk.HIGH,
                       state=state, at=T0)


def test_an_action_that_started_stays_started_even_when_its_approval_is_read_again() -> None:
    ledger = ActionLedger()
    ledger.see(_action(ActionState.APPROVED))
    assert not ledger.already_started("a-1")
    ledger.see(_action(ActionState.RUNNING))
    ledger.see(_action(ActionState.APPROVED))  # the approval re-delivered after a crash
    assert ledger.already_started("a-1")
    assert ledger.still_running("a-1") is not None  # no outcome yet: a run to settle, never to repeat
    ledger.see(_action(ActionState.SUCCEEDED))
    assert ledger.already_started("a-1") and ledger.still_running("a-1") is None


def test_a_running_record_read_again_after_the_outcome_does_not_make_the_action_running_again() -> None:
    ledger = ActionLedger()
    for state in (ActionState.APPROVED, ActionState.RUNNING, ActionState.SUCCEEDED):
        ledger.see(_action(state))  # the pre-scan read the whole story
    ledger.see(_action(ActionState.RUNNING))  # then the main consumer re-delivers the old running record
    assert ledger.already_started("a-1") and ledger.still_running("a-1") is None


def test_the_ledger_forgets_only_finished_actions_no_valid_approval_can_reach() -> None:
    # forget_before(cutoff): cutoff = now - the longest approval validity - clock skew (the executor's loop).
    ledger = ActionLedger()
    written = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    ledger.see(_action(ActionState.APPROVED), written)
    ledger.see(_action(ActionState.RUNNING), written)
    ledger.see(_action(ActionState.SUCCEEDED), written)
    # Its approval may still be valid: a copy re-delivered now must find the action started.
    assert ledger.forget_before(written) == 0
    assert ledger.already_started("a-1")
    # Every approval of it has expired (the verifier refuses them): it is forgotten, the ledger stays small.
    assert ledger.forget_before(datetime(2026, 12, 7, 11, 0, tzinfo=UTC)) == 1
    assert not ledger.already_started("a-1") and len(ledger) == 0


def test_a_run_without_an_outcome_is_never_forgotten() -> None:
    ledger = ActionLedger()
    written = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    ledger.see(_action(ActionState.RUNNING), written)
    assert ledger.forget_before(datetime(2026, 12, 8, tzinfo=UTC)) == 0
    assert ledger.already_started("a-1") and ledger.still_running("a-1") is not None


def test_the_ledger_keeps_only_actions_that_started() -> None:
    # Its size is the memory the replay check costs: an action that never ran needs no entry.
    ledger = ActionLedger()
    for n in range(50):
        for state in (ActionState.PROPOSED, ActionState.AWAITING_APPROVAL, ActionState.APPROVED,
                      ActionState.REJECTED, ActionState.EXPIRED, ActionState.WITHDRAWN):
            ledger.see(_action(state).model_copy(update={"action_id": f"never-{n}"}), T0)
    assert len(ledger) == 0 and not ledger.already_started("never-1")
    ledger.see(_action(ActionState.APPROVED), T0)
    ledger.see(_action(ActionState.RUNNING), T0)
    assert len(ledger) == 1 and ledger.already_started("a-1")


def test_a_record_this_executor_wrote_without_reading_it_back_is_forgotten_too() -> None:
    # A rollback's records may lie on a partition another executor reads: this one never learns their broker
    # time, and its entry must still leave once the window is over, by the record's own time.
    ledger = ActionLedger()
    written = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    ledger.see(_action(ActionState.RUNNING).model_copy(update={"at": written}))
    ledger.see(_action(ActionState.SUCCEEDED).model_copy(update={"at": written}))
    assert ledger.forget_before(written) == 0 and ledger.already_started("a-1")
    assert ledger.forget_before(datetime(2026, 12, 7, 11, 0, tzinfo=UTC)) == 1 and len(ledger) == 0


def test_the_ledger_tells_a_copy_of_the_starting_approval_from_another_decision() -> None:
    ledger = ActionLedger()
    ledger.see(_action(ActionState.RUNNING), T0)
    ledger.started_at("a-1", 0, 7, "rcf1.k1.first-decision")
    ledger.started_at("a-1", 0, 9, "rcf1.k1.later-running-record")  # the first running record is the start
    assert not ledger.started_by_another("a-1", "rcf1.k1.first-decision")  # a copy: a replay
    assert ledger.started_by_another("a-1", "rcf1.k1.second-decision")  # the decider deciding again
    assert not ledger.started_by_another("unknown", "rcf1.k1.first-decision")
    assert ledger.after_start("a-1", 0, 8) and not ledger.after_start("a-1", 0, 7)
