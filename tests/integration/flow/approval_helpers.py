"""Waiting, in approval tests, until the worker itself holds an action as awaiting approval."""

from __future__ import annotations

import json
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streams.wiring.supervisor import Stack


def wait_until_the_worker_waits(stack: Stack, key: str, timeout: float = 60.0) -> None:
    """Block until ``key`` (tenant:action-id) is in the worker's ``awaiting-approval`` table (its changelog).

    A person clicks seconds after the message; a test publishes at once, and a decision the worker's
    approvals agent reads before its pending agent stored the action is refused as unknown. Waiting for
    the table's changelog removes that race from the test without sleeping.
    """
    settings = stack.settings
    topic = f"{settings.kafka.topic_prefix}{settings.worker.app_id}-awaiting-approval-changelog"
    consumer = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": f"waits-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + timeout
        assigned = False
        while time.monotonic() < deadline:
            stack.check()
            if not assigned:
                meta = consumer.list_topics(topic, timeout=5).topics.get(topic)
                if meta is None or meta.error is not None or not meta.partitions:
                    time.sleep(0.2)
                    continue
                consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
                assigned = True
            msg = consumer.poll(0.3)
            if msg is None or msg.error() or not msg.value():
                continue
            if json.loads(msg.key() or b"null") == key:
                return
        raise AssertionError(f"{topic}: the worker did not hold {key} as awaiting approval within {timeout}s")
    finally:
        consumer.close()
