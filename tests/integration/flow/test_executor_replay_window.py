"""A signed approval stays valid for a while: re-published after its run, it must not run a second time.

Replayed after the executor committed past the run (the run lies below the committed offset, where the old
pre-scan never looked), and altered after the run: neither runs; each is kept in dead-letter with its reason and
audited by a ``rejected`` record under a refusal id of its own, so the action's own state stays ``succeeded``.
Decided again by a decider (a new signature: the worker after a crash) it does not run either, and is only logged.
"""

from __future__ import annotations

import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path

from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import ActionEvent, ActionState, DeadLetter, Record, Risk
from schemas.topics import ACTIONS, DEAD_LETTER
from tests.integration.flow.conftest import signed, stack_for
from tests.integration.flow.helpers import TopicReader, committed_offsets


def _approved(tenant: str, action_id: str) -> ActionEvent:
    return signed(ActionEvent(tenant=tenant, action_id=action_id, incident_id="inc-1", alert_class="log_flood",
                              name="collect_diagnostics", tool="diagnostics", operation="collect",
                              params={"namespace": "insight-system", "workload": "fluent-bit-x7k2p"},
                              risk=Risk.READ, state=ActionState.APPROVED, at=datetime.now(UTC)))


def _of(records: list[Record], action_id: str) -> list[ActionEvent]:
    return [r for r in records if isinstance(r, ActionEvent) and r.action_id == action_id]


def test_a_valid_approval_replayed_after_a_restart_does_not_run_again(
    broker: object, codec: Codec, tmp_path: Path
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    stack = stack_for(broker.bootstrap, tmp_path, roles=())  # type: ignore[attr-defined]
    with stack:
        prefix = stack.settings.kafka.topic_prefix
        publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
        letters = TopicReader(stack.bootstrap, codec, DEAD_LETTER, prefix, alive=stack.check)
        reader = TopicReader(stack.bootstrap, codec, ACTIONS, prefix, alive=stack.check)
        action_id, key = "act-replayed", f"{tenant}:act-replayed"
        approved = _approved(tenant, action_id)
        first = publisher.publish_sync(ACTIONS, key, approved)

        executor = stack.start_role("executor")
        reader.wait_for(lambda rs: ActionState.SUCCEEDED in [a.state for a in _of(rs, action_id)],
                        what="the first run")
        # An altered copy (another workload, the same signature) written after the run started: forged.
        altered = approved.model_copy(update={"params": {**approved.params, "workload": "etcd-0"}})
        publisher.publish_sync(ACTIONS, key, altered)
        letters.wait_for(lambda rs: any(isinstance(r, DeadLetter) and r.tenant == tenant for r in rs),
                         what="the altered copy's dead letter")
        executor.send_signal(signal.SIGTERM)
        assert executor.wait(30) == 0
        (running,) = [a for a in _of(reader.records, action_id) if a.state is ActionState.RUNNING]
        # The run is below the committed offset now: a pre-scan from there alone would not see it.
        reader.poll(1.0)
        group = f"{prefix}{stack.settings.executor.group_id}"
        assert committed_offsets(stack.bootstrap, group, first.topic)[first.partition] > first.offset + 2

        publisher.publish_sync(ACTIONS, key, approved)  # the genuine record again, still valid for an hour
        stack.start_role("executor")
        letters.wait_for(lambda rs: len([r for r in rs if isinstance(r, DeadLetter) and r.tenant == tenant]) >= 2,
                         what="the replay's dead letter")
        reader.poll(2.0)  # a wrong second run would show up by now

        states = [a.state for a in _of(reader.records, action_id)]
        assert states == [ActionState.APPROVED, ActionState.RUNNING, ActionState.SUCCEEDED,
                          ActionState.APPROVED, ActionState.APPROVED], states
        assert running.action_id == action_id
        forged, replayed = [r for r in letters.records if isinstance(r, DeadLetter) and r.tenant == tenant]
        assert forged.stage == replayed.stage == "executor"
        assert forged.reason.startswith("bad_signature: "), forged.reason
        assert replayed.reason.startswith("replayed: ") and "written after the action had started" in replayed.reason
        assert codec.decode(replayed.payload, ActionEvent, topic=first.topic) == approved  # kept whole
        # The audit steps: rejected records under refusal ids; the action itself stays succeeded.
        refusals = [r for r in reader.records if isinstance(r, ActionEvent) and r.tenant == tenant
                    and r.action_id.startswith(f"{action_id}:refused@")]
        assert [r.state for r in refusals] == [ActionState.REJECTED, ActionState.REJECTED]
        assert [r.reason.split(")")[0] for r in refusals] == ["refused by the executor (bad_signature",
                                                             "refused by the executor (replayed"]

        # The worker deciding the same analysis again after a crash (at-least-once): a valid decision with a
        # signature of its own, written after the run. Not a replay: no dead letter, and still no second run.
        # A forged copy behind it on the same partition shows when the executor has handled it.
        again = signed(approved.model_copy(update={"signature": None}), decided_at=datetime.now(UTC))
        assert again.signature != approved.signature
        publisher.publish_sync(ACTIONS, key, again)
        publisher.publish_sync(ACTIONS, key, altered)
        letters.wait_for(lambda rs: len([r for r in rs if isinstance(r, DeadLetter) and r.tenant == tenant]) >= 3,
                         what="the dead letter of the forged copy behind the re-decision")
        third = [r for r in letters.records if isinstance(r, DeadLetter) and r.tenant == tenant][2:]
        assert [r.reason.split(":")[0] for r in third] == ["bad_signature"]
        assert [a.state for a in _of(reader.records, action_id)].count(ActionState.RUNNING) == 1
        reader.close()
        letters.close()
        publisher.close_sync()
