"""``rcaflow_consumer_lag_records`` on a real broker: high watermark minus the group's committed offset, per
topic, read from a background thread; it falls to zero once the group commits the end."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import CollectorRegistry

from streams.wiring.consumer_lag import ConsumerLag


def _wait(condition: object, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_lag_is_high_watermark_minus_committed_per_group_and_topic(broker: object, topic_prefix: str) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    topic, group = f"{topic_prefix}actions", f"{topic_prefix}rcaflow-executor"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)]).values():
        future.result(60)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(10):
        producer.produce(topic, value=b"x", partition=i % 2)
    assert producer.flush(30) == 0
    # The group has handled 2 records of partition 0 and 1 of partition 1: 3 + 4 = 7 behind.
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 2), TopicPartition(topic, 1, 1)], asynchronous=False)

    registry = CollectorRegistry()
    lag = ConsumerLag({"bootstrap.servers": bootstrap}, [group, f"{topic_prefix}never-committed"], every_s=0.2)
    registry.register(lag)
    labels = {"group": group, "topic": topic}
    lag.start()
    try:
        _wait(lambda: registry.get_sample_value("rcaflow_consumer_lag_records", labels) is not None, "the first read")
        assert registry.get_sample_value("rcaflow_consumer_lag_records", labels) == 7
        assert registry.get_sample_value("rcaflow_consumer_lag_updated_timestamp_seconds", {"group": group})
        consumer.commit(offsets=[TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 5)], asynchronous=False)
        _wait(lambda: registry.get_sample_value("rcaflow_consumer_lag_records", labels) == 0, "the lag to reach 0")
    finally:
        lag.stop()
        consumer.close()
    # A group that never committed has no position, hence no lag series (and no error).
    samples = [s for m in registry.collect() for s in m.samples
               if s.labels.get("group", "").endswith("never-committed")]
    assert all(s.name == "rcaflow_consumer_lag_updated_timestamp_seconds" for s in samples)
