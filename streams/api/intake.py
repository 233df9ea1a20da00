"""Input the ingest routes refuse for good: the 4xx it gets and the dead letter that keeps it.

A refusal is permanent (retrying the same bytes can never succeed), so it must be a 4xx —
Alertmanager retries 5xx forever — and the input must still be kept, with the reason,
where an operator can find and replay it: the dead-letter topic.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import KafkaError
from fastapi.responses import JSONResponse

from producers.publisher import PublishError
from producers.quota import OVER_FAIR_SHARE, QUOTA_EXCEEDED
from schemas.limits import topic_max_record_bytes
from schemas.records import DeadLetter
from streams.errors import StreamsError

#: librdkafka/broker codes that mean "this record can never fit", whatever the retry.
_TOO_LARGE_CODES = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})
#: Room for the dead letter's own fields next to the payload.
_LETTER_FIELDS_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused: HTTP ``status``, a stable ``code`` word clients may switch on, the
    ``error_type`` for metrics and the dead letter, whose ``payload`` (the body as received) is kept."""

    status: int
    code: str
    error_type: str
    tenant: str
    payload: bytes
    reason: str


class InputRefusedError(StreamsError):
    """Raised by a route once the refused input is kept; the app answers it as ``status`` with the reason."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal

    def response(self) -> JSONResponse:
        return JSONResponse({"detail": self.refusal.reason, "reason": self.refusal.code, "kept": "dead-letter"},
                            status_code=self.refusal.status)


def too_large_reason(exc: PublishError) -> str | None:
    """The reason to give when the broker (or the local producer) refused a record as too large, else None."""
    if exc.code not in _TOO_LARGE_CODES:
        return None
    return f"the broker refused the record as too large for {exc.topic}: {exc.message}"


def refusal_letter(refusal: Refusal, *, stage: str, source: str, at: datetime | None = None) -> DeadLetter:
    """The dead letter of a refused request: the whole body, or its head when it would not fit the topic."""
    room = topic_max_record_bytes("dead-letter") - _LETTER_FIELDS_BYTES
    payload = refusal.payload
    return DeadLetter(
        tenant=refusal.tenant,
        stage=stage,
        source_topic=source,
        payload=payload[:room],
        reason=refusal.reason,
        error_type=refusal.error_type,
        at=at or datetime.now(UTC),
        payload_size=len(payload),
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        truncated=len(payload) > room,
    )


#: The sentence of each reason a tenant's alerts are deferred for (producers.quota).
_DEFERRED_BECAUSE = {
    QUOTA_EXCEEDED: "is over its ingest quota",
    OVER_FAIR_SHARE: "is above its fair share of the intake budget, which the other tenants need now",
}


class QuotaExceededError(StreamsError):
    """The tenant is over its ingest quota, or above its fair share of the intake's budget while the budget is
    short: 429 + Retry-After + the reason, nothing kept (the sender retries, nothing is lost)."""

    def __init__(self, tenant: str, count: int, retry_after_s: float, reason: str = QUOTA_EXCEEDED) -> None:
        super().__init__(f"tenant {tenant} {_DEFERRED_BECAUSE.get(reason, reason)} ({count} alert(s) deferred); "
                         f"retry in {retry_after_s:.0f}s")
        self.retry_after_s = retry_after_s
        self.reason = reason

    def response(self) -> JSONResponse:
        return JSONResponse({"detail": self.message, "reason": self.reason, "kept": "no: retry"},
                            status_code=429, headers={"Retry-After": str(int(self.retry_after_s))})
