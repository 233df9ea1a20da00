"""What every stage shares: where its input was read, what it wants sent, how it ended, and the dead letter.

A stage never raises for bad input and never sees bytes: the agent edge decodes
once, and a stage that finds its (decoded) input unusable says so with
:meth:`StageResult.refuse`; the edge, which still holds the original bytes,
keeps them in a dead-letter record with the reason.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.limits import topic_max_record_bytes
from schemas.records import DeadLetter, Record
from schemas.topics import DEAD_LETTER, TopicSpec
from streams.stages.metrics import StageMetrics

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Position:
    """Where the input record was read: for dead letters, event sources and the audit trail."""

    topic: str
    partition: int | None = None
    offset: int | None = None
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class Out:
    """One record a stage wants on ``spec``'s topic under ``key``."""

    spec: TopicSpec
    key: str
    record: Record


@dataclass(slots=True)
class StageResult:
    outputs: list[Out] = field(default_factory=list)
    outcome: str = "ok"
    #: New table value for stages that keep state (None: leave the table as it is).
    state: dict[str, Any] | None = None
    #: The input, for follow-up work such as notifications.
    subject: Record | None = None
    #: Why the input cannot be used; the edge dead-letters it (with the original bytes) under ``tenant``.
    refused: BaseException | None = None
    tenant: str = ""

    @classmethod
    def refuse(cls, exc: BaseException, tenant: str = "") -> StageResult:
        return cls(outcome="dead_letter", refused=exc, tenant=tenant)


@dataclass(frozen=True, slots=True)
class StageContext:
    """What every stage may use besides its own inputs: the clock and the metrics (optional in tests)."""

    metrics: StageMetrics | None = None
    clock: Clock = utcnow

    def now(self) -> datetime:
        return self.clock()

    def count(self, stage: str, outcome: str) -> None:
        """One finished record of ``stage`` with ``outcome``, on the stage metrics."""
        if self.metrics:
            self.metrics.count(stage, outcome)


#: Room in a dead-letter record for everything but the payload (reason, key, ids, Avro framing).
DEAD_LETTER_OVERHEAD_BYTES = 64 * 1024


def dead_letter_payload_limit() -> int:
    """The most payload bytes one dead letter carries: what the dead-letter topic takes, minus the other fields."""
    return topic_max_record_bytes(DEAD_LETTER.name) - DEAD_LETTER_OVERHEAD_BYTES


def dead_letter(
    stage: str,
    payload: bytes,
    where: Position,
    exc: BaseException,
    *,
    tenant: str = "",
    context: StageContext,
    max_payload_bytes: int | None = None,
) -> Out:
    """The dead-letter record of input ``stage`` could not use: the bytes as read, and why.

    A payload the dead-letter topic could not take is cut to ``max_payload_bytes`` (default: what the
    topic allows) rather than lost with its reason; the record keeps the whole input's size and
    SHA-256 so the original can still be found (raw-mail keeps mails 7 days) and matched.
    """
    # Exception texts may quote the input (a mail subject), lone surrogates included; the record must encode.
    reason = (str(exc) or type(exc).__name__).encode("utf-8", "replace").decode("utf-8")
    tenant = tenant.encode("utf-8", "replace").decode("utf-8")
    limit = dead_letter_payload_limit() if max_payload_bytes is None else max(0, max_payload_bytes)
    truncated = len(payload) > limit
    logger.warning(
        "%s: dead-lettered %s[%s]@%s%s: %s", stage, where.topic, where.partition, where.offset,
        f" (payload cut to {limit} of {len(payload)} bytes)" if truncated else "", reason,
        extra={"stage": stage, "topic": where.topic, "offset": where.offset},
    )
    if context.metrics:
        context.metrics.fail(stage, type(exc).__name__, tenant=tenant or None)
    record = DeadLetter(
        tenant=tenant or "unknown",
        stage=stage,
        source_topic=where.topic,
        partition=where.partition,
        offset=where.offset,
        key=where.key[:limit] if where.key is not None else None,
        payload=payload[:limit] if truncated else payload,
        reason=str(reason)[:4000],
        error_type=type(exc).__name__,
        at=context.now(),
        payload_size=len(payload),
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        truncated=truncated,
    )
    return Out(DEAD_LETTER, where.topic, record)


def outputs(stage: str, result: StageResult, payload: bytes, where: Position, context: StageContext) -> list[Out]:
    """What to send for ``result``: its outputs, plus the dead letter of a refused input."""
    if result.refused is None:
        return result.outputs
    return [*result.outputs, dead_letter(stage, payload, where, result.refused, tenant=result.tenant,
                                         context=context)]
