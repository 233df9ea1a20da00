"""Circuit breaker, token bucket and per-tenant concurrency, on a fake clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from executors.llm import ChatRequest, LlmCircuitOpenError, LlmConfig, LlmConfigError, LlmUnavailableError
from executors.llm.openai_compat import parse_retry_after
from executors.llm.provider import ChatMessage, load_provider
from executors.llm.resilience import BreakerState, CircuitBreaker, TokenBucket
from tests.unit.executors.llm.standin import ChatStandIn, FakeClock, Reply, answer_json, make_client

REQUEST = ChatRequest(messages=[ChatMessage(role="user", content="json please")])


def test_breaker_opens_after_threshold_then_half_opens_after_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=3, cooldown=30.0, clock=clock)
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    clock.now += 30.0
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()  # one trial at a time
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN  # the failed trial re-opens it
    clock.now += 30.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()


def test_client_fails_fast_while_open_and_recovers_after_cooldown() -> None:
    clock = FakeClock()
    standin = ChatStandIn([Reply(status=500), Reply(status=500), Reply(answer_json())])

    async def go() -> None:
        async with standin.http() as http:
            client = make_client(standin, http, clock, max_retries=0, breaker_threshold=2, breaker_cooldown_s=60)
            for _ in range(2):
                with pytest.raises(LlmUnavailableError):
                    await client.complete(REQUEST, tenant="acme")
            with pytest.raises(LlmCircuitOpenError) as info:
                await client.complete(REQUEST, tenant="acme")
            assert info.value.retriable
            assert len(standin.requests) == 2  # the open breaker did not call the server
            clock.now += 60
            completion = await client.complete(REQUEST, tenant="acme")
            assert completion.content is not None
            assert client.breaker.state is BreakerState.CLOSED

    asyncio.run(go())


def test_token_bucket_makes_the_third_call_wait_for_a_token() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=0.5, burst=2, clock=clock, sleep=clock.sleep)

    async def go() -> list[float]:
        return [await bucket.acquire() for _ in range(3)]

    assert asyncio.run(go()) == [0.0, 0.0, 2.0]
    assert clock.slept == [2.0]


def test_rate_limit_is_per_tenant() -> None:
    clock = FakeClock()
    standin = ChatStandIn([Reply(answer_json()) for _ in range(3)])

    async def go() -> None:
        async with standin.http() as http:
            client = make_client(standin, http, clock, rate_per_tenant_per_s=1.0, burst_per_tenant=1)
            await client.complete(REQUEST, tenant="noisy")
            await client.complete(REQUEST, tenant="quiet")
            assert clock.slept == []  # another tenant has its own bucket
            await client.complete(REQUEST, tenant="noisy")
            assert clock.slept == [1.0]

    asyncio.run(go())


def test_concurrency_is_limited_per_tenant() -> None:
    standin = ChatStandIn([Reply(answer_json()) for _ in range(6)], pause=20)

    async def go(tenants: list[str]) -> None:
        async with standin.http() as http:
            client = make_client(standin, http, max_concurrency_per_tenant=1, burst_per_tenant=10)
            await asyncio.gather(*(client.complete(REQUEST, tenant=t) for t in tenants))

    asyncio.run(go(["acme"] * 3))
    assert standin.max_in_flight == 1
    asyncio.run(go(["acme", "other", "third"]))
    assert standin.max_in_flight > 1


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), ("0.5", 0.5), ("Wed, 25 Nov 2026 12:00:30 GMT", 30.0), ("soon", None), (None, None)],
)
def test_retry_after_accepts_seconds_and_http_dates(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=datetime(2026, 11, 25, 12, 0, tzinfo=UTC)) == expected


def test_unknown_provider_is_a_config_error() -> None:
    async def go() -> None:
        async with httpx.AsyncClient() as http:
            with pytest.raises(LlmConfigError, match="unknown LLM provider 'nope'"):
                load_provider(LlmConfig(provider="nope"), http)

    asyncio.run(go())
