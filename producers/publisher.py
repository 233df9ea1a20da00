"""Publish typed records to Kafka and wait for the broker's acknowledgement.

Every ingest path answers its sender (HTTP 2xx, IMAP checkpoint) only after
the broker acked, so this is the one place that turns a librdkafka delivery
callback into an awaitable.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from producers.errors import ProducerError
from schemas.codec import Codec
from schemas.records import Record
from schemas.topics import TopicSpec

logger = logging.getLogger(__name__)


class PublishError(ProducerError):
    """The broker did not take the record; ``retriable`` says whether a retry can help."""

    def __init__(self, message: str, *, topic: str, retriable: bool) -> None:
        super().__init__(message, retriable=retriable)
        self.topic = topic


@dataclass(frozen=True, slots=True)
class Delivery:
    topic: str
    partition: int
    offset: int


class Publisher(Protocol):
    async def publish(self, spec: TopicSpec, key: str, record: Record) -> Delivery: ...

    async def close(self) -> None: ...


class KafkaPublisher:
    """Idempotent, acks=all confluent-kafka producer with an asyncio face.

    A background thread polls librdkafka so delivery callbacks run even when
    nobody awaits; callbacks hand results to the owning loop thread-safely.
    """

    def __init__(
        self,
        bootstrap: str,
        codec: Codec,
        prefix: str = "",
        extra: dict[str, Any] | None = None,
        delivery_timeout_ms: int = 30_000,
    ) -> None:
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "delivery.timeout.ms": delivery_timeout_ms,
            "compression.type": "lz4",
            # Same key, same partition as Faust/aiokafka and the Java clients (murmur2), so records
            # written here co-partition with the worker's tables and with each other.
            "partitioner": "murmur2_random",
            # Room for whole alert mails (raw-mail allows 11 MiB per record).
            "message.max.bytes": 12 * 1024 * 1024,
        }
        config.update(extra or {})
        self._producer = Producer(config)
        self._codec = codec
        self._prefix = prefix
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="kafka-publisher-poll", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def topic_name(self, spec: TopicSpec) -> str:
        return spec.full_name(self._prefix)

    async def publish(self, spec: TopicSpec, key: str, record: Record) -> Delivery:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Delivery] = loop.create_future()
        topic = self.topic_name(spec)
        value = self._codec.encode(record, topic=topic)

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                exc = PublishError(
                    f"broker refused record for {topic}: {err.str()}", topic=topic, retriable=err.retriable()
                )
                loop.call_soon_threadsafe(_settle_exc, future, exc)
            else:
                delivery = Delivery(topic, msg.partition() or 0, msg.offset() or 0)
                loop.call_soon_threadsafe(_settle, future, delivery)

        try:
            self._producer.produce(topic, value=value, key=key.encode("utf-8"), on_delivery=on_delivery)
        except BufferError as exc:
            raise PublishError(f"local producer queue full for {topic}", topic=topic, retriable=True) from exc
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            retriable = bool(err.retriable()) if isinstance(err, KafkaError) else False
            raise PublishError(f"cannot produce to {topic}: {exc}", topic=topic, retriable=retriable) from exc
        return await future

    def publish_sync(self, spec: TopicSpec, key: str, record: Record, timeout: float = 30.0) -> Delivery:
        """For scripts and sync callers: produce and block until acked."""
        topic = self.topic_name(spec)
        result: list[Delivery | PublishError] = []
        done = threading.Event()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                result.append(PublishError(err.str(), topic=topic, retriable=err.retriable()))
            else:
                result.append(Delivery(topic, msg.partition() or 0, msg.offset() or 0))
            done.set()

        self._producer.produce(
            topic, value=self._codec.encode(record, topic=topic), key=key.encode("utf-8"), on_delivery=on_delivery
        )
        if not done.wait(timeout):
            raise PublishError(f"no broker ack for {topic} within {timeout}s", topic=topic, retriable=True)
        outcome = result[0]
        if isinstance(outcome, PublishError):
            raise outcome
        return outcome

    def flush(self, timeout: float = 10.0) -> int:
        return int(self._producer.flush(timeout))

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)

    def close_sync(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (up to ``timeout``), then stop polling; records not acked are reported."""
        left = self.flush(timeout)
        if left:
            logger.warning("closing the publisher with %d records not acknowledged by the broker", left)
        self._stop.set()
        self._poller.join(2.0)


def _settle(future: asyncio.Future[Delivery], value: Delivery) -> None:
    if not future.done():
        future.set_result(value)


def _settle_exc(future: asyncio.Future[Delivery], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
