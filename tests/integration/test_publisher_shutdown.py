"""Ctrl-C while a real broker still owes acks: the pending records are flushed onto the topic and accounted for."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from producers.publisher import Delivery, KafkaPublisher
from schemas.codec import make_codec
from schemas.topics import INGEST_CHECKPOINTS
from streams.broker import RunningBroker
from streams.wiring.topics_admin import ensure_topics
from tests.unit.producers.test_publisher_shutdown import checkpoint

RECORDS = 300


def records_on(bootstrap: str, topic: str) -> set[str]:
    """The keys of every record of the (one-partition) topic up to its end now."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}.reader", "enable.auto.commit": False})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, 0)])
        keys: set[str] = set()
        deadline = time.monotonic() + 60  # a guard against a broker that stops answering, not a timing goal
        offset = -1
        while offset < high - 1 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            keys.add((msg.key() or b"").decode())
            offset = msg.offset() or 0
        return keys
    finally:
        consumer.close()


def test_records_pending_at_ctrl_c_reach_the_broker_and_the_close_says_how_many_nobody_heard(
    broker: RunningBroker, topic_prefix: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread_failures: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", thread_failures.append)
    ensure_topics(broker.bootstrap, topic_prefix, [INGEST_CHECKPOINTS])
    publisher = KafkaPublisher(broker.bootstrap, make_codec(None), prefix=topic_prefix)
    heard: list[Delivery] = []

    async def send(n: int) -> None:
        heard.append(await publisher.publish(INGEST_CHECKPOINTS, f"m{n}", checkpoint(n)))

    async def send_then_ctrl_c() -> None:
        sends = [asyncio.create_task(send(n)) for n in range(RECORDS)]
        await asyncio.sleep(0)  # all handed to librdkafka, none acked yet
        signal.raise_signal(signal.SIGINT)
        await asyncio.gather(*sends)

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(send_then_ctrl_c())
    with caplog.at_level(logging.INFO, logger="producers.publisher"):
        report = publisher.close_sync(timeout=30)

    assert report.undelivered == 0
    assert report.delivered_unheard == RECORDS - len(heard) > 0
    assert records_on(broker.bootstrap, publisher.topic_name(INGEST_CHECKPOINTS)) == {f"m{n}" for n in range(RECORDS)}
    assert [r.getMessage() for r in caplog.records if r.name == "producers.publisher"] == [
        f"publisher closed: {report.delivered_unheard} records were acknowledged after their senders had stopped "
        "waiting (they are on the broker; their senders were not told)"]
    assert thread_failures == []
