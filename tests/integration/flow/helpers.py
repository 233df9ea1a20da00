"""Read typed records back from topics, for assertions on what a user would see there."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import RawMail, Record, SourceKind
from schemas.topics import RAW_MAIL, TopicSpec

R = TypeVar("R", bound=Record)


class TopicReader:
    """Reads one topic from the beginning, all partitions, keeping every decoded record."""

    def __init__(
        self, bootstrap: str, codec: Codec, spec: TopicSpec, prefix: str, alive: Callable[[], None] | None = None
    ) -> None:
        self._alive = alive
        self.name = spec.full_name(prefix)
        self.kind = spec.value
        self.codec = codec
        self.records: list[Record] = []
        self.raw: list[bytes] = []
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}", "enable.auto.commit": False}
        )
        meta = self._consumer.list_topics(self.name, timeout=10)
        parts = meta.topics[self.name].partitions
        self._consumer.assign([TopicPartition(self.name, p, OFFSET_BEGINNING) for p in parts])

    def poll(self, seconds: float = 0.5) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = self._consumer.poll(0.1)
            if msg is None or msg.error():
                continue
            self.raw.append(msg.value() or b"")
            self.records.append(self.codec.decode(msg.value() or b"", self.kind, topic=self.name))

    def wait_for(
        self, predicate: Callable[[list[Record]], bool], timeout: float = 60.0, what: str = ""
    ) -> list[Record]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._alive is not None:
                self._alive()  # a dead worker fails the test at once, with its exit code
            self.poll(0.3)
            if predicate(self.records):
                return self.records
        raise AssertionError(
            f"{self.name}: timed out after {timeout}s waiting for {what or predicate}; have {len(self.records)} records"
        )

    def close(self) -> None:
        self._consumer.close()


def send_mail_file(publisher: KafkaPublisher, tenant: str, path: Path) -> None:
    """Put one mail file on raw-mail for ``tenant``, as the IMAP producer would, with a fresh Message-ID."""
    mail = RawMail(tenant=tenant, message_id=f"<{uuid.uuid4().hex}@t>", mailbox="t", source=SourceKind.FILE,
                   received_at=datetime.now(UTC), raw=path.read_bytes())
    publisher.publish_sync(RAW_MAIL, f"{tenant}:m", mail)


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset of each partition of ``topic`` (0 where nothing is committed yet)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        # A partition nothing was committed on yet answers a negative sentinel: count it as offset 0.
        return {tp.partition: max(0, int(tp.offset))
                for tp in consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)}
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    """Every (key, value) on ``topic`` now, all partitions, from the beginning."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        pending, out = set(parts), []
        while pending:
            msg = consumer.poll(5.0)
            if msg is None:
                break
            if msg.error():
                pending.discard(msg.partition())
                continue
            out.append((msg.key() or b"", msg.value() or b""))
        return out
    finally:
        consumer.close()
