"""An action whose partition moves while its ``running`` record is on the way runs once, on the new owner; one
whose partition stays runs once, where it was polled.

Executor A polls an approval on every partition of the actions topic and writes ``running`` for each; the proxy
in front of the real broker holds those Produce requests (A's producer, by ``client.id``) until the test lets them
through. Meanwhile executor B joins the group. The group rebalances incrementally (cooperative-sticky): the
partition B takes is revoked from A, the others stay with A.

- Moved: B's ledger pre-scan reads to the partition's end, which does not hold A's ``running`` record yet, so B
  runs the re-delivered approval. When A's record then lands, A must not run the action too
  (``PartitionMovedError``: its input's partition was revoked after the poll): without that check the target sees
  the action twice.
- Kept: nothing was revoked from A's other partitions, so once their ``running`` records land A runs those
  actions, once, and writes their outcome. With an eager rebalance (every partition revoked and handed back) or a
  revocation check that is not per partition, A left them unrun: settled ``failed: interrupted`` (eager, once it
  re-read its own approval) or never settled at all.

What is counted is the effect on the target: one fsynced line per run in a file (the test tool of
crashing_executor.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka.partitioner import murmur2
from confluent_kafka.admin import AdminClient

from executors import ConfirmPolicy, ToolRegistry
from executors.registry import DEFAULT_TOOLS
from producers.publisher import Delivery, KafkaPublisher, Publisher
from schemas.codec import Codec
from schemas.records import ActionEvent, ActionState, Record, Risk
from schemas.topics import ACTIONS, TopicSpec
from streams.executor.service import ExecutorService
from streams.wiring.topics_admin import ensure_topics
from tests.integration.flow.conftest import signed, verifier_for
from tests.integration.flow.helpers import TopicReader, committed_offsets
from tests.integration.flow.proxied_worker import wait_until
from tests.support.kafka_proxy import KafkaProxy

pytestmark = pytest.mark.integration

# Which partition B takes when it joins is the cooperative-sticky assignor's choice (one of the three): the test
# reads it from the group and puts an approval on every partition beforehand.
A_CONSUMER, B_CONSUMER = "executor-2-first-owner", "executor-1-next-owner"
A_PRODUCER, B_PRODUCER = "executor-2-producer", "executor-1-producer"
LEFT = "left for the partition's next owner"


def _action_id_on(partition: int, tenant: str) -> str:
    """An action id whose key the producers' murmur2 partitioner puts on ``partition`` of the actions topic."""
    for n in range(10_000):
        action_id = f"act-moved-{n}"
        if (murmur2(f"{tenant}:{action_id}".encode()) & 0x7FFFFFFF) % ACTIONS.partitions == partition:
            return action_id
    raise AssertionError(f"no action id lands on partition {partition}")


def _approved(tenant: str, action_id: str) -> ActionEvent:
    return signed(ActionEvent(tenant=tenant, action_id=action_id, incident_id="inc-1", alert_class="log_flood",
                              name="collect_diagnostics", tool="diagnostics", operation="collect",
                              params={"namespace": "insight-system", "workload": "fluent-bit-x7k2p"},
                              risk=Risk.READ, state=ActionState.APPROVED, at=datetime.now(UTC)))


def _events(records: list[Record], action_id: str) -> list[ActionEvent]:
    return [r for r in records if isinstance(r, ActionEvent) and r.action_id == action_id]


def _states(records: list[Record], action_id: str) -> list[ActionState]:
    return [r.state for r in _events(records, action_id)]


def _outcomes(records: list[Record], action_id: str) -> list[ActionState]:
    return [s for s in _states(records, action_id) if s in (ActionState.SUCCEEDED, ActionState.FAILED)]


def _runs(marks: Path, action_id: str) -> int:
    """How often the action took effect on the target (one line per run)."""
    return marks.read_text().splitlines().count(action_id) if marks.exists() else 0


