"""The one rule every agent follows: an input is finished only when its outputs, or its dead letter, are acked.

A transient failure (broker, schema registry or LLM unavailable) is retried with
capped backoff for as long as it lasts; the input is neither dead-lettered nor
skipped for it. Any other failure is permanent for this input: it goes to
dead-letter with the stage, the reason, its position and its bytes. Nothing
escapes an agent's loop but cancellation, so an agent never crashes on a record
(a crash would let Faust ack, and so commit, the record it was working on).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from faust import current_event
from faust.types import EventT

from schemas.errors import RcaflowError
from schemas.records import Record
from streams.stages.core import Position, StageContext, dead_letter
from streams.worker.app import WorkerApp
from streams.worker.failures import (
    CURRENT_STAGE,
    IN_FLIGHT,
    Backoff,
    Delivery,
    OutputTooLargeError,
    is_transient,
    retry_transient,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R", bound=Record)

#: When the broker refuses even the (already cut) dead letter as too large, its payload is cut to this.
LAST_RESORT_PAYLOAD_BYTES = 64 * 1024

#: Agents (guard stages) that keep no table state: their next input may be worked on while the broker still
#: acknowledges the outputs of the previous ones (the input itself is acked only after). A stage that writes a
#: table must not be here: its next record would read state whose outputs are not on the broker yet, and a crash
#: could leave the state's changelog written without them (a re-delivered input then looks done).
PIPELINED_STAGES = frozenset({"normalize", "rca", "decide-route", "audit-ingest", "audit-actions", "audit-refusals",
                              "notify-outcomes"})

#: Inputs a pipelined agent may have finished but not yet acked (their outputs in flight); the next waits.
MAX_IN_FLIGHT = 256


def tenant_of(where: Position) -> str:
    """The tenant a record belongs to, from its key (every rcaflow key starts with ``tenant`` or ``tenant:``)."""
    return (where.key or b"").decode("utf-8", "replace").split(":", 1)[0]


class Guard:
    """Runs one agent's work on one input under the rule above; ``stage`` names the dead letters."""

    def __init__(self, worker: WorkerApp, stage: str, context: StageContext, *,
                 backoff: Backoff | None = None) -> None:
        self.worker = worker
        self.stage = stage
        self.context = context
        self.backoff = backoff or Backoff()
        self._pipeline = AckQueue(self) if stage in PIPELINED_STAGES else None

    async def retrying(self, what: str, where: Position, op: Callable[[], Awaitable[T]]) -> T:
        """``op``'s result; transient failures are retried with capped backoff until it succeeds."""
        def counted(_exc: BaseException) -> None:
            self.context.count(self.stage, "retried")

        stage = CURRENT_STAGE.set(self.stage)  # retries inside op (the sends) are reported under this stage
        try:
            return await retry_transient(
                op, f"{self.stage}: {what} of {where.topic}[{where.partition}]@{where.offset}", backoff=self.backoff,
                on_retry=counted,
            )
        finally:
            CURRENT_STAGE.reset(stage)

    async def run(self, value: bytes, where: Position, step: Callable[[], Awaitable[object]], *,
                  tenant: str = "") -> bool:
        """Finishes one input: ``step`` succeeded (True) or the input is kept in dead-letter (False).

        In a pipelined stage (:data:`PIPELINED_STAGES`) "finished" means handed on: the outputs are queued
        on the producer and the input's event is held (its reference count raised), so the agent's ack
        after this call does not ack it; :class:`AckQueue` acks it once every output is acknowledged, in
        the order the inputs came, so the committed offset never passes an input whose outputs could
        still be lost. Elsewhere the outputs are acknowledged before this returns.
        """
        pipeline = self._pipeline
        if pipeline is None:
            return await self._finish(value, where, step, tenant=tenant)
        await pipeline.room()  # bounded: while the broker does not answer, the agent stops taking inputs
        held = pipeline.hold(where)
        if held is None:
            return await self._finish(value, where, step, tenant=tenant)
        deliveries: list[Delivery] = []
        token = IN_FLIGHT.set(deliveries)
        try:
            ok = await self._finish(value, where, step, tenant=tenant)
        finally:
            IN_FLIGHT.reset(token)
        pipeline.push(_Pending(held, value, where, tenant, deliveries))
        return ok

    async def _finish(self, value: bytes, where: Position, step: Callable[[], Awaitable[object]], *,
                      tenant: str = "") -> bool:
        try:
            await self.retrying("processing", where, step)
            return True
        except Exception as exc:  # the agent boundary: a record that cannot be processed is kept, never lost
            if not isinstance(exc, RcaflowError):
                logger.exception("%s: unexpected error on %s[%s]@%s", self.stage, where.topic, where.partition,
                                 where.offset)
            await self.keep(value, where, exc, tenant=tenant)
            return False

    async def keep(self, value: bytes, where: Position, exc: BaseException, *, tenant: str = "") -> None:
        """Counts the input as dead-lettered and returns once its dead letter is acknowledged."""
        self.context.count(self.stage, "dead_letter")
        token = IN_FLIGHT.set(None)  # the dead letter is acknowledged before anything goes on
        try:
            await self.dead_letter(value, where, exc, tenant=tenant or tenant_of(where))
        finally:
            IN_FLIGHT.reset(token)

    async def decode(self, value: bytes, record_type: type[R], where: Position) -> R:
        """The record in ``value``; a registry outage is waited out, undecodable bytes raise (CodecError)."""
        return await self.retrying("decoding", where,
                                   lambda: self.worker.decode(value, record_type, topic=where.topic))

    async def dead_letter(self, value: bytes, where: Position, exc: BaseException, *, tenant: str = "") -> None:
        """Sends the dead letter and returns only once the broker acked it: this input is never dropped.

        A dead letter the broker still finds too large is cut further; one it refuses for another
        reason is retried with backoff (the partition waits, and the log says why) rather than lost.
        """
        letter = dead_letter(self.stage, value, where, exc, tenant=tenant, context=self.context)
        attempt = 0
        while True:
            try:
                await self.retrying("dead-lettering", where, partial(self.worker.send, [letter]))
                return
            except OutputTooLargeError:
                letter = dead_letter(self.stage, value, where, exc, tenant=tenant, context=self.context,
                                     max_payload_bytes=LAST_RESORT_PAYLOAD_BYTES)
            except Exception:  # nowhere left to put it: keep trying, loudly, and never ack the input
                delay = self.backoff.delay(attempt)
                attempt += 1
                logger.exception("%s: cannot dead-letter %s[%s]@%s; retry %d in %.1fs", self.stage, where.topic,
                                 where.partition, where.offset, attempt, delay)
                await asyncio.sleep(delay)


