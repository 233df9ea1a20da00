"""``rcaflow kb``'s consumer: incidents, rca-result, actions and approvals → the knowledge base.

A consumer group of its own (``<prefix>rcaflow-kb``), so the pipeline never waits for it: when
Elasticsearch is slow or down the KB only falls behind, and ``rcaflow_kb_lag`` says by how much.
Offsets are committed only after Elasticsearch acknowledged every write of the batch; a batch
that failed is sought back and read again after a pause, so nothing is skipped (and the writes are
idempotent, so nothing doubles). Commits are asynchronous (:class:`producers.kafka_commits.AsyncCommits`): a
commit the coordinator never answers would otherwise stop the consumer for good while it looked healthy.
Records that do not decode are counted and left in their topic: the worker's agents, which read the same
topics, already dead-letter them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import ValidationError

from producers.kafka_clients import new_consumer
from producers.kafka_commits import RETRY_AFTER_S, AsyncCommits
from schemas.codec import Codec
from schemas.errors import CodecError
from schemas.records import Record
from schemas.topics import ACTIONS, APPROVALS, INCIDENTS, RCA_RESULT, TopicSpec
from streams.kb.store import ApplyReport, KbError

logger = logging.getLogger(__name__)

KB_TOPICS: tuple[TopicSpec, ...] = (INCIDENTS, RCA_RESULT, ACTIONS, APPROVALS)
LAG_EVERY_S = 10.0
#: How long a stopping consumer waits for its last offset commits (the group reads again what they missed).
FINAL_COMMIT_WAIT_S = 10.0


class BatchStore(Protocol):
    """Where a consumer's batches go: the knowledge base (KbStore) or the analytics (AnalyticsStore).
    ``apply`` returns once every write was acknowledged, or raises KbError (the batch is read again)."""

    def apply(self, records: Iterable[Record]) -> ApplyReport: ...


class KbMetrics:
    """``<name>_records_total{topic,outcome}``, ``<name>_lag{topic,partition}``, batch failures; ``name`` is
    ``rcaflow_kb`` for the knowledge base and ``rcaflow_analytics`` for the analytics consumer."""

    def __init__(self, registry: CollectorRegistry | None = None, name: str = "rcaflow_kb") -> None:
        kwargs: dict[str, Any] = {"registry": registry} if registry is not None else {}
        self.name = name
        self.records = Counter(f"{name}_records", "Records the consumer handled",
                               ["topic", "outcome"], **kwargs)
        self.lag = Gauge(f"{name}_lag", "Records the consumer group is behind, per partition",
                         ["topic", "partition"], **kwargs)
        self.failures = Counter(f"{name}_batch_failures", "Batches Elasticsearch did not take (retried)",
                                **kwargs)
        self.commit_wait = Gauge(f"{name}_commit_wait_seconds",
                                 "How long offset commits have gone unanswered by the group coordinator (0: none); "
                                 "it grows across commits asked again",
                                 **kwargs)


class KbConsumer:
    def __init__(
        self,
        *,
        bootstrap: str,
        codec: Codec,
        store: BatchStore,
        extra: Mapping[str, Any] | None = None,
        topic_prefix: str = "",
        group_id: str = "rcaflow-kb",
        batch_size: int = 200,
        fast_rebalance: bool = True,
        metrics: KbMetrics | None = None,
        retry_s: tuple[float, float] = (0.5, 30.0),
        clock: Callable[[], float] = time.monotonic,
        commit_retry_s: float = RETRY_AFTER_S,
    ) -> None:
        self._codec = codec
        self._store = store
        self._specs = {spec.full_name(topic_prefix): spec for spec in KB_TOPICS}
        self._batch_size = batch_size
        self._metrics = metrics or KbMetrics()
        self._retry_s = retry_s
        self._clock = clock
        self._last_lag = float("-inf")
        #: Per partition, the offset after the last record Elasticsearch took; handed to the next commit.
        self._settled: dict[tuple[str, int], int] = {}
        self._commits = AsyncCommits("knowledge base" if self._metrics.name == "rcaflow_kb" else "analytics",
                                     retry_after_s=commit_retry_s)
        commits = weakref.ref(self._commits)  # the gauge must not keep a stopped consumer alive
        self._metrics.commit_wait.set_function(lambda: c.waiting_s() if (c := commits()) else 0.0)
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap, **(extra or {}),
            "group.id": f"{topic_prefix}{group_id}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "on_commit": self._commits.on_commit,
        }
        if fast_rebalance:
            config.update({"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        self._consumer = new_consumer(config)  # its lines through logging, rate-limited
        self._commits.bind(self._consumer)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        self._consumer.subscribe(list(self._specs), on_revoke=self._on_revoke)
        logger.info("knowledge base consuming %s", ", ".join(self._specs))
        delay = self._retry_s[0]
        try:
            while not self._stopping.is_set():
                messages = await asyncio.to_thread(self._consumer.consume, self._batch_size, 0.5)
                batch = [m for m in messages if not self._is_noise(m)]
                if batch:
                    if await self._settle(batch):
                        delay = self._retry_s[0]
                    else:
                        await self._pause(delay)
                        delay = min(delay * 2, self._retry_s[1])
                self._commits.commit(self._take_settled)
                await asyncio.to_thread(self._export_lag)
            await self._commits.finish(self._take_settled, self._consumer.poll, FINAL_COMMIT_WAIT_S)
        finally:
            await asyncio.to_thread(self._consumer.close)

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Revoked partitions are their next owner's to commit (it reads again from the committed offset; the
        writes are idempotent)."""
        for tp in partitions:
            self._settled.pop((tp.topic, tp.partition), None)
        self._commits.forget(partitions)

    def _take_settled(self) -> list[TopicPartition]:
        settled, self._settled = self._settled, {}
        return [TopicPartition(topic, partition, offset) for (topic, partition), offset in settled.items()]

    def commit_waiting_s(self) -> float:
        """How long the offset commit in flight has waited (0 when none): ``<name>_commit_wait_seconds``."""
        return self._commits.waiting_s()

    def _is_noise(self, msg: Message) -> bool:
        error = msg.error()
        if error is None:
            return False
        if error.code() != KafkaError._PARTITION_EOF:
            logger.warning("knowledge base: consumer error %s", error)
        return True

    async def _settle(self, batch: list[Message]) -> bool:
        """Write the batch, then commit it; on a failed write, seek back so the same records come again."""
        records: list[Record] = []
        for msg in batch:
            record = self._decode(msg)
            if record is not None:
                records.append(record)
        try:
            report = await asyncio.to_thread(self._store.apply, records)
        except KbError as exc:
            self._metrics.failures.inc()
            logger.warning("knowledge base: batch of %d not written, will retry: %s", len(records), exc)
            await asyncio.to_thread(self._rewind, batch)
            return False
        for msg in batch:
            self._metrics.records.labels(msg.topic() or "", "written").inc()
        if report.rejected:
            logger.error("knowledge base: %d document(s) refused for good: %s", len(report.rejected),
                         ", ".join(report.rejected[:10]))
        for tp in self._positions(batch, first=False):  # committed by the loop, asynchronously
            self._settled[(tp.topic, tp.partition)] = tp.offset
        return True

    def _decode(self, msg: Message) -> Record | None:
        topic = msg.topic() or ""
        spec = self._specs[topic]
        try:
            return self._codec.decode(msg.value() or b"", spec.value, topic=topic)
        except (CodecError, ValidationError) as exc:
            self._metrics.records.labels(topic, "undecodable").inc()
            logger.warning("knowledge base: undecodable record %s/%s@%s skipped (left in the topic): %s",
                           topic, msg.partition(), msg.offset(), exc)
            return None

    @staticmethod
    def _positions(batch: list[Message], *, first: bool) -> list[TopicPartition]:
        chosen: dict[tuple[str, int], int] = {}
        for msg in batch:
            key, offset = (msg.topic() or "", msg.partition() or 0), msg.offset() or 0
            if key not in chosen or (offset < chosen[key] if first else offset > chosen[key]):
                chosen[key] = offset
        return [TopicPartition(t, p, o if first else o + 1) for (t, p), o in chosen.items()]

    def _rewind(self, batch: list[Message]) -> None:
        for tp in self._positions(batch, first=True):
            self._consumer.seek(tp)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    def _export_lag(self) -> None:
        """End offset minus committed position per assigned partition, at most every LAG_EVERY_S.

        The ends are the ones the consumer's own fetches brought back (``cached=True``): asking the broker costs a
        ListOffsets per partition, each waiting behind the consumer's long-poll fetch on the same connection
        (~0.5 s, ``fetch.wait.max.ms``), and the loop stood still meanwhile (~6 s every 10 s with 12 partitions).
        A partition not fetched yet has no end: it is left out until it has one.
        """
        now = self._clock()
        if now - self._last_lag < LAG_EVERY_S:
            return
        self._last_lag = now
        assigned = self._consumer.assignment()
        if not assigned:
            return
        try:
            committed = self._consumer.committed(assigned, timeout=5)
        except KafkaException as exc:  # the coordinator moving, a slow broker: the next round reads again
            logger.warning("%s: cannot read the committed offsets for the lag yet: %s", self._commits.who, exc)
            return
        for tp in committed:
            low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            position = tp.offset if tp.offset >= 0 else low
            if high < 0 or position < 0:
                continue
            self._metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - position))

    def lag_now(self) -> dict[tuple[str, int], int]:
        """The lag as exported, read back (for the command's status line and the tests)."""
        self._last_lag = float("-inf")
        self._export_lag()
        out = {}
        for metric in self._metrics.lag.collect():
            for sample in metric.samples:
                out[(sample.labels["topic"], int(sample.labels["partition"]))] = int(sample.value)
        return out
