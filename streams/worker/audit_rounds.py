"""The audit agent's group commit: a round of chain records per broker round trip, each head row after its records.

The audit agent used to chain one record at a time and wait for two acks in a row per record (its audit
record, then the tenant's ``audit-head`` changelog row): at least two producer lingers and round trips per
record, ≤ ~100 records/s, the whole worker's bound. Here the agent only decodes and queues its inputs
(holding each Faust event, so the agent's own ack does not finish it) and goes on with the next while a
committer task works through the queue in *rounds*:

1. every input queued so far (up to ``worker.round_size``, 512 by default) is chained, in arrival order, from
   the tenants' heads in the table (the head of a tenant advances in memory along the round);
2. the round's audit records go out as one record batch per audit partition (aiokafka's
   ``create_batch``/``send_batch``), all partitions at once; a partition whose records do not fit one batch
   sends the next batch only after the broker acknowledged the one before;
3. only then is each tenant's new head written to its table (one row per tenant and round, not per
   record), and the round waits for those changelog acks;
4. then the round's inputs are acked, in arrival order.

What this keeps, and why it is built so:

- **The head on the changelog never claims a record the audit topic does not have.** A head row is written
  only after every record up to it is acknowledged (step 3 after step 2). A crash before the row leaves the
  old head: the re-delivered inputs are chained again from it, the same steps in the same order (one tenant's
  inputs are one audit-input partition), which ``rcaflow audit verify`` reports as a crash artefact
  (re-appended from the same predecessor), as it did for the one-at-a-time agent.
- **No gap in the chain when the broker fails a send.** A Kafka record batch is appended whole or not at all,
  and nothing later for the same audit partition is handed to the producer before it is acknowledged. With
  records sent one by one behind each other instead, aiokafka fails the oldest batch of a partition when it
  expires and then sends the next one: record N+1 on the topic without N, which the verifier must take for
  a deletion. A failed batch is sent again whole (the same bytes), so at worst a record appears twice (the
  "same record written again" artefact).
- **An input is acked only after its audit record and every head row up to it are acknowledged** (step 4;
  in arrival order, because Faust commits up to the first unacked offset, and past an unacked offset 0).
- **Anything permanent falls back to one input at a time.** A batch the broker refuses for good, a record
  that cannot be encoded, or a stage error: the round is done again record by record through the agent's
  guard (the old path), which dead-letters exactly the input that fails. Records of that round already on
  the topic are then chained again from the stored head (a crash artefact, as above). A head row its
  changelog refuses for good dead-letters the round's inputs (their records are on the topic), as a table
  write refused for good dead-letters its input everywhere in the worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import aiokafka
from faust.types import EventT, TableT

from schemas.errors import RcaflowError
from schemas.topics import AUDIT
from streams.errors import StreamsError
from streams.stages.audit import Audit, Auditable, content_id
from streams.stages.core import Position
from streams.worker.app import WorkerApp
from streams.worker.edge import processing
from streams.worker.failures import retry_transient, send_failure
from streams.worker.guard import Guard
from streams.worker.held_rounds import HeldRounds

logger = logging.getLogger(__name__)



@dataclass(slots=True)
class AuditInput:
    """One audit-input record the agent has taken: its event (held until acked), bytes, position and record."""

    event: EventT[bytes]
    value: bytes
    where: Position
    tenant: str
    #: None once it needs no chaining: its dead letter is acknowledged already.
    record: Auditable | None


@dataclass(frozen=True, slots=True)
class _Keyed:
    key: bytes
    value: bytes


class RoundFailedError(StreamsError):
    """A round cannot go as a batch for a reason retrying does not change; it is done again input by input."""


class AuditRounds(HeldRounds[AuditInput]):
    """The audit agent's queue of taken inputs and the committer task that chains, sends and acks them in rounds.

    ``chain_one`` is the one-input path (chain from the stored head, send, store the head), run under the
    agent's guard for a round that cannot go as a batch.
    """

    def __init__(self, worker: WorkerApp, stage: Audit, guard: Guard, heads: TableT[str, Any],
                 chain_one: Callable[[AuditInput], Awaitable[None]]) -> None:
        super().__init__(guard.stage, round_size=worker.settings.worker.round_size,
                         max_held=worker.settings.worker.max_held)
        self._worker = worker
        self._audit = stage
        self._guard = guard
        self._heads = heads
        self._chain_one = chain_one

    async def finish(self, items: list[AuditInput]) -> None:
        todo = [item for item in items if item.record is not None]
        if not todo:
            return
        try:
            heads = await self._send_round(todo)
        except RoundFailedError as exc:
            logger.warning("audit: a round of %d records cannot go as a batch (%s); chaining them one by one",
                           len(todo), exc.__cause__ or exc)
            await self._one_by_one(todo)
            return
        try:
            await self._worker.acked(partial(self._store_heads, heads))()
        except Exception as exc:  # permanent (transient ones are retried inside): kept as a failed step would be
            if not isinstance(exc, RcaflowError):
                logger.exception("audit: unexpected error storing the chain heads of a round")
            for item in todo:
                await self._guard.keep(item.value, item.where, exc, tenant=item.tenant)

    async def _one_by_one(self, todo: list[AuditInput]) -> None:
        for item in todo:
            with processing(item.event):  # its head row goes where the agent would have written it
                await self._guard.run(item.value, item.where, self._worker.acked(partial(self._chain_one, item)),
                                      tenant=item.tenant)

    async def _send_round(self, todo: list[AuditInput]) -> dict[str, tuple[AuditInput, Any]]:
        """Chains the round, sends its records and returns once all are acknowledged: tenant → (input, new head)."""
        worker, topic = self._worker, self._worker.topic(AUDIT.name).get_topic_name()
        producer = _kafka_producer(worker)
        try:
            await retry_transient(partial(producer.partitions_for, topic), f"audit: metadata of {topic}")
            heads: dict[str, tuple[AuditInput, Any]] = {}
            by_partition: dict[int, list[_Keyed]] = {}
            for item in todo:
                assert item.record is not None
                last = heads[item.tenant][1] if item.tenant in heads else self._heads.get(item.tenant)
                result = self._audit(item.record, last, content_id(item.value))
                if result.state is not None:
                    heads[item.tenant] = (item, result.state)
                for out in result.outputs:
                    value = await retry_transient(partial(worker.encode, out.record, topic=topic),
                                                  f"encoding for {topic}")
                    key = out.key.encode("utf-8")
                    # The producer's own partitioner, as for every other send of the tenant's records.
                    partition = int(producer._partition(topic, None, None, None, key, None))
                    by_partition.setdefault(partition, []).append(_Keyed(key, value))
            await asyncio.gather(*(self._land(producer, topic, partition, records)
                                   for partition, records in by_partition.items()))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # nothing transient gets here (retried above): the round goes one by one
            raise RoundFailedError(f"{type(exc).__name__}: {exc}") from exc
        return heads

    async def _land(self, producer: aiokafka.AIOKafkaProducer, topic: str, partition: int,
                    records: list[_Keyed]) -> None:
        """Sends one partition's records as record batches, each only once the one before is acknowledged."""
        start = 0
        while start < len(records):
            taken = await retry_transient(partial(self._send_batch, producer, topic, partition, records, start),
                                          f"audit: sending a batch to {topic}[{partition}]")
            start += taken

    @staticmethod
    async def _send_batch(producer: aiokafka.AIOKafkaProducer, topic: str, partition: int, records: list[_Keyed],
                          start: int) -> int:
        """Builds one batch from ``records[start:]``, sends it, waits for its ack; how many records it held.

        Built again on every attempt: a batch that failed is sent whole again, never in part.
        """
        batch = producer.create_batch()
        taken, size = 0, 0
        for record in records[start:]:
            # The first record always fits (a batch takes one record of any size); the broker judges its size.
            if batch.append(key=record.key, value=record.value, timestamp=None) is None:
                break
            taken += 1
            size += len(record.value)
        try:
            delivery = await producer.send_batch(batch, topic, partition=partition)
            await asyncio.shield(delivery)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the broker boundary, mapped as for every send of the worker
            raise send_failure(exc, topic=topic, size=size) from exc
        return taken

    async def _store_heads(self, heads: dict[str, tuple[AuditInput, Any]]) -> None:
        for tenant, (item, state) in heads.items():
            # Faust puts a table row on the changelog partition of the event being processed: the tenant's
            # audit-input partition, as when the agent wrote it itself.
            with processing(item.event):
                self._heads[tenant] = state


def _kafka_producer(worker: WorkerApp) -> aiokafka.AIOKafkaProducer:
    """The aiokafka producer under Faust's (its batch API is not on Faust's producer interface)."""
    try:
        return cast(aiokafka.AIOKafkaProducer, cast(Any, worker.app.producer)._ensure_producer())
    except Exception as exc:  # not started (yet): the round waits as for any unavailable broker
        raise RoundFailedError(f"no producer: {exc}") from exc


def is_batched(worker: WorkerApp) -> bool:
    """Rounds need Kafka's batch API; a worker whose sends go elsewhere (a test of one agent) chains one by one."""
    return worker.sends_to_kafka

