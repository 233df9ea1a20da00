"""When to try a Graph request again: Retry-After first, otherwise capped exponential backoff with full jitter."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Statuses Graph documents as "try again later"; 429 and 503 may carry Retry-After.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class RetryPolicy(BaseModel):
    """How long and how often to retry one request; ``max_attempts`` counts the first try."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Tries in all, the first included.
    max_attempts: int = Field(6, ge=1)
    #: First delay; doubles after each failure.
    base_seconds: float = Field(0.5, gt=0)
    #: Longest delay.
    cap_seconds: float = Field(60.0, gt=0)
    #: A Retry-After above this is not waited for in-line: the caller gets GraphThrottledError instead.
    max_retry_after_seconds: float = Field(300.0, gt=0)
    #: Pick each delay at random below its ceiling (full jitter).
    jitter: bool = True

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> Self:
        if self.cap_seconds < self.base_seconds:
            raise ValueError("cap_seconds must be >= base_seconds")
        return self


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def backoff_delay(attempt: int, policy: RetryPolicy, rand: Callable[[], float]) -> float:
    """Delay before retry ``attempt`` (0-based); full jitter spreads many clients after a shared outage."""
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    ceiling = float(min(policy.cap_seconds, policy.base_seconds * (2.0 ** min(attempt, 1000))))
    return ceiling * rand() if policy.jitter else ceiling


def retry_delay(attempt: int, retry_after: float | None, policy: RetryPolicy, rand: Callable[[], float]) -> float:
    """The server's hint wins (Graph asks clients to honour it exactly); otherwise our own backoff."""
    if retry_after is not None:
        return retry_after
    return backoff_delay(attempt, policy, rand)
