"""The Faust app of the worker: its topics, its tables, and how agents send what stages return.

Names here are frozen: the app id, table names and internal topic names name
changelog and repartition topics on the cluster, so renaming one loses its
state (docs/architecture.md lists them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, cast

import faust
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TableT

from schemas.codec import AvroSingleObjectCodec, Codec
from schemas.limits import PRODUCER_MAX_REQUEST_BYTES
from schemas.records import Record
from schemas.topics import (
    ACTIONS,
    ALL_TOPICS,
    APPROVALS,
    AUDIT,
    DEAD_LETTER,
    INCIDENTS,
    NORMALIZED,
    RAW_MAIL,
    RCA_RESULT,
)
from streams.settings import Settings
from streams.stages.core import Out
from streams.wiring.topics_admin import (
    ACTION_COOLDOWNS,
    APPROVAL_DECISIONS,
    AUDIT_HEAD,
    AUDIT_INPUT_SUFFIX,
    AWAITING_APPROVAL,
    CORRELATE_INPUT_SUFFIX,
    DECIDE_GROUP_BY,
    DEDUP_STATE,
    INCIDENT_GROUPS,
    NOTIFIED,
    NOTIFY_INPUT_SUFFIX,
    WITHDRAW_INPUT_SUFFIX,
    repartition_topic_name,
)
from streams.worker.acked_table import AckedTable, ChangelogWrite, await_acked, collecting
from streams.worker.cleared_queues import forget_cleared_messages
from streams.worker.commit_floor import guard_commits
from streams.worker.decoded import DecodedRecords
from streams.worker.failures import IN_FLIGHT, Delivery, acked_in_order, retry_transient, send_failure
from streams.worker.kafka_auth import faust_credentials
from streams.worker.poll_size import STREAM_BUFFER_MAXSIZE, max_poll_records
from streams.worker.rebalance import seek_before_fetching

R = TypeVar("R", bound=Record)


_PARTITIONER = DefaultPartitioner()

#: How much longer than the producer's request timeout (``worker.producer_request_timeout_s``) a queued changelog
#: write may stay unanswered before it counts as a transient failure (and is waited for again): aiokafka fails a
#: batch after the request timeout, so past that the producer itself is stuck.
CHANGELOG_ACK_MARGIN_S = 5.0


def partition_of(key: str, partitions: int) -> int:
    """The partition a record keyed ``key`` goes to (the producers' murmur2), so the table row's owner."""
    every = list(range(partitions))
    return int(_PARTITIONER(key.encode("utf-8"), every, every))


def faust_broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


@dataclass(frozen=True, slots=True)
class Tables:
    """The worker's state; every table is keyed like the topic whose agent writes it."""

    #: The open incident and window per tenant:fingerprint.
    dedup_state: TableT[str, Any]
    #: The audit chain head per tenant.
    audit_head: TableT[str, Any]
    #: Actions awaiting approval, keyed tenant:action-id like actions and approvals, so all three meet in one
    #: partition.
    awaiting: TableT[str, Any]
    #: When each action last went ahead per tenant:fingerprint, for the policy's cooldowns.
    cooldowns: TableT[str, Any]
    #: Message references per tenant:incident, so the LLM's answer and the approvals update the first message.
    #: Written only by the notify agent, whose input is keyed tenant:incident, so one partition owns a row.
    notified: TableT[str, Any]
    #: The first decision per tenant:action-id, so a second one (another API replica, a replay) is refused with
    #: who decided what and when.
    decided: TableT[str, Any]
    #: Open incident groups per tenant:cluster (the correlate agent), keyed like its input topic.
    groups: TableT[str, Any]


#: How encoded records leave the worker: (topic, key, value). Faust's producer by default; tests of a single
#: agent pass their own and read what would have gone to Kafka.
Deliver = Callable[[faust.TopicT, bytes, bytes], Awaitable[object]]


async def _to_kafka(topic: faust.TopicT, key: bytes, value: bytes) -> object:
    return await _send_acked(topic, key, value)


async def _send_acked(topic: faust.TopicT, key: bytes, value: bytes, headers: list[tuple[str, bytes]] | None = None,
                      partition: int | None = None) -> object:
    """Sends now and returns once the broker acknowledged the record; raises what the broker said otherwise.

    ``topic.send`` only queues: it returns the delivery future, and a record the broker refuses
    (too large, say) would merely be logged by Faust while the input offset is committed. Awaiting
    that future is what makes "outputs acked before the input is acked" hold. Inside a pipelined guard
    (``IN_FLIGHT`` set, streams/worker/guard.py) the future is handed to the guard instead, which acks the
    input only once it resolved: the record is queued here, in order, and the agent goes on.
    """
    try:
        delivery = await topic.send(key=key, value=value, headers=headers, partition=partition, force=True)
        in_flight = IN_FLIGHT.get()
        if in_flight is not None:
            in_flight.append(Delivery(topic.get_topic_name(), len(value), delivery,
                                      partial(_send_acked, topic, key, value, headers, partition)))
            return delivery
        return await delivery
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the broker boundary: aiokafka's errors become our typed ones
        raise send_failure(exc, topic=topic.get_topic_name(), size=len(value)) from exc


class WorkerApp:
    """The Faust app with rcaflow's topics and tables; agents are added by :mod:`streams.worker.agents`."""

    def __init__(self, settings: Settings, bootstrap: str, codec: Codec, *, deliver: Deliver = _to_kafka) -> None:
        prefix = settings.kafka.topic_prefix
        self.settings = settings
        self.codec = codec
        #: The packaged single-object codec never leaves the process; a registry codec may block on HTTP.
        self._codec_is_local = isinstance(codec, AvroSingleObjectCodec)
        self._decoded = DecodedRecords()
        self._deliver = deliver
        self.partitions = settings.worker.partitions
        self._changelog_wait_s = settings.worker.producer_request_timeout_s + CHANGELOG_ACK_MARGIN_S
        fast: dict[str, Any] = {}
        if settings.kafka.fast_rebalance:
            fast = {
                "broker_session_timeout": 2.0,
                "broker_heartbeat_interval": 0.5,
                "broker_rebalance_timeout": 2.0,
                "broker_commit_interval": 0.5,
            }
        if settings.kafka.single_record_batches:
            fast["producer_max_batch_size"] = 1  # aiokafka still takes one record per batch
        self.app = faust.App(
            f"{prefix}{settings.worker.app_id}",
            broker=faust_broker_urls(bootstrap),
            # kafka.security, as every confluent-kafka client of rcaflow gets it (streams.settings.client_config).
            broker_credentials=faust_credentials(settings.kafka.security),
            store=settings.worker.store,
            datadir=str(settings.worker.data_dir),
            key_serializer="raw",
            value_serializer="raw",
            topic_partitions=self.partitions,
            topic_allow_declare=True,
            web_enabled=False,
            # Each agent waits for its outputs' acks before the next input, so lingering adds latency; but with
            # linger 0 the worker restarted after a kill stalled (tests/integration/flow/test_restart.py, 3 of 3
            # runs: the first acks never came), with 5 it did not.
            producer_linger_ms=5,
            # A dead-lettered mail carries the whole mail (raw-mail and dead-letter allow 11 MiB records).
            producer_max_request_size=PRODUCER_MAX_REQUEST_BYTES,
            # How long a send may wait for its topic's metadata or its acks before it fails (and is retried with
            # backoff, in the log). Faust's default, 20 min, turned a topic missing at the first assignment into
            # a silent 20-minute hang of the agent (aiokafka polls the metadata that long). Every topic the worker
            # uses is created before it starts (streams.wiring.topics_admin.worker_topics); this bounds the rest.
            producer_request_timeout=settings.worker.producer_request_timeout_s,
            # ... and the worker reads raw-mail, whose records are that large (aiokafka's default is 1 MiB
            # per partition; it would still fetch an oversized first record, but one fetch per record).
            consumer_max_fetch_size=PRODUCER_MAX_REQUEST_BYTES,
            consumer_auto_offset_reset="earliest",
            # A poll never fills an agent's queue: Faust waits on a full one before it delivers anything else, so one
            # poll of a backlog left every other agent without input for minutes (streams.worker.poll_size).
            stream_buffer_maxsize=STREAM_BUFFER_MAXSIZE,
            broker_max_poll_records=max_poll_records(
                STREAM_BUFFER_MAXSIZE, max(self.partitions, *(spec.partitions for spec in ALL_TOPICS))),
            table_cleanup_interval=60.0,
            **fast,
        )
        self.topics: Mapping[str, faust.TopicT] = {
            spec.name: self.app.topic(spec.full_name(prefix), key_type=bytes, value_type=bytes,
                                      partitions=spec.partitions, internal=False)
            for spec in (RAW_MAIL, NORMALIZED, INCIDENTS, RCA_RESULT, ACTIONS, AUDIT, APPROVALS, DEAD_LETTER)
        }
        base = f"{prefix}{settings.worker.app_id}"
        self.notify_input = self.app.topic(f"{base}{NOTIFY_INPUT_SUFFIX}", key_type=bytes, value_type=bytes,
                                           partitions=self.partitions, internal=True)
        # Each tenant's audit chain needs a single writer: every audited record is routed, keyed by tenant,
        # into this topic, and one agent appends to the chains from there.
        self.audit_input = self.app.topic(f"{base}{AUDIT_INPUT_SUFFIX}", key_type=bytes, value_type=bytes,
                                          partitions=self.partitions, internal=True)
        # Resolved incidents re-keyed by tenant:action-id, so each lands where that action's awaiting row lives.
        self.withdraw_input = self.app.topic(f"{base}{WITHDRAW_INPUT_SUFFIX}", key_type=bytes, value_type=bytes,
                                             partitions=self.partitions, internal=True)
        # rca-result re-keyed by tenant:fingerprint (the decide-route agent), so one target's cooldown memory
        # lives in one partition. The name is the one Faust's group_by derived before (frozen: records in flight
        # and the group's offsets on deployed clusters); the forward is now ours, awaited and retried.
        # Dedup's incident records re-keyed tenant:cluster, so the members of one group meet in one partition.
        self.correlate_input = self.app.topic(f"{base}{CORRELATE_INPUT_SUFFIX}", key_type=bytes, value_type=bytes,
                                              partitions=self.partitions, internal=True)
        self.decide_input = self.app.topic(repartition_topic_name(prefix, *DECIDE_GROUP_BY), key_type=bytes,
                                           value_type=bytes, partitions=self.partitions, internal=True)

        def table(name: str) -> TableT[str, Any]:
            # Table changelogs use the app's table serializers (json), not the raw topic serializers. AckedTable:
            # the writes an agent makes inside :meth:`acked` are awaited before its input is acked.
            acked = AckedTable(self.app, name=name, default=None, beacon=self.app.tables.beacon,
                               partitions=self.partitions)
            self.app.tables.add(acked)
            return acked

        self.tables = Tables(
            dedup_state=table(DEDUP_STATE),
            audit_head=table(AUDIT_HEAD),
            awaiting=table(AWAITING_APPROVAL),
            cooldowns=table(ACTION_COOLDOWNS),
            notified=table(NOTIFIED),
            decided=table(APPROVAL_DECISIONS),
            groups=table(INCIDENT_GROUPS),
        )
        # Faust fetched stream partitions while seeking them after an assignment (lost and stalled records).
        seek_before_fetching(self.app)
        # Faust cleared the agents' queues at a rebalance without counting the copies down (wait_empty for ever).
        forget_cleared_messages(self.app)
        # Faust committed past records no agent had finished (at a partition's start, off by one, at a revocation).
        guard_commits(self.app)

    def topic(self, name: str) -> faust.TopicT:
        return self.topics[name]

    @property
    def sends_to_kafka(self) -> bool:
        """Whether records go to Kafka through Faust's producer (not a test's own delivery of one agent)."""
        return self._deliver is _to_kafka

    def acked(self, step: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
        """``step``, then a wait until the broker has every table changelog write ``step`` made.

        Agents run their record's work through this (inside their guard), so an input is acked only
        once the table rows it changed are on their changelogs, where the next assignment of the
        partition rebuilds them from. Transient failures of those writes re-send the row's current value
        with backoff; a permanent one is raised, and the guard dead-letters the input. Writes made before
        ``step`` failed are waited for too: they are in the table already.
        """
        async def run() -> None:
            with collecting() as writes:
                try:
                    await step()
                except Exception:
                    await self._rows_acked(writes)
                    raise
            await self._rows_acked(writes)

        return run

    async def _rows_acked(self, writes: list[ChangelogWrite]) -> None:
        if self._deliver is _to_kafka:
            await await_acked(writes, wait_s=self._changelog_wait_s)
            return
        # A test of one agent (no producer runs): its table rows go where its records go.
        for write in writes:
            message = write.future.message
            await self._deliver(write.table.changelog_topic, cast(bytes, message.key) or b"",
                                cast(bytes, message.value) or b"")

    async def send(self, outs: Iterable[Out]) -> None:
        """Encode each output and send it, in order; returns once the broker acknowledged every one.

        A broker or registry that is unavailable is waited out (capped backoff, no limit); a permanent
        failure (an output too large for its topic, say) is raised for the agent to dead-letter the input.
        """
        # All of them are handed to the producer first and their acks awaited after, in order (one produce
        # request rather than one per output); inside a pipelined guard its queue awaits them instead.
        batch: list[Delivery] | None = [] if IN_FLIGHT.get() is None else None
        token = IN_FLIGHT.set(batch) if batch is not None else None
        try:
            for out in outs:
                target = self.topics[out.spec.name]
                name = target.get_topic_name()
                value = await retry_transient(partial(self.encode, out.record, topic=name), f"encoding for {name}")
                await retry_transient(partial(self._deliver, target, out.key.encode("utf-8"), value),
                                      f"sending to {name}")
        finally:
            if token is not None:
                IN_FLIGHT.reset(token)
        if batch:
            await acked_in_order(batch, "worker")

    async def forward(self, topic: faust.TopicT, key: bytes, value: bytes,
                      headers: list[tuple[str, bytes]] | None = None, partition: int | None = None) -> None:
        """Sends bytes as they are (routing, notify requests), acked like :meth:`send`."""
        # Plain records go through the same delivery seam as :meth:`send` (tests of one agent collect them).
        deliver = partial(self._deliver, topic, key, value) if headers is None and partition is None else \
            partial(_send_acked, topic, key, value, headers, partition)
        await retry_transient(deliver, f"sending to {topic.get_topic_name()}")

    async def encode(self, record: Record, *, topic: str) -> bytes:
        """The record's bytes; a registry-backed codec may call the registry, so it runs off the event loop."""
        if self._codec_is_local:
            return self.codec.encode(record, topic=topic)
        return await asyncio.to_thread(self.codec.encode, record, topic=topic)

    async def decode(self, data: bytes, record_type: type[R], *, topic: str) -> R:
        """The record in ``data``; like :meth:`encode`, off the event loop when the codec may do I/O."""
        if self._codec_is_local:
            return self._decoded.decode(data, record_type, partial(self.codec.decode, data, record_type, topic=topic))
        return await asyncio.to_thread(self.codec.decode, data, record_type, topic=topic)
