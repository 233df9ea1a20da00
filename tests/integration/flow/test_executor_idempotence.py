"""The executor's crash window: effect done, offset not committed. A restarted executor must not run it again."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import ActionEvent, ActionState, Record, Risk
from schemas.topics import ACTIONS
from tests.integration.flow.conftest import signed, stack_for
from tests.integration.flow.helpers import TopicReader


def _action(tenant: str, action_id: str, state: ActionState, at: datetime | None = None) -> ActionEvent:
    """Signed as the worker signs what the policy approves (the executor runs nothing unsigned)."""
    return signed(ActionEvent(tenant=tenant, action_id=action_id, incident_id="inc-1", alert_class="log_flood",
                              name="collect_diagnostics", tool="diagnostics", operation="collect",
                              params={"namespace": "insight-system", "workload": "fluent-bit-x7k2p"},
                              risk=Risk.READ, state=state, at=at or datetime.now(UTC)))


def _states(records: list[Record], action_id: str) -> list[ActionState]:
    return [r.state for r in records if isinstance(r, ActionEvent) and r.action_id == action_id]


def test_restarted_executor_skips_actions_that_already_started(
    broker: object, codec: Codec, tmp_path: Path
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    stack = stack_for(broker.bootstrap, tmp_path, roles=())  # type: ignore[attr-defined]
    with stack:
        prefix = stack.settings.kafka.topic_prefix
        publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
        # What a crashed executor leaves behind: the approval (its offset never committed), the
        # "running" it wrote before the side effect, and for one action the outcome too.
        done, interrupted, fresh = "act-done", "act-interrupted", "act-fresh"
        abandoned = "act-abandoned"  # left running two hours ago: no live executor can still be on it
        for action_id, states in (
            (done, [ActionState.APPROVED, ActionState.RUNNING, ActionState.SUCCEEDED]),
            (interrupted, [ActionState.APPROVED, ActionState.RUNNING]),
            (fresh, [ActionState.APPROVED]),
            (abandoned, [ActionState.APPROVED, ActionState.RUNNING]),
        ):
            for state in states:
                at = datetime.now(UTC) - timedelta(hours=2) if action_id == abandoned else None
                publisher.publish_sync(ACTIONS, f"{tenant}:{action_id}", _action(tenant, action_id, state, at))

        stack.start_role("executor")
        reader = TopicReader(stack.bootstrap, codec, ACTIONS, prefix, alive=stack.check)
        reader.wait_for(lambda rs: ActionState.SUCCEEDED in _states(rs, fresh), what="the fresh action's run")
        reader.wait_for(lambda rs: ActionState.FAILED in _states(rs, abandoned), what="the abandoned run settled")
        time.sleep(2.0)  # give a wrong re-run of the other two every chance to show up
        reader.poll(1.0)
        assert _states(reader.records, fresh) == [ActionState.APPROVED, ActionState.RUNNING, ActionState.SUCCEEDED]
        assert _states(reader.records, done) == [ActionState.APPROVED, ActionState.RUNNING, ActionState.SUCCEEDED]
        # Still within its window: another executor might be finishing it, so nothing is written yet.
        assert _states(reader.records, interrupted) == [ActionState.APPROVED, ActionState.RUNNING]
        assert _states(reader.records, abandoned) == [ActionState.APPROVED, ActionState.RUNNING, ActionState.FAILED]
        last = [r for r in reader.records if isinstance(r, ActionEvent) and r.action_id == abandoned][-1]
        assert isinstance(last, ActionEvent) and (last.result or "").startswith("interrupted: the executor stopped")
        reader.close()
        publisher.close_sync()
