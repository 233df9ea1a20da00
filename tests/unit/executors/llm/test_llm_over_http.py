"""The client over a real loopback socket: the scripted stand-in served by uvicorn, real httpx timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from executors.llm import LlmFailure, LlmOutcome, LlmRca, analyse
from tests.support.loopback import serve
from tests.unit.executors.llm.helpers import brief, incident
from tests.unit.executors.llm.standin import ChatStandIn, FakeClock, Reply, answer_json, make_client


@pytest.fixture
def served() -> Iterator[tuple[ChatStandIn, str]]:
    standin = ChatStandIn()
    with serve(standin.app(), "llm-standin") as url:
        yield standin, url


def run(standin: ChatStandIn, url: str, clock: FakeClock, **overrides: float) -> LlmOutcome:
    async def go() -> LlmOutcome:
        async with httpx.AsyncClient(base_url=url) as http:
            client = make_client(standin, http, clock, base_url=f"{url}/v1", **overrides)
            return await analyse(client, incident(), brief())

    return asyncio.run(go())


def test_rate_limited_then_answer_over_http(served: tuple[ChatStandIn, str]) -> None:
    standin, url = served
    standin.replies[:] = [Reply(status=429, headers={"Retry-After": "3"}), Reply(answer_json())]
    clock = FakeClock()
    outcome = run(standin, url, clock)
    assert isinstance(outcome, LlmRca) and outcome.usage.total_tokens == 120
    assert clock.slept == [3.0]


def test_slow_server_times_out_and_is_retried_then_fails(served: tuple[ChatStandIn, str]) -> None:
    standin, url = served
    standin.replies[:] = [Reply(answer_json(), delay=2.0), Reply(answer_json(), delay=2.0)]
    outcome = run(standin, url, FakeClock(), timeout_s=0.2, max_retries=1)
    assert isinstance(outcome, LlmFailure)
    assert outcome.kind == "unavailable" and outcome.retriable and "within 0.2s" in outcome.reason
    assert len(standin.requests) == 2
