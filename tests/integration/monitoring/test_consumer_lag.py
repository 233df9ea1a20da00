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


def test_only_our_topics_are_asked_about_on_a_shared_cluster(broker: object, topic_prefix: str) -> None:
    """Another team's topic the same group name committed on is not ours: with ``kafka.topic_prefix`` set the
    exporter reads the prefix's topics (and the named extra ones), not every topic of the cluster."""
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ours, theirs, extra = f"{topic_prefix}actions", f"other-team-{topic_prefix}actions", f"x-{topic_prefix}repart"
    group = f"{topic_prefix}rcaflow-executor"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1)
                                       for t in (ours, theirs, extra)]).values():
        future.result(60)
    producer = Producer({"bootstrap.servers": bootstrap})
    for topic in (ours, theirs, extra):
        for _ in range(3):
            producer.produce(topic, value=b"x")
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(t, 0, 1) for t in (ours, theirs, extra)], asynchronous=False)
    consumer.close()

    registry = CollectorRegistry()
    lag = ConsumerLag({"bootstrap.servers": bootstrap}, [group], every_s=0.2, topic_prefix=topic_prefix,
                      also=[extra])
    registry.register(lag)
    lag.start()
    try:
        _wait(lambda: registry.get_sample_value("rcaflow_consumer_lag_records", {"group": group, "topic": ours})
              is not None, "the first read")
        assert registry.get_sample_value("rcaflow_consumer_lag_records", {"group": group, "topic": extra}) == 2
        assert registry.get_sample_value("rcaflow_consumer_lag_records", {"group": group, "topic": theirs}) is None
    finally:
        lag.stop()
