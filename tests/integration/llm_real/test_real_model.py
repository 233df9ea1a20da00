"""Our LLM client against a real model: Qwen2.5-Coder-0.5B-Instruct on llama.cpp's llama-server.

The scripted stand-in only replays what we wrote; here the server is real: it compiles our JSON
schema into a grammar, counts tokens against a real context window, and keeps generating while a
client gives up. Temperature 0, so a run is repeatable on one binary and model. What the 0.5B model
says is not asserted (it is often wrong); what rcaflow does with it is.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from executors.llm import (
    ChatRequest,
    LlmClient,
    LlmConfig,
    LlmContextOverflowError,
    LlmFailure,
    LlmRca,
    LlmRequestError,
    LlmTimeoutError,
    LlmUnavailableError,
    ResponseMode,
    analyse,
)
from executors.llm.answer import LlmAnswer, answer_json_schema, parse_answer
from executors.llm.prompt import build_messages
from executors.llm.provider import ChatMessage
from tests.support.llm.server import MODEL_ALIAS, LlamaServer, _free_port
from tests.unit.executors.llm.helpers import brief, incident
from tests.unit.executors.llm.standin import FakeClock

T = TypeVar("T")

#: A real model on a shared 2-core machine: one answer takes 15 s idle and minutes under load, past the
#: suite's 300 s default; the server's own timeouts still bound every call.
pytestmark = pytest.mark.timeout(1200)



def config(server: LlamaServer, **overrides: Any) -> LlmConfig:
    values: dict[str, Any] = {"base_url": server.base_url, "model": MODEL_ALIAS, "temperature": 0.0,
                              "max_tokens": 512, "timeout_s": 300.0, "max_retries": 0}
    values.update(overrides)
    return LlmConfig(**values)


def with_client(cfg: LlmConfig, body: Callable[[LlmClient], Awaitable[T]], clock: FakeClock | None = None) -> T:
    async def go() -> T:
        async with httpx.AsyncClient() as http:
            fake = clock or FakeClock()
            return await body(LlmClient(cfg, http, clock=fake, sleep=fake.sleep))

    return asyncio.run(go())


def answer_request() -> ChatRequest:
    return ChatRequest(messages=build_messages(brief(), incident().event, []), json_schema=answer_json_schema())


def test_json_schema_mode_gives_an_answer_in_the_contracts_shape(llama: LlamaServer) -> None:
    completion = with_client(config(llama), lambda c: c.complete(answer_request(), tenant="acme"))
    assert completion.mode is ResponseMode.JSON_SCHEMA and completion.model
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    # The server turned our schema into a grammar: the reply is a JSON object with exactly its keys.
    data = json.loads(completion.content or "")
    assert set(data) == {"evidence_plan", "diagnosis", "actions", "rollback"}
    assert isinstance(parse_answer(completion.content, completion.finish_reason), LlmAnswer)


def test_json_object_mode_gives_a_json_object(llama: LlamaServer) -> None:
    cfg = config(llama, response_mode=ResponseMode.JSON_OBJECT)
    completion = with_client(cfg, lambda c: c.complete(answer_request(), tenant="acme"))
    assert completion.mode is ResponseMode.JSON_OBJECT
    assert isinstance(json.loads(completion.content or ""), dict)


def test_a_schema_the_server_cannot_compile_falls_back_to_json_object(llama: LlamaServer) -> None:
    broken = ChatRequest(messages=answer_request().messages, json_schema={"type": "nonsense"})

    async def twice(client: LlmClient) -> list[ResponseMode]:
        first = await client.complete(broken, tenant="acme")
        second = await client.complete(broken, tenant="acme")
        return [first.mode, second.mode]

    assert with_client(config(llama, max_tokens=64), twice) == [ResponseMode.JSON_OBJECT] * 2


def test_a_prompt_longer_than_the_context_is_a_typed_error_not_a_crash(llama: LlamaServer) -> None:
    # Each field is cut at 4,000 characters for the prompt, so the bulk comes from many annotations.
    base = incident()
    noise = {f"note{i}": "etcd member 10.0.3.7 reported slow fsync; leader changed again; " * 60 for i in range(8)}
    huge = base.model_copy(update={"event": base.event.model_copy(update={"annotations": noise})})
    cfg = config(llama, max_retries=3)

    async def both(client: LlmClient) -> tuple[BaseException, object, int]:
        with pytest.raises(LlmContextOverflowError) as raised:
            await client.complete(ChatRequest(messages=build_messages(brief(), huge.event, [])), tenant="acme")
        outcome = await analyse(client, huge, brief())
        return raised.value, outcome, client.breaker.failures

    error, outcome, failures = with_client(cfg, both)
    assert isinstance(error, LlmRequestError) and error.status == 400 and not error.retriable
    assert isinstance(outcome, LlmFailure) and outcome.kind == "context_overflow" and not outcome.retriable
    assert outcome.calls == 0 and failures == 0  # not retried, and not held against the server's health
    assert llama.healthy()


def test_a_client_timeout_is_a_retriable_error_and_the_server_serves_the_next_call(llama: LlamaServer) -> None:
    slow = ChatRequest(messages=[ChatMessage(role="user", content="Write a 2000-word essay about etcd.")])
    with pytest.raises(LlmTimeoutError) as raised:
        with_client(config(llama, timeout_s=0.5, max_tokens=2000), lambda c: c.complete(slow, tenant="acme"))
    assert raised.value.retriable and "within 0.5s" in raised.value.message
    after = with_client(config(llama, max_tokens=8), lambda c: c.complete(
        ChatRequest(messages=[ChatMessage(role="user", content="Say hi.")]), tenant="acme"))
    assert after.content


def test_a_wrong_path_is_a_request_error_and_no_server_is_unavailable(llama: LlamaServer) -> None:
    wrong = config(llama, base_url=llama.base_url.replace("/v1", "/v9"))
    with pytest.raises(LlmRequestError) as refused:
        with_client(wrong, lambda c: c.complete(answer_request(), tenant="acme"))
    assert refused.value.status == 404
    clock = FakeClock()
    nobody = config(llama, base_url=f"http://127.0.0.1:{_free_port()}/v1", max_retries=2)
    with pytest.raises(LlmUnavailableError):
        with_client(nobody, lambda c: c.complete(answer_request(), tenant="acme"), clock)
    assert len(clock.slept) == 2  # retried with backoff, then gave up


def test_the_whole_analysis_returns_a_gated_answer_or_a_typed_failure(llama: LlamaServer) -> None:
    outcome = with_client(config(llama), lambda c: analyse(c, incident(), brief()))
    assert isinstance(outcome, LlmRca | LlmFailure)
    assert outcome.calls >= 1 and outcome.usage.total_tokens > 0
    if isinstance(outcome, LlmRca):
        allowed = {a.name for a in brief().allowed_actions}
        assert {a.name for a in outcome.actions} <= allowed
    else:
        assert outcome.kind == "invalid_answer"
