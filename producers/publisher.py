"""Publish typed records to Kafka and wait for the broker's acknowledgement.

Every ingest path answers its sender (HTTP 2xx, IMAP checkpoint) only after
the broker acked, so this is the one place that turns a librdkafka delivery
callback into an awaitable.

A sender may stop waiting before the broker answers: Ctrl-C or SIGTERM cancels
``asyncio.run``'s tasks and closes its loop while deliveries are pending. Their
reports then arrive with nobody to tell; they are counted, never handed to the
closed loop (that killed the poll thread with "Event loop is closed"), and
``close_sync`` says how many records were not delivered.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message

from producers.errors import ProducerError
from producers.kafka_clients import LIBRDKAFKA_LOG, new_producer
from schemas.codec import Codec
from schemas.limits import PRODUCER_MAX_REQUEST_BYTES
from schemas.records import Record
from schemas.topics import TopicSpec

logger = logging.getLogger(__name__)


#: librdkafka errors that say "not now" rather than "never" for this record: the broker is away, slow or
#: electing a leader, or the local queue is full. librdkafka flags few of them ``retriable()`` (a message
#: that waited out ``delivery.timeout.ms`` while the broker was down is ``_MSG_TIMED_OUT``, not retriable),
#: so this set completes its flag. Everything else (``MSG_SIZE_TOO_LARGE``, ``INVALID_RECORD``,
#: ``*_AUTHORIZATION_FAILED``, ``_FATAL`` …) is a permanent refusal.
TRANSIENT_KAFKA_CODES: frozenset[int] = frozenset({
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TIMED_OUT_QUEUE,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._QUEUE_FULL,
    KafkaError._RESOLVE,
    KafkaError._NODE_UPDATE,
    # Not created yet, or not in the metadata of a broker that just restarted: an operator can fix it,
    # dead-lettering the record cannot (dead-letter is usually missing too).
    KafkaError._UNKNOWN_TOPIC,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NETWORK_EXCEPTION,
    KafkaError.BROKER_NOT_AVAILABLE,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,  # NOT_LEADER_OR_FOLLOWER in newer Kafka: the same code, 6
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    KafkaError.KAFKA_STORAGE_ERROR,
    KafkaError.THROTTLING_QUOTA_EXCEEDED,
    # Dropped by this process (``KafkaPublisher.abandon``), not refused by the broker: send it again.
    KafkaError._PURGE_QUEUE,
    KafkaError._PURGE_INFLIGHT,
})


def is_transient(err: KafkaError) -> bool:
    """True when the same record may be taken later: librdkafka's ``retriable()`` or a code of the set above.

    A fatal error (the idempotent producer lost its guarantee) is never transient: this producer is done.
    """
    if err.fatal():
        return False
    return bool(err.retriable()) or err.code() in TRANSIENT_KAFKA_CODES


class PublishError(ProducerError):
    """The broker did not take the record; ``retriable`` says whether a retry can help.

    ``retriable`` comes from :func:`is_transient` (the one place that classifies librdkafka errors):
    True for an outage (broker down, message timed out in the local queue, no leader, not enough
    replicas, queue full), which callers retry and never dead-letter; False for a permanent refusal of
    this record (too large, invalid, not authorized). ``code`` is librdkafka's error code when there is
    one, so callers can tell the permanent refusals apart (``MSG_SIZE_TOO_LARGE``: the record can never fit).
    """

    def __init__(self, message: str, *, topic: str, retriable: bool, code: int | None = None) -> None:
        super().__init__(message, retriable=retriable)
        self.topic = topic
        self.code = code

    @classmethod
    def from_kafka(cls, message: str, err: KafkaError, *, topic: str) -> PublishError:
        """The error for a librdkafka refusal, classified transient or permanent by :func:`is_transient`."""
        return cls(message, topic=topic, retriable=is_transient(err), code=err.code())


@dataclass(frozen=True, slots=True)
class Delivery:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class ShutdownReport:
    """What became of the records no sender heard about, when the publisher closed.

    ``delivered_unheard``: acked after their sender stopped waiting (on the broker; the sender, not told,
    sends them again when it runs next, which the pipeline's idempotence absorbs). ``refused_unheard``: the
    broker refused them (or they timed out) after that. ``queued``: still in the local queue when the flush
    time was up, dropped with the producer.
    """

    delivered_unheard: int = 0
    refused_unheard: int = 0
    queued: int = 0
    #: Topic -> records refused after their senders had stopped waiting.
    refused_by_topic: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def undelivered(self) -> int:
        return self.refused_unheard + self.queued


@dataclass(slots=True, eq=False)
class _Pending:
    """One record published through :meth:`KafkaPublisher.publish`, until its sender has heard the outcome."""

    topic: str
    answered: bool = False
    refused: bool = False


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
            # Room for whole alert mails (raw-mail allows 11 MiB per record; schemas/limits.py).
            "message.max.bytes": PRODUCER_MAX_REQUEST_BYTES,
            # librdkafka's own lines (a broker down: one per reconnect) go through logging, where they are
            # formatted like ours (JSON when asked) and rate-limited, instead of raw on stderr.
            "logger": LIBRDKAFKA_LOG,
        }
        config.update(extra or {})
        self._producer = new_producer(config)
        self._codec = codec
        self._prefix = prefix
        self._stop = threading.Event()
        #: Records in flight whose sender waits for the broker's answer (removed when it is handed over).
        self._unheard: set[_Pending] = set()
        #: Answers nobody heard (the sender was cancelled, or its loop closed): topic -> count, by outcome.
        self._late_acked: Counter[str] = Counter()
        self._late_refused: Counter[str] = Counter()
        self._unheard_lock = threading.Lock()
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

        pending = _Pending(topic)

        def heard(outcome: Delivery | PublishError) -> None:
            # On the loop thread. A sender that was cancelled (Ctrl-C, a client gone) hears nothing: counted.
            if future.done():
                self._unheard_answer(pending)
                return
            self._forget(pending)
            if isinstance(outcome, PublishError):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            # On the poll thread (or a flush): must never raise, or librdkafka's caller dies with it.
            outcome: Delivery | PublishError
            if err is not None:
                outcome = PublishError.from_kafka(f"broker refused record for {topic}: {err.str()}", err,
                                                  topic=topic)
            else:
                outcome = Delivery(topic, msg.partition() or 0, msg.offset() or 0)
            pending.refused = err is not None
            pending.answered = True
            try:
                loop.call_soon_threadsafe(heard, outcome)
            except RuntimeError:  # its loop is closed: the sender was interrupted; close_sync reports it
                self._unheard_answer(pending)

        with self._unheard_lock:
            self._unheard.add(pending)
        try:
            self._producer.produce(topic, value=value, key=key.encode("utf-8"), on_delivery=on_delivery)
        except BufferError as exc:
            self._forget(pending)
            raise PublishError(f"local producer queue full for {topic}", topic=topic, retriable=True,
                               code=KafkaError._QUEUE_FULL) from exc
        except KafkaException as exc:
            self._forget(pending)
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError):
                raise PublishError.from_kafka(f"cannot produce to {topic}: {exc}", err, topic=topic) from exc
            raise PublishError(f"cannot produce to {topic}: {exc}", topic=topic, retriable=False) from exc
        return await future

    def _forget(self, pending: _Pending) -> None:
        with self._unheard_lock:
            self._unheard.discard(pending)

    def _unheard_answer(self, pending: _Pending) -> None:
        with self._unheard_lock:
            self._count_unheard(pending)

    def _count_unheard(self, pending: _Pending) -> None:
        """With the lock held: the broker answered ``pending`` and its sender will never hear it."""
        if pending in self._unheard:
            self._unheard.discard(pending)
            (self._late_refused if pending.refused else self._late_acked)[pending.topic] += 1

    def publish_sync(self, spec: TopicSpec, key: str, record: Record, timeout: float = 30.0) -> Delivery:
        """For scripts and sync callers: produce and block until acked."""
        topic = self.topic_name(spec)
        result: list[Delivery | PublishError] = []
        done = threading.Event()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                result.append(PublishError.from_kafka(err.str(), err, topic=topic))
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
        """:meth:`close_sync` off the loop (its report is logged)."""
        await asyncio.to_thread(self.close_sync)

    def close_sync(self, timeout: float = 10.0) -> ShutdownReport:
        """Deliver what is queued (up to ``timeout``), then stop polling; what no sender heard is reported.

        Records not delivered (still queued, or refused after their senders had stopped waiting) are
        counted in one warning with how many and where; records acked after their senders stopped waiting
        in one info line. Safe after an interrupted ``asyncio.run`` (its loop closed, deliveries pending).
        """
        queued = self.flush(timeout)
        self._stop.set()
        self._poller.join(2.0)
        with self._unheard_lock:
            # Answered, but handed to a loop that closed before it ran the hand-over: nobody heard those either.
            for pending in [p for p in self._unheard if p.answered]:
                self._count_unheard(pending)
            refused, acked = Counter(self._late_refused), self._late_acked.total()
        report = ShutdownReport(delivered_unheard=acked, refused_unheard=refused.total(), queued=queued,
                                refused_by_topic=dict(refused))
        if report.undelivered:
            where = ", ".join(f"{topic}: {n}" for topic, n in sorted(refused.items()))
            logger.warning("publisher closed with %d records not delivered: %d still queued after the %.1f s flush, "
                           "%d refused by the broker after their senders had stopped waiting%s",
                           report.undelivered, queued, timeout, report.refused_unheard, f" ({where})" if where else "")
        if report.delivered_unheard:
            logger.info("publisher closed: %d records were acknowledged after their senders had stopped waiting "
                        "(they are on the broker; their senders were not told)", report.delivered_unheard)
        return report

    def abandon(self, timeout: float = 5.0) -> None:
        """Give up on this producer: every record it still holds fails now, then it is closed.

        For a producer that stopped delivering while the broker works (see
        :class:`producers.renewing_publisher.RenewingPublisher`). librdkafka purges its queue and in-flight
        requests, so each waiting sender gets a transient ``PublishError`` at once and sends the record again
        through the producer that replaces this one. A purged in-flight record may still have reached the
        broker: at least once, as after any delivery timeout.
        """
        self._producer.purge(in_queue=True, in_flight=True, blocking=False)
        self.close_sync(timeout)  # serves the purged records' delivery reports, then stops polling
