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
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

from schemas.errors import RcaflowError
from schemas.records import Record
from streams.stages.core import Position, StageContext, dead_letter
from streams.worker.app import WorkerApp
from streams.worker.failures import CURRENT_STAGE, Backoff, OutputTooLargeError, retry_transient

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R", bound=Record)

#: When the broker refuses even the (already cut) dead letter as too large, its payload is cut to this.
LAST_RESORT_PAYLOAD_BYTES = 64 * 1024


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
        """Finishes one input: ``step`` succeeded (True) or the input is kept in dead-letter (False)."""
        try:
            await self.retrying("processing", where, step)
            return True
        except Exception as exc:  # the agent boundary: a record that cannot be processed is kept, never lost
            if not isinstance(exc, RcaflowError):
                logger.exception("%s: unexpected error on %s[%s]@%s", self.stage, where.topic, where.partition,
                                 where.offset)
            self.context.count(self.stage, "dead_letter")
            await self.dead_letter(value, where, exc, tenant=tenant or tenant_of(where))
            return False

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
