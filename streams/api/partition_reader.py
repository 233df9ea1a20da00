"""Follow every partition of some topics without a consumer group: what the API's views read.

Each API replica needs every record (every action, every incident), not a group's share, so partitions are
assigned by hand and no offset is ever committed. :class:`AllPartitionsReader` is the one loop body behind
the actions feed (``actions_view``) and the incidents feed (``incidents_view``): they differ only in their
topics, where a partition never read starts, and what a decoded record is handed to.

A supervised loop body (:class:`streams.api.loops.Loops`): :meth:`AllPartitionsReader.run` raises when a topic
or every broker is unavailable and is started again with backoff, resuming from the offsets it had read, so a
view is never rebuilt from older records over newer ones. The blocking librdkafka calls run in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from producers.kafka_clients import new_consumer
from schemas.codec import Codec
from schemas.errors import CodecError
from schemas.records import Record

if TYPE_CHECKING:
    from streams.api.loops import LoopHandle

logger = logging.getLogger(__name__)

#: Consumer errors that mean a view cannot follow its topics any more: restart (with backoff) and say so.
FATAL_FOR_A_VIEW = frozenset({KafkaError._ALL_BROKERS_DOWN, KafkaError.UNKNOWN_TOPIC_OR_PART,
                              KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION})

#: (topic, partition)
Partition = tuple[str, int]
#: Where partitions never read start: given the consumer and those partitions, an offset for each one it knows
#: (the others start at the beginning).
StartOffsets = Callable[[Consumer, list[Partition]], Mapping[Partition, int]]


def from_the_beginning(_consumer: Consumer, _partitions: list[Partition]) -> Mapping[Partition, int]:
    return {}


class AllPartitionsReader:
    """Reads ``topics`` (full name -> record type) into ``on_record``, every partition, no group.

    ``name`` says which view in log lines ("actions feed"); ``caught_up`` is set once every partition has
    reached its end once (then ``handle.up()``); ``on_caught_up`` returns the line logged at that moment.
    """

    def __init__(self, *, name: str, group_label: str, bootstrap: str, codec: Codec,
                 topics: Mapping[str, type[Record]], on_record: Callable[[Record], None],
                 extra: dict[str, Any] | None = None, start_offsets: StartOffsets = from_the_beginning,
                 on_caught_up: Callable[[float], str] | None = None) -> None:
        self.name = name
        self._codec = codec
        self._types = dict(topics)
        self._on_record = on_record
        self._start_offsets = start_offsets
        self._on_caught_up = on_caught_up
        self._config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            # Never committed: the group id only satisfies librdkafka; partitions are assigned by hand.
            "group.id": f"rcaflow-{group_label}-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
        self._config.update(extra or {})
        self._stop = threading.Event()
        self._partitions: set[Partition] = set()
        self._eof: set[Partition] = set()
        #: (topic, partition) -> next offset to read; survives restarts of :meth:`run`.
        self.next_offsets: dict[Partition, int] = {}
        self.caught_up = asyncio.Event()

    def _assign(self, consumer: Consumer) -> None:
        partitions: list[Partition] = []
        for name in self._types:
            try:
                meta = consumer.list_topics(name, timeout=10).topics.get(name)
            except KafkaException as exc:  # named, so /readyz says which topic could not be read
                error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                raise KafkaException(KafkaError(error.code() if error is not None else KafkaError._TRANSPORT,
                                                f"no metadata for topic {name}: {error.str() if error else exc}")
                                     ) from exc
            if meta is None or meta.error is not None or not meta.partitions:
                why = meta.error.str() if meta is not None and meta.error is not None else "no partitions"
                raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART,
                                                f"topic {name} is not available ({why})"))
            partitions += [(name, p) for p in meta.partitions]
        self._partitions = set(partitions)
        self._eof &= self._partitions
        fresh = [tp for tp in partitions if tp not in self.next_offsets]
        found = self._start_offsets(consumer, fresh) if fresh else {}
        consumer.assign([TopicPartition(t, p, self.next_offsets.get((t, p), found.get((t, p), OFFSET_BEGINNING)))
                         for t, p in partitions])

    def _poll_batch(self, consumer: Consumer) -> bool:
        """Read what is there (up to 0.5 s); True once every partition has reached its end once."""
        for msg in consumer.consume(num_messages=500, timeout=0.5):
            topic, partition = msg.topic() or "", msg.partition() or 0
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._eof.add((topic, partition))
                elif err.code() in FATAL_FOR_A_VIEW:
                    raise KafkaException(err)
                else:
                    logger.debug("%s: %s", self.name, err.str())
                continue
            self.next_offsets[(topic, partition)] = (msg.offset() or 0) + 1
            kind = self._types.get(topic)
            if kind is None:
                continue
            try:
                record = self._codec.decode(msg.value() or b"", kind, topic=topic)
            except CodecError as exc:
                # The worker dead-letters poison records; a view just skips them.
                logger.warning("%s: skipping undecodable record at %s/%s/%s: %s", self.name, topic, partition,
                               msg.offset(), exc)
                continue
            self._on_record(record)
        return bool(self._partitions) and self._eof >= self._partitions

    async def run(self, handle: LoopHandle | None = None) -> None:
        """Follow the topics until :meth:`stop` (or the supervisor stops); closes its consumer on the way out."""
        consumer = new_consumer(self._config)  # its lines through logging, rate-limited
        started = time.monotonic()
        try:
            await asyncio.to_thread(self._assign, consumer)
            if self.caught_up.is_set() and handle is not None:
                handle.up()  # resumed where it was: the view is as current as the topics allow
            while not self._stop.is_set() and not (handle is not None and handle.stopping):
                if await asyncio.to_thread(self._poll_batch, consumer) and not self.caught_up.is_set():
                    if self._on_caught_up is not None:
                        logger.info("%s", self._on_caught_up(time.monotonic() - started))
                    self.caught_up.set()
                    if handle is not None:
                        handle.up()
        finally:
            await asyncio.to_thread(consumer.close)

    def stop(self) -> None:
        self._stop.set()
