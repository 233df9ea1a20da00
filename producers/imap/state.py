"""Where a mailbox producer resumes: its checkpoint and the message-ids it already published.

Both live in Kafka (ingest-checkpoints is compacted; raw-mail keeps 7 days), so a
producer restarted on another host resumes exactly where the last one stopped.
They are read once at start-up with a plain assigned consumer (no group, no commits).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from producers.imap.errors import CheckpointError
from producers.kafka_clients import new_consumer
from producers.publisher import is_transient
from schemas.errors import CodecError
from schemas.records import Checkpoint, RawMail
from schemas.topics import INGEST_CHECKPOINTS, RAW_MAIL

if TYPE_CHECKING:
    from schemas.codec import Codec


logger = logging.getLogger(__name__)


class CheckpointReader(Protocol):
    """The start-up seam: the last checkpoint of a mailbox and what it published since a time."""

    def load(self, mailbox: str) -> Checkpoint | None: ...

    def message_ids_since(self, tenant: str, mailbox: str, since: datetime) -> list[str]: ...


class KafkaCheckpointReader:
    """Reads ingest-checkpoints and raw-mail up to their high watermarks at the time of the call."""

    def __init__(
        self,
        bootstrap: str,
        codec: Codec,
        prefix: str = "",
        extra: dict[str, Any] | None = None,
        timeout_seconds: float = 60.0,
    ) -> None:
        self._bootstrap = bootstrap
        self._codec = codec
        self._prefix = prefix
        self._extra = dict(extra or {})
        self._timeout = timeout_seconds

    def load(self, mailbox: str) -> Checkpoint | None:
        topic = INGEST_CHECKPOINTS.full_name(self._prefix)
        wanted = mailbox.encode("utf-8")
        latest: list[Checkpoint | None] = [None]

        def keep(msg: Message) -> None:
            if msg.key() != wanted:
                return
            value = msg.value()
            # A tombstone (None) deletes the checkpoint: start over as on a first run.
            if value is None:
                latest[0] = None
                return
            try:
                latest[0] = self._codec.decode(value, Checkpoint, topic=topic)
            except CodecError as exc:
                logger.warning("unreadable checkpoint for %s at offset %s skipped: %s", mailbox, msg.offset(), exc)

        self._read_to_end(topic, None, keep)
        return latest[0]

    def message_ids_since(self, tenant: str, mailbox: str, since: datetime) -> list[str]:
        topic = RAW_MAIL.full_name(self._prefix)
        prefix = f"{tenant}:".encode()
        found: list[str] = []

        def keep(msg: Message) -> None:
            key, value = msg.key(), msg.value()
            if value is None or key is None or not key.startswith(prefix):
                return
            try:
                mail = self._codec.decode(value, RawMail, topic=topic)
            except CodecError as exc:
                logger.warning("unreadable raw-mail record at offset %s skipped: %s", msg.offset(), exc)
                return
            if mail.mailbox == mailbox:
                found.append(mail.message_id)

        self._read_to_end(topic, int(since.timestamp() * 1000), keep)
        return found

    def _read_to_end(self, topic: str, since_ms: int | None, handle: Callable[[Message], None]) -> None:
        """Feed ``handle`` every record from ``since_ms`` (or the start) up to today's high watermark."""
        config: dict[str, Any] = {
            "bootstrap.servers": self._bootstrap,
            "group.id": f"rcaflow-imap-restore-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "allow.auto.create.topics": False,
        }
        config.update(self._extra)
        try:
            consumer = new_consumer(config)
        except KafkaException as exc:
            raise CheckpointError(f"cannot create a consumer for {topic}: {exc}") from exc
        try:
            self._drain(consumer, topic, since_ms, handle)
        except KafkaException as exc:
            raise CheckpointError(f"cannot read {topic}: {exc}") from exc
        finally:
            consumer.close()

    def _drain(self, consumer: Consumer, topic: str, since_ms: int | None, handle: Callable[[Message], None]) -> None:
        meta = consumer.list_topics(topic, timeout=self._timeout).topics.get(topic)
        if meta is None or meta.error is not None:
            if meta is not None and meta.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise CheckpointError(f"metadata for {topic}: {meta.error}")
            logger.info("topic %s does not exist yet: nothing to restore", topic)
            return
        partitions = sorted(meta.partitions)
        starts: dict[int, int] = {}
        if since_ms is not None:
            asked = [TopicPartition(topic, p, since_ms) for p in partitions]
            for tp in consumer.offsets_for_times(asked, timeout=self._timeout):
                if tp.error is not None:
                    raise CheckpointError(f"offsets_for_times on {topic}[{tp.partition}]: {tp.error}")
                starts[tp.partition] = tp.offset  # -1: nothing at or after since
        ends: dict[int, int] = {}
        assignment: list[TopicPartition] = []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=self._timeout)
            start = starts.get(p, low) if since_ms is not None else low
            if start < 0 or start >= high:
                continue
            ends[p] = high
            assignment.append(TopicPartition(topic, p, max(start, low)))
        if not assignment:
            return
        consumer.assign(assignment)
        # A stall deadline, not a total one: a week of raw-mail may take minutes to scan.
        deadline = time.monotonic() + self._timeout
        while ends:
            if time.monotonic() > deadline:
                raise CheckpointError(f"no progress reading {topic} for {self._timeout}s")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            deadline = time.monotonic() + self._timeout
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    ends.pop(msg.partition() or 0, None)
                    continue
                raise CheckpointError(f"reading {topic}: {err.str()}", retriable=is_transient(err))
            part, offset = msg.partition() or 0, msg.offset() or 0
            if part not in ends:
                continue
            handle(msg)
            if offset >= ends[part] - 1:
                ends.pop(part, None)
