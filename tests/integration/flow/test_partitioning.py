"""Records keyed alike must meet in one partition whichever client wrote them (API/executor vs worker)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka.partitioner import DefaultPartitioner

from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import ActionEvent, ActionState
from schemas.topics import ACTIONS
from streams.wiring.topics_admin import ensure_topics


def test_publisher_partitions_keys_like_the_faust_worker(broker: object, topic_prefix: str, codec: Codec) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix, [ACTIONS])
    publisher = KafkaPublisher(bootstrap, codec, topic_prefix)
    faust_side = DefaultPartitioner()
    partitions = list(range(ACTIONS.partitions))
    for n in range(30):
        key = f"acme:action-{n}"
        action = ActionEvent(tenant="acme", action_id=f"action-{n}", incident_id="i", alert_class="c", name="n",
                             tool="t", operation="o", state=ActionState.APPROVED, at=datetime.now(UTC))
        delivery = publisher.publish_sync(ACTIONS, key, action)
        assert delivery.partition == faust_side(key.encode(), partitions, partitions), key
    publisher.close_sync()