@dataclass(slots=True)
class _Pending:
    """An input the agent has worked on whose outputs may still be on their way to the broker."""

    event: EventT[bytes]
    value: bytes
    where: Position
    tenant: str
    deliveries: list[Delivery] = field(default_factory=list)


class AckQueue:
    """A pipelined agent's inputs in arrival order, each acked once its outputs are acknowledged.

    Acks go strictly in order: Faust commits up to the first unacked offset, but not at a partition's
    start (a committed offset of 0 or none lets an ack of offset 1 commit past an unacked 0), so an input
    is acked only after every input before it. When an ack fails for a reason that may pass (the broker
    away), that record and every record queued behind it is sent again in order and waited for with
    backoff, so the last copy of each key's records keeps the inputs' order; a refusal for good
    dead-letters that input (its bytes and the reason), as when the step itself failed.
    """

    def __init__(self, guard: Guard) -> None:
        self._guard = guard
        self._queue: deque[_Pending] = deque()
        self._finisher: asyncio.Task[None] | None = None
        self._resend = False
        self._space = asyncio.Event()

    def hold(self, where: Position) -> EventT[bytes] | None:
        """The agent's current event for this input, held so the agent's own ack does not finish it."""
        event = current_event()
        if event is None:
            return None
        msg = event.message
        if (msg.topic, msg.partition, msg.offset) != (where.topic, where.partition, where.offset):
            return None  # not the record the agent iterates (a test calling the guard directly): no pipelining
        msg.incref()
        return event

    async def room(self) -> None:
        while len(self._queue) >= MAX_IN_FLIGHT:
            self._space.clear()
            await self._space.wait()

    def push(self, pending: _Pending) -> None:
        self._queue.append(pending)
        if self._finisher is None or self._finisher.done():
            # Its own context: the sends it repeats must wait for their acks, not go into a record's list.
            self._finisher = asyncio.get_running_loop().create_task(
                self._finish_in_order(), name=f"rcaflow-acks-{self._guard.stage}", context=contextvars.Context())

    async def _finish_in_order(self) -> None:
        CURRENT_STAGE.set(self._guard.stage)
        while self._queue:
            pending = self._queue[0]
            await self._settle(pending)
            self._queue.popleft()
            pending.event.ack()  # the last holder: the consumer may now commit past this input
            self._space.set()
        self._resend = False

    async def _settle(self, pending: _Pending) -> None:
        """Returns once every output of ``pending`` is acknowledged, or the input is in dead-letter."""
        guard, where = self._guard, pending.where
        for index, delivery in enumerate(pending.deliveries):
            try:
                if self._resend:
                    delivery.abandon()
                    await guard.retrying("sending again", where, delivery.resend)
                    continue
                try:
                    await delivery.acked()
                except Exception as exc:  # classified: transient ones are sent again, in order, with backoff
                    if not is_transient(exc):
                        raise
                    self._resend = True  # everything queued behind is sent again after this, in order
                    await guard.retrying("sending again", where, delivery.resend)
            except Exception as exc:  # refused for good: keep the input, as a failed step would be
                if not isinstance(exc, RcaflowError):
                    logger.exception("%s: unexpected error waiting for the outputs of %s[%s]@%s", guard.stage,
                                     where.topic, where.partition, where.offset)
                for rest in pending.deliveries[index + 1:]:
                    rest.abandon()
                await guard.keep(pending.value, where, exc, tenant=pending.tenant)
                return
