"""A tenant's own LLM limits: its rate, concurrency and hourly token budget bind it alone; others keep the defaults."""

from __future__ import annotations

import asyncio

import pytest

from executors.llm import ChatRequest, LlmBudgetExceededError, TenantLimitConfig
from executors.llm.provider import ChatMessage
from tests.unit.executors.llm.standin import ChatStandIn, FakeClock, Reply, answer_json, make_client

REQUEST = ChatRequest(messages=[ChatMessage(role="user", content="why?")])


def test_a_tenant_rate_override_binds_that_tenant_only() -> None:
    clock = FakeClock()
    standin = ChatStandIn([Reply(answer_json()) for _ in range(4)])

    async def go() -> None:
        async with standin.http() as http:
            client = make_client(standin, http, clock, rate_per_tenant_per_s=1.0, burst_per_tenant=5,
                                 tenant_limits={"noisy": TenantLimitConfig(rate=0.25, burst=1)})
            await client.complete(REQUEST, tenant="quiet")
            await client.complete(REQUEST, tenant="quiet")
            assert clock.slept == []  # the default burst of 5
            await client.complete(REQUEST, tenant="noisy")
            await client.complete(REQUEST, tenant="noisy")
            assert clock.slept == [4.0]  # its own bucket: one token, refilled at 0.25/s

    asyncio.run(go())


def test_a_tenant_concurrency_override_binds_that_tenant_only() -> None:
    standin = ChatStandIn([Reply(answer_json()) for _ in range(6)], pause=20)

    async def go(tenant: str) -> None:
        async with standin.http() as http:
            client = make_client(standin, http, max_concurrency_per_tenant=3, burst_per_tenant=10,
                                 tenant_limits={"acme": TenantLimitConfig(max_concurrency=1)})
            await asyncio.gather(*(client.complete(REQUEST, tenant=tenant) for _ in range(3)))

    asyncio.run(go("acme"))
    assert standin.max_in_flight == 1
    asyncio.run(go("other"))
    assert standin.max_in_flight > 1


def test_a_spent_token_budget_refuses_the_tenant_until_the_hour_drains() -> None:
    clock = FakeClock()
    standin = ChatStandIn([Reply(answer_json()) for _ in range(5)])

    async def go() -> None:
        async with standin.http() as http:
            client = make_client(standin, http, clock, burst_per_tenant=10,
                                 tenant_limits={"acme": TenantLimitConfig(tokens_per_hour=200)})
            await client.complete(REQUEST, tenant="acme")  # 120 tokens
            await client.complete(REQUEST, tenant="acme")  # 240: over from now on
            with pytest.raises(LlmBudgetExceededError, match="tenant acme spent its LLM budget of 200 tokens") as err:
                await client.complete(REQUEST, tenant="acme")
            assert err.value.retriable is False
            assert len(standin.requests) == 2  # the refused call never reached the server
            await client.complete(REQUEST, tenant="other")  # no budget configured: unaffected
            clock.now += 3600
            await client.complete(REQUEST, tenant="acme")

    asyncio.run(go())
