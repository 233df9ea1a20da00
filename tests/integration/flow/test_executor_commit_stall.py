"""An offset commit the group coordinator never answers does not hold up the approvals behind it.

A synchronous commit can wait for minutes, or for good (confluent-kafka-python #1801); the executor used to wait
for each commit before it polled again, so every approval behind a stuck commit waited with it while the executor
looked healthy. The proxy in front of the real broker drops the executor's OffsetCommit requests and forwards
everything else (fetches, heartbeats, produce), and the consumer's socket timeout is long, as in production where
the request may never fail: a second approval, written while the first one's commit waits, must still run, and
the wait is visible as ``rcaflow_executor_commit_wait_seconds``.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

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

CONSUMER = "executor-commit-stalled"


def _approved(tenant: str, action_id: str) -> ActionEvent:
    return signed(ActionEvent(tenant=tenant, action_id=action_id, incident_id="inc-1", alert_class="log_flood",
                              name="collect_diagnostics", tool="diagnostics", operation="collect",
                              params={"namespace": "insight-system", "workload": "fluent-bit-x7k2p"},
                              risk=Risk.READ, state=ActionState.APPROVED, at=datetime.now(UTC)))


def _outcomes(records: list[Record], action_id: str) -> list[ActionState]:
    return [r.state for r in records if isinstance(r, ActionEvent) and r.action_id == action_id
            and r.state in (ActionState.SUCCEEDED, ActionState.FAILED)]


def test_an_approval_runs_while_the_previous_offset_commit_is_unanswered(
    proxied: KafkaProxy, codec: Codec, tmp_path: Path
) -> None:
    bootstrap = f"127.0.0.1:{proxied.port}"
    prefix = f"c{uuid.uuid4().hex[:8]}."
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    ensure_topics(bootstrap, prefix, [ACTIONS])
    marks = tmp_path / "marks"
    first, second = _approved(tenant, "act-before-the-stall"), _approved(tenant, "act-during-the-stall")
    reader = TopicReader(bootstrap, codec, ACTIONS, prefix)

    def outcome(action_id: str) -> bool:
        reader.poll(0.3)
        return bool(_outcomes(reader.records, action_id))

    proxied.swallow_offset_commits_from(CONSUMER)
    try:
        async def scenario() -> tuple[float, dict[int, int]]:
            feeder = KafkaPublisher(bootstrap, codec, prefix)
            publisher = KafkaPublisher(bootstrap, codec, prefix)
            registry = ToolRegistry({"marks": str(marks)}, tools={
                **DEFAULT_TOOLS, "diagnostics.collect": "tests.integration.flow.crashing_executor:MarkFile"})
            # A request the broker never answers fails only after socket.timeout.ms: long here, as a commit that
            # never returns would be.
            service = ExecutorService(
                bootstrap=bootstrap, extra={"client.id": CONSUMER, "socket.timeout.ms": 300_000}, codec=codec,
                publisher=publisher, registry=registry, verifier=verifier_for(tenant), topic_prefix=prefix,
                dry_run=False, confirm=ConfirmPolicy(within_s=1.0, every_s=0.1), stop_grace_s=1.0)
            running = asyncio.create_task(service.run())
            try:
                await feeder.publish(ACTIONS, f"{tenant}:{first.action_id}", first)
                await asyncio.to_thread(wait_until, lambda: outcome(first.action_id), "the first approval to run")
                assert await asyncio.to_thread(proxied.commit_swallowed.wait, 60), "the executor never committed"
                await feeder.publish(ACTIONS, f"{tenant}:{second.action_id}", second)
                await asyncio.to_thread(wait_until, lambda: outcome(second.action_id),
                                        "the second approval to run while the first one's commit waits", 60.0)
                waiting = service.commit_waiting_s()
                committed = committed_offsets(bootstrap, f"{prefix}rcaflow-executor", ACTIONS.full_name(prefix))
                return waiting, committed
            finally:
                service.stop()
                proxied.swallow_offset_commits_from(None)  # the lost commit fails now, so the consumer can close
                await running
                for out in (feeder, publisher):
                    await asyncio.to_thread(out.close_sync, 5.0)

        waiting, committed = asyncio.run(scenario())
    finally:
        proxied.swallow_offset_commits_from(None)
        reader.close()
    assert _outcomes(reader.records, second.action_id) == [ActionState.SUCCEEDED]
    assert marks.read_text().splitlines() == [first.action_id, second.action_id]  # each ran once
    assert waiting > 0, "the unanswered commit was not reported as waiting"
    assert not any(committed.values()), f"a commit got through the proxy: {committed}"
