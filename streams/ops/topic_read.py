"""Read a whole topic, every partition, from the beginning to the end seen at start: for CLI commands."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any, NamedTuple

from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from producers.kafka_clients import new_consumer
from streams.errors import StreamsError
from streams.wiring.kafka_client import KafkaUnreachableError, check_cluster


class TopicReadError(StreamsError):
    """The topic could not be read at all (broker unreachable, topic missing, too slow)."""

    retriable = True


class TopicMessage(NamedTuple):
    """One record as it sits on the topic (key and value still encoded)."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes
    value: bytes


def read_to_end(bootstrap: str, topic: str, *, timeout: float = 30.0, purpose: str = "read",
                extra: dict[str, Any] | None = None) -> Iterator[tuple[int, int, bytes]]:
    """(partition, offset, value) of every record; stops at each partition's end as it was when we started.

    ``extra``: the client properties of :func:`streams.settings.client_config`; refused credentials raise
    ``KafkaAuthError`` before anything is read.
    """
    for message in read_messages(bootstrap, topic, timeout=timeout, purpose=purpose, extra=extra):
        yield message.partition, message.offset, message.value


def read_messages(bootstrap: str, topic: str, *, timeout: float = 30.0, purpose: str = "read",
                  extra: dict[str, Any] | None = None) -> Iterator[TopicMessage]:
    """Like :func:`read_to_end`, with each record's key and timestamp (``rcaflow topic read``)."""
    client = {"bootstrap.servers": bootstrap, **(extra or {})}
    try:
        check_cluster(client, timeout=min(timeout, 10.0), fail_fast=True)  # only one-shot commands read this way
    except KafkaUnreachableError as exc:
        raise TopicReadError(str(exc)) from exc
    consumer = new_consumer({**client, "group.id": f"rcaflow-{purpose}-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        try:
            meta = consumer.list_topics(topic, timeout=min(timeout, 10.0))
        except KafkaException as exc:
            raise TopicReadError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
        found = meta.topics.get(topic)
        if found is None or found.error is not None:
            raise TopicReadError(f"topic {topic} does not exist on {bootstrap}")
        ends: dict[int, int] = {}
        for partition in found.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=min(timeout, 10.0))
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout
        while ends:
            if time.monotonic() > deadline:
                raise TopicReadError(f"timed out reading {topic}; partitions not read to the end: {sorted(ends)}")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                raise TopicReadError(f"reading {topic}: {msg.error()}")
            partition, offset = msg.partition() or 0, msg.offset() or 0
            _kind, timestamp_ms = msg.timestamp()
            yield TopicMessage(partition, offset, timestamp_ms, msg.key() or b"", msg.value() or b"")
            if partition in ends and offset + 1 >= ends[partition]:
                del ends[partition]
    finally:
        consumer.close()