def _owners(bootstrap: str, group: str, topic: str) -> dict[int, str]:
    """The client.id of the group member each partition of ``topic`` is assigned to now."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
    return {tp.partition: str(member.client_id)
            for member in described.members
            for tp in (member.assignment.topic_partitions if member.assignment else [])
            if tp.topic == topic}


class NotingPublisher:
    """The Publisher seam, unchanged, noting the running records it was handed: an approval whose ``running``
    was handed over has been polled (the test starts B only once A polled every approval)."""

    def __init__(self, inner: KafkaPublisher) -> None:
        self._inner = inner
        self.running: set[str] = set()

    async def publish(self, spec: TopicSpec, key: str, record: Record) -> Delivery:
        if isinstance(record, ActionEvent) and record.state is ActionState.RUNNING:
            self.running.add(record.action_id)
        return await self._inner.publish(spec, key, record)

    async def close(self) -> None:
        await self._inner.close()


def _executor(bootstrap: str, codec: Codec, publisher: Publisher, prefix: str, client_id: str,
              marks: Path, tenant: str) -> ExecutorService:
    registry = ToolRegistry({"marks": str(marks)}, tools={
        **DEFAULT_TOOLS, "diagnostics.collect": "tests.integration.flow.crashing_executor:MarkFile"})
    # Short windows, as in crash_windows: a run left ``running`` would be settled within seconds, not minutes.
    return ExecutorService(bootstrap=bootstrap, extra={"client.id": client_id}, codec=codec, publisher=publisher,
                           registry=registry, verifier=verifier_for(tenant), topic_prefix=prefix, dry_run=False,
                           confirm=ConfirmPolicy(within_s=1.0, every_s=0.1), stop_grace_s=1.0, abandon_margin_s=2.0)


@dataclass(frozen=True)
class Rebalanced:
    """What the actions topic, the target and A's log show after B joined while A's running records were held."""

    moved: dict[int, str]  # partition B took -> the action id on it
    kept: dict[int, str]  # partition A kept -> the action id on it
    records: list[Record]
    runs: dict[str, int]
    left_by_a: set[str]
    b_joined_at: datetime


def _b_joins_while_a_running_records_are_held(proxied: KafkaProxy, codec: Codec, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> Rebalanced:
    bootstrap = f"127.0.0.1:{proxied.port}"
    prefix = f"m{uuid.uuid4().hex[:8]}."
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    topic, group = ACTIONS.full_name(prefix), f"{prefix}rcaflow-executor"
    ensure_topics(bootstrap, prefix, [ACTIONS])
    marks = tmp_path / "marks"
    on = {p: _approved(tenant, _action_id_on(p, tenant)) for p in range(ACTIONS.partitions)}
    caplog.set_level(logging.INFO, logger="streams.executor.service")
    reader = TopicReader(bootstrap, codec, ACTIONS, prefix)
    owners: dict[int, str] = {}

    def left_by_a() -> set[str]:
        return {str(getattr(r, "action_id", "")) for r in caplog.records if LEFT in r.getMessage()}

    def outcome_of_each(partitions: set[int]) -> bool:
        reader.poll(0.3)
        return all(_outcomes(reader.records, on[p].action_id) for p in partitions)

    proxied.delay_produce_from(A_PRODUCER)  # A's records reach the broker only when the test says so
    try:
        async def scenario() -> datetime:
            feeder = KafkaPublisher(bootstrap, codec, prefix)
            # A's records wait at the proxy for as long as the rebalance and B's run take: its producer must not
            # give up on them meanwhile (a retry would only be held too), so its timeouts outlast the test's waits.
            patient = {"client.id": A_PRODUCER, "request.timeout.ms": 240_000, "socket.timeout.ms": 240_000}
            a_out = KafkaPublisher(bootstrap, codec, prefix, patient, delivery_timeout_ms=300_000)
            b_out = KafkaPublisher(bootstrap, codec, prefix, {"client.id": B_PRODUCER})
            a_noted = NotingPublisher(a_out)
            a = _executor(bootstrap, codec, a_noted, prefix, A_CONSUMER, marks, tenant)
            b = _executor(bootstrap, codec, b_out, prefix, B_CONSUMER, marks, tenant)
            runs: list[asyncio.Task[None]] = []
            try:
                for partition, action in on.items():  # all there before A starts: it polls them in one go
                    delivered = await feeder.publish(ACTIONS, f"{tenant}:{action.action_id}", action)
                    assert delivered.partition == partition
                runs.append(asyncio.create_task(a.run()))
                # A alone in the group polled the approvals and sent their running records: the proxy holds them.
                assert await asyncio.to_thread(proxied.delayed.wait, 120), "executor A never wrote running"
                every = {action.action_id for action in on.values()}
                await asyncio.to_thread(wait_until, lambda: a_noted.running == every,
                                        "executor A to poll every approval and send its running record")
                assert not any(_runs(marks, action.action_id) for action in on.values())
                b_joined_at = datetime.now(UTC)
                runs.append(asyncio.create_task(b.run()))

                def both_own_partitions() -> bool:
                    owners.clear()
                    owners.update(_owners(bootstrap, group, topic))
                    return len(owners) == ACTIONS.partitions and set(owners.values()) == {A_CONSUMER, B_CONSUMER}

                await asyncio.to_thread(wait_until, both_own_partitions, "executor B to take partitions from A")
                moved = {p for p, owner in owners.items() if owner == B_CONSUMER}
                await asyncio.to_thread(wait_until, lambda: outcome_of_each(moved),
                                        "executor B to run the re-delivered approvals")
                proxied.deliver_delayed()  # A's running records land, after B's outcomes
                kept = set(on) - moved
                await asyncio.to_thread(
                    wait_until, lambda: ({on[p].action_id for p in moved} <= left_by_a() and outcome_of_each(kept))
                    or any(_runs(marks, action.action_id) > 1 for action in on.values()),
                    "executor A to leave the moved actions and settle the kept ones (or run one twice)")

                def everything_committed() -> bool:
                    # Each owner handled every record of its partitions, A's late running records included.
                    reader.poll(0.3)
                    committed = committed_offsets(bootstrap, group, topic)
                    return all(committed.get(p, 0) >= len(_events(reader.records, action.action_id))
                               for p, action in on.items())

                await asyncio.to_thread(wait_until, everything_committed, "the owners to commit every partition")
                return b_joined_at
            finally:
                a.stop()
                b.stop()
                await asyncio.gather(*runs)
                proxied.deliver_delayed()
                for publisher in (feeder, a_out, b_out):
                    await asyncio.to_thread(publisher.close_sync, 5.0)

        b_joined_at = asyncio.run(scenario())
        reader.poll(1.0)
    finally:
        proxied.deliver_delayed()
        reader.close()
    return Rebalanced(
        moved={p: on[p].action_id for p, owner in owners.items() if owner == B_CONSUMER},
        kept={p: on[p].action_id for p, owner in owners.items() if owner == A_CONSUMER},
        records=reader.records, runs={action.action_id: _runs(marks, action.action_id) for action in on.values()},
        left_by_a=left_by_a(), b_joined_at=b_joined_at)


def test_an_action_whose_partition_moved_before_its_running_record_was_acked_runs_once_on_the_new_owner(
    proxied: KafkaProxy, codec: Codec, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen = _b_joins_while_a_running_records_are_held(proxied, codec, tmp_path, caplog)
    assert seen.moved, "executor B took no partition"
    for action_id in seen.moved.values():
        assert seen.runs[action_id] == 1, f"{action_id} took effect {seen.runs[action_id]} times"
        assert _outcomes(seen.records, action_id) == [ActionState.SUCCEEDED], \
            f"the actions topic shows {_states(seen.records, action_id)}"
        assert action_id in seen.left_by_a, f"executor A did not log that it {LEFT} ({action_id})"


def test_an_action_on_a_partition_its_executor_keeps_when_another_joins_runs_once_there(
    proxied: KafkaProxy, codec: Codec, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen = _b_joins_while_a_running_records_are_held(proxied, codec, tmp_path, caplog)
    assert seen.kept, "executor A kept no partition"
    for action_id in seen.kept.values():
        [running] = [e for e in _events(seen.records, action_id) if e.state is ActionState.RUNNING]
        # Started from an approval A polled before B joined: its partition went through the rebalance with the
        # running record held at the proxy.
        assert running.at < seen.b_joined_at, f"{action_id} was polled only after B joined"
        assert seen.runs[action_id] == 1, f"{action_id} took effect {seen.runs[action_id]} times"
        assert _outcomes(seen.records, action_id) == [ActionState.SUCCEEDED], \
            f"the actions topic shows {_states(seen.records, action_id)}: {_events(seen.records, action_id)[-1].result}"
        assert action_id not in seen.left_by_a, f"executor A {LEFT} {action_id}, a partition it kept"
