"""Backoff, circuit breaker and per-tenant limits for the LLM client, on an injectable clock.

The clock is a monotonic ``() -> float`` in seconds and ``sleep`` an ``async (seconds) -> None``,
so tests drive time by hand instead of waiting.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def full_jitter(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """AWS "full jitter": uniform in [0, min(cap, base * 2**attempt)], so retrying clients spread out."""
    ceiling = min(cap, base * (2**attempt))
    return (rng or random).uniform(0.0, ceiling)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; after ``cooldown`` lets one trial call through.

    A success closes it; a failure of the trial re-opens it for another cool-down. Requests that
    fail because of us (4xx) are neither successes nor failures of the upstream and are not recorded.
    """

    threshold: int
    cooldown: float
    clock: Clock
    failures: int = 0
    opened_at: float | None = None
    _trial_running: bool = False

    @property
    def state(self) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - self.opened_at >= self.cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """Whether a call may go out now; in half-open state only one trial at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def retry_in(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown - self.clock())

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial_running = False

    def record_failure(self) -> None:
        self._trial_running = False
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.threshold:
            self.opened_at = self.clock()

    def record_neutral(self) -> None:
        """The call ended without saying anything about the upstream's health (e.g. a 400)."""
        self._trial_running = False


@dataclass
class TokenBucket:
    """``rate`` tokens per second up to ``burst``; ``acquire`` waits (with ``sleep``) for one token."""

    rate: float
    burst: float
    clock: Clock
    sleep: Sleep
    tokens: float = field(default=-1.0)
    updated: float = field(default=0.0)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst
        self.updated = self.clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def try_acquire(self) -> bool:
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_time(self) -> float:
        self._refill()
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    async def acquire(self) -> float:
        """Take one token, sleeping as long as needed; returns the time waited."""
        waited = 0.0
        while not self.try_acquire():
            delay = self.wait_time()
            waited += delay
            await self.sleep(delay)
        return waited


@dataclass(frozen=True)
class TenantLimit:
    """One tenant's own limits; a None field falls back to the client-wide value."""

    max_concurrency: int | None = None
    rate: float | None = None
    burst: float | None = None
    #: Tokens (prompt + completion) the tenant may spend per rolling hour; None: no budget.
    tokens_per_hour: int | None = None


@dataclass
class TokenBudget:
    """Tokens spent in the last hour, by the minute; a tenant over its budget gets no call until it drains."""

    per_hour: int
    clock: Clock
    _minutes: dict[int, int] = field(default_factory=dict)

    def spent(self) -> int:
        now = int(self.clock() // 60)
        for minute in [m for m in self._minutes if m <= now - 60]:
            del self._minutes[minute]
        return sum(self._minutes.values())

    def exhausted(self) -> bool:
        return self.spent() >= self.per_hour

    def spend(self, tokens: int) -> None:
        minute = int(self.clock() // 60)
        self._minutes[minute] = self._minutes.get(minute, 0) + max(tokens, 0)


@dataclass
class TenantLimits:
    """One concurrency semaphore, one token bucket and (optionally) one token budget per tenant, so a noisy
    tenant waits alone; ``overrides`` gives a tenant its own numbers."""

    max_concurrency: int
    rate: float
    burst: float
    clock: Clock
    sleep: Sleep
    overrides: dict[str, TenantLimit] = field(default_factory=dict)
    _semaphores: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)
    _budgets: dict[str, TokenBudget] = field(default_factory=dict)

    def semaphore(self, tenant: str) -> asyncio.Semaphore:
        if tenant not in self._semaphores:
            own = self.overrides.get(tenant, TenantLimit()).max_concurrency
            self._semaphores[tenant] = asyncio.Semaphore(own if own is not None else self.max_concurrency)
        return self._semaphores[tenant]

    def bucket(self, tenant: str) -> TokenBucket:
        if tenant not in self._buckets:
            own = self.overrides.get(tenant, TenantLimit())
            self._buckets[tenant] = TokenBucket(own.rate if own.rate is not None else self.rate,
                                                own.burst if own.burst is not None else self.burst,
                                                self.clock, self.sleep)
        return self._buckets[tenant]

    def budget(self, tenant: str) -> TokenBudget | None:
        """The tenant's token budget, or None when it has none."""
        per_hour = self.overrides.get(tenant, TenantLimit()).tokens_per_hour
        if per_hour is None:
            return None
        if tenant not in self._budgets:
            self._budgets[tenant] = TokenBudget(per_hour, self.clock)
        return self._budgets[tenant]
