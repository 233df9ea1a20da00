"""An action whose partition moves while its ``running`` record is on the way runs once, on the new owner.

Executor A polls an approval and writes ``running``; the proxy in front of the real broker holds that Produce
request (A's producer, by ``client.id``) until the test lets it through. Meanwhile executor B joins the group and
the partition moves to B. B's ledger pre-scan reads to the partition's end, which does not hold A's ``running``
record yet, so B runs the re-delivered approval. When A's record then lands, A must not run the action too
(``PartitionMovedError``: its input was polled before the revocation): without that check the target sees the
action twice. What is counted is the effect on the target: one fsynced line per run in a file (the test tool of
crashing_executor.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka.partitioner import murmur2
from confluent_kafka.admin import AdminClient

from executors import ConfirmPolicy, ToolRegistry
from executors.registry import DEFAULT_TOOLS
from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import ActionEvent, ActionState, Record, Risk
from schemas.topics import ACTIONS
from streams.executor.service import ExecutorService
from streams.wiring.topics_admin import ensure_topics
from tests.integration.flow.conftest import signed, verifier_for
from tests.integration.flow.helpers import TopicReader, committed_offsets
from tests.integration.flow.proxied_worker import wait_until
from tests.support.kafka_proxy import KafkaProxy

pytestmark = pytest.mark.integration

# The group's range assignment gives the low partitions to the member whose id sorts first, and a member id
# starts with the client.id: B ("executor-1-...") takes partition 0 from A ("executor-2-...") when it joins.
A_CONSUMER, B_CONSUMER = "executor-2-first-owner", "executor-1-next-owner"
A_PRODUCER, B_PRODUCER = "executor-2-producer", "executor-1-producer"
PARTITION = 0
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


def _states(records: list[Record], action_id: str) -> list[ActionState]:
    return [r.state for r in records if isinstance(r, ActionEvent) and r.action_id == action_id]


def _runs(marks: Path, action_id: str) -> int:
    """How often the action took effect on the target (one line per run)."""
    return marks.read_text().splitlines().count(action_id) if marks.exists() else 0


def _owner(bootstrap: str, group: str, topic: str, partition: int) -> str | None:
    """The client.id of the group member the partition is assigned to now, if any."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
    for member in described.members:
        assignment = member.assignment.topic_partitions if member.assignment else []
        if any(tp.topic == topic and tp.partition == partition for tp in assignment):
            return str(member.client_id)
    return None


def _executor(bootstrap: str, codec: Codec, publisher: KafkaPublisher, prefix: str, client_id: str,
              marks: Path, tenant: str) -> ExecutorService:
    registry = ToolRegistry({"marks": str(marks)}, tools={
        **DEFAULT_TOOLS, "diagnostics.collect": "tests.integration.flow.crashing_executor:MarkFile"})
    # Short windows, as in crash_windows: a run left ``running`` would be settled within seconds, not minutes.
    return ExecutorService(bootstrap=bootstrap, extra={"client.id": client_id}, codec=codec, publisher=publisher,
                           registry=registry, verifier=verifier_for(tenant), topic_prefix=prefix, dry_run=False,
                           confirm=ConfirmPolicy(within_s=1.0, every_s=0.1), stop_grace_s=1.0, abandon_margin_s=2.0)


def test_an_action_whose_partition_moved_before_its_running_record_was_acked_runs_once_on_the_new_owner(
    proxied: KafkaProxy, codec: Codec, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap = f"127.0.0.1:{proxied.port}"
    prefix = f"m{uuid.uuid4().hex[:8]}."
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    topic, group = ACTIONS.full_name(prefix), f"{prefix}rcaflow-executor"
    ensure_topics(bootstrap, prefix, [ACTIONS])
    marks = tmp_path / "marks"
    action = _approved(tenant, _action_id_on(PARTITION, tenant))
    caplog.set_level(logging.INFO, logger="streams.executor.service")
    reader = TopicReader(bootstrap, codec, ACTIONS, prefix)

    def left_by_a() -> bool:
        return any(LEFT in r.getMessage() and getattr(r, "action_id", None) == action.action_id
                   for r in caplog.records)

    proxied.delay_produce_from(A_PRODUCER)  # A's records reach the broker only when the test says so
    try:
        async def scenario() -> None:
            feeder = KafkaPublisher(bootstrap, codec, prefix)
            # A's records wait at the proxy for as long as the rebalance and B's run take: its producer must not
            # give up on them meanwhile (a retry would only be held too), so its timeouts outlast the test's waits.
            patient = {"client.id": A_PRODUCER, "request.timeout.ms": 240_000, "socket.timeout.ms": 240_000}
            a_out = KafkaPublisher(bootstrap, codec, prefix, patient, delivery_timeout_ms=300_000)
            b_out = KafkaPublisher(bootstrap, codec, prefix, {"client.id": B_PRODUCER})
            a = _executor(bootstrap, codec, a_out, prefix, A_CONSUMER, marks, tenant)
            b = _executor(bootstrap, codec, b_out, prefix, B_CONSUMER, marks, tenant)
            runs = [asyncio.create_task(a.run())]
            try:
                delivered = await feeder.publish(ACTIONS, f"{tenant}:{action.action_id}", action)
                assert delivered.partition == PARTITION, "the approval is not on the partition B will take"
                # A alone in the group polled the approval and sent its running record: the proxy holds it.
                assert await asyncio.to_thread(proxied.delayed.wait, 120), "executor A never wrote running"
                assert _runs(marks, action.action_id) == 0
                runs.append(asyncio.create_task(b.run()))
                await asyncio.to_thread(wait_until, lambda: _owner(bootstrap, group, topic, PARTITION) == B_CONSUMER,
                                        f"partition {PARTITION} to move to executor B")
                await asyncio.to_thread(
                    reader.wait_for, lambda rs: ActionState.SUCCEEDED in _states(rs, action.action_id), 120.0,
                    "executor B to run the re-delivered approval")
                proxied.deliver_delayed()  # A's running record lands, after B's outcome
                await asyncio.to_thread(wait_until, lambda: left_by_a() or _runs(marks, action.action_id) > 1,
                                        "executor A to leave the action (or run it again)")

                def b_read_everything() -> bool:
                    # B handled every record of the partition, A's late running included (nothing of it settles).
                    reader.poll(0.3)
                    return committed_offsets(bootstrap, group, topic).get(PARTITION, 0) >= len(reader.records) >= 4

                await asyncio.to_thread(wait_until, b_read_everything, "executor B to commit the whole partition")
            finally:
                a.stop()
                b.stop()
                await asyncio.gather(*runs)
                proxied.deliver_delayed()
                for publisher in (feeder, a_out, b_out):
                    await asyncio.to_thread(publisher.close_sync, 5.0)

        asyncio.run(scenario())
        reader.poll(1.0)
    finally:
        proxied.deliver_delayed()
        reader.close()
    states = _states(reader.records, action.action_id)
    assert _runs(marks, action.action_id) == 1, f"the action took effect {_runs(marks, action.action_id)} times"
    outcomes = [s for s in states if s in (ActionState.SUCCEEDED, ActionState.FAILED)]
    assert outcomes == [ActionState.SUCCEEDED], f"the actions topic shows {states}"
    assert left_by_a(), f"executor A did not log that it {LEFT}"
