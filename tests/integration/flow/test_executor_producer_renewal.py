"""The executor keeps writing when its Kafka producer is stuck while the broker works: the producer is replaced
and every approved action finishes, each run once.

The stuck producer is real: the proxy in front of the real broker swallows every Produce request of that one
client (by ``client.id``), so its records time out again and again while every other client gets through — as
the executor's producer did for one partition after the broker-outage fault case started the broker again
(``new leader-1 not found in cache``; producers/renewing_publisher.py). Without the replacement the first
``running`` record is retried for good and no action finishes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from datetime import UTC, datetime

import pytest

from executors import ToolRegistry
from producers.publisher import KafkaPublisher
from producers.renewing_publisher import RenewingPublisher, leaders_known
from schemas.codec import Codec
from schemas.records import ActionEvent, ActionState, Record, Risk
from schemas.topics import ACTIONS
from streams.executor.service import ExecutorService
from streams.wiring.topics_admin import ensure_topics
from tests.integration.flow.conftest import signed, verifier_for
from tests.integration.flow.helpers import TopicReader
from tests.support.kafka_proxy import KafkaProxy

STUCK = "executor-producer-1"


def _approved(tenant: str, n: int) -> ActionEvent:
    return signed(ActionEvent(tenant=tenant, action_id=f"act-{n}", incident_id=f"inc-{n}", alert_class="log_flood",
                              name="collect_diagnostics", tool="diagnostics", operation="collect",
                              params={"namespace": "insight-system", "workload": "fluent-bit-x7k2p"},
                              risk=Risk.READ, state=ActionState.APPROVED, at=datetime.now(UTC)))


def _states(records: list[Record], action_id: str) -> list[ActionState]:
    return [r.state for r in records if isinstance(r, ActionEvent) and r.action_id == action_id]


def test_a_stuck_producer_is_replaced_and_every_action_finishes(
    proxied: KafkaProxy, codec: Codec, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap = f"127.0.0.1:{proxied.port}"
    prefix = f"p{uuid.uuid4().hex[:8]}."
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    ensure_topics(bootstrap, prefix, [ACTIONS])
    ids = (f"executor-producer-{n}" for n in itertools.count(1))
    actions = [_approved(tenant, n) for n in range(6)]
    caplog.set_level(logging.INFO, logger="producers.renewing_publisher")

    def new_producer() -> KafkaPublisher:
        # The executor's producer, with a short delivery timeout so the stuck one fails within seconds.
        return KafkaPublisher(bootstrap, codec, prefix, {"client.id": next(ids)}, delivery_timeout_ms=3000)

    proxied.hold_produce_from(STUCK)  # the first producer's records never get through; the broker works
    reader = TopicReader(bootstrap, codec, ACTIONS, prefix)
    try:
        async def scenario() -> None:
            publisher = RenewingPublisher(
                new_producer, probe=lambda: leaders_known({"bootstrap.servers": bootstrap}, ACTIONS.full_name(prefix)),
                stuck_after_s=2.0, probe_every_s=1.0, name="executor")
            feeder = KafkaPublisher(bootstrap, codec, prefix)
            service = ExecutorService(bootstrap=bootstrap, codec=codec, publisher=publisher,
                                      registry=ToolRegistry({}), topic_prefix=prefix, dry_run=True,
                                      verifier=verifier_for(tenant), stop_grace_s=0.0)
            running = asyncio.create_task(service.run())
            try:
                for action in actions:
                    await feeder.publish(ACTIONS, f"{tenant}:{action.action_id}", action)

                def finished(rs: list[Record]) -> bool:
                    return all(ActionState.SUCCEEDED in _states(rs, a.action_id) for a in actions)

                await asyncio.to_thread(reader.wait_for, finished, 120.0, "every approved action to finish")
            finally:
                service.stop()
                await running
                await asyncio.to_thread(feeder.close_sync, 2.0)
                await publisher.close()

        asyncio.run(scenario())
        reader.poll(1.0)  # a second run after the replacement would show up here
    finally:
        proxied.release()
        reader.close()
    assert proxied.swallowed.is_set(), "the first producer was never held: the case did not happen"
    for action in actions:  # nothing lost to the replacement, and nothing run twice
        assert _states(reader.records, action.action_id).count(ActionState.RUNNING) == 1, action.action_id
    replaced = [r.getMessage() for r in caplog.records if "replacing it with a new producer" in r.getMessage()]
    assert replaced, "no log line says the stuck producer was replaced"
    assert "the broker answers again" in replaced[0] and "Message timed out" in replaced[0]
