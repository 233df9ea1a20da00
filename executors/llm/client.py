"""The resilient LLM client: per-tenant limits, retries with full-jitter backoff, and a circuit breaker.

It wraps any :class:`~executors.llm.provider.ChatProvider`; the provider makes single attempts and
maps its transport's errors, this class decides when to try again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import httpx

from executors.llm.errors import (
    LlmBudgetExceededError,
    LlmCircuitOpenError,
    LlmRateLimitedError,
    LlmRequestError,
    LlmUnavailableError,
)
from executors.llm.provider import ChatCompletion, ChatProvider, ChatRequest, LlmConfig, load_provider
from executors.llm.resilience import CircuitBreaker, Clock, Sleep, TenantLimit, TenantLimits, full_jitter

logger = logging.getLogger(__name__)


class LlmClient:
    """Guarantees: at most ``max_concurrency_per_tenant`` calls in flight and ``rate_per_tenant_per_s``
    started per tenant; at most ``1 + max_retries`` attempts per call; none while the breaker is open.
    """

    def __init__(
        self,
        config: LlmConfig,
        http: httpx.AsyncClient,
        *,
        provider: ChatProvider | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.provider = provider if provider is not None else load_provider(config, http)
        self.breaker = CircuitBreaker(config.breaker_threshold, config.breaker_cooldown_s, clock)
        self.limits = TenantLimits(
            config.max_concurrency_per_tenant, config.rate_per_tenant_per_s, config.burst_per_tenant, clock, sleep,
            overrides={name: TenantLimit(**limit.model_dump()) for name, limit in config.tenant_limits.items()},
        )
        self._sleep = sleep
        self._rng = rng

    async def complete(self, request: ChatRequest, *, tenant: str) -> ChatCompletion:
        """One chat completion; raises ``LlmError`` (``retriable`` says whether a later call may succeed)."""
        budget = self.limits.budget(tenant)
        if budget is not None and budget.exhausted():
            raise LlmBudgetExceededError(
                f"tenant {tenant} spent its LLM budget of {budget.per_hour} tokens in the last hour")
        async with self.limits.semaphore(tenant):
            await self.limits.bucket(tenant).acquire()
            attempt = 0
            while True:
                if not self.breaker.allow():
                    raise LlmCircuitOpenError(
                        f"LLM circuit open after {self.breaker.failures} consecutive failures; "
                        f"next try in {self.breaker.retry_in():.0f}s"
                    )
                try:
                    result = await self.provider.chat(request)
                except LlmRequestError:
                    self.breaker.record_neutral()
                    raise
                except LlmUnavailableError as exc:
                    self.breaker.record_failure()
                    if attempt >= self.config.max_retries:
                        raise
                    delay = self._delay(attempt, exc)
                    logger.warning(
                        "LLM call failed (%s), retry %d/%d in %.2fs",
                        exc.message,
                        attempt + 1,
                        self.config.max_retries,
                        delay,
                        extra={"tenant": tenant},
                    )
                    await self._sleep(delay)
                    attempt += 1
                    continue
                self.breaker.record_success()
                if budget is not None:
                    budget.spend(result.usage.total_tokens)
                return result

    def _delay(self, attempt: int, exc: LlmUnavailableError) -> float:
        if isinstance(exc, LlmRateLimitedError) and exc.retry_after is not None:
            return min(exc.retry_after, self.config.max_retry_after_s)
        return full_jitter(attempt, self.config.backoff_base_s, self.config.backoff_max_s, self._rng)
