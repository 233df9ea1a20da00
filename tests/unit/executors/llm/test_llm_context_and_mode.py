"""A prompt too long for the model's context is a named, non-retried error; the first response mode is configurable."""

from __future__ import annotations

import asyncio
import json

import pytest

from executors.llm import LlmContextOverflowError, LlmFailure, LlmOutcome, LlmRca, analyse
from executors.llm.provider import ChatMessage, ChatRequest
from tests.unit.executors.llm.helpers import brief, incident
from tests.unit.executors.llm.standin import ChatStandIn, FakeClock, Reply, answer_json, make_client

#: What llama.cpp's server answers (tools/server: exceed_context_size_error), and OpenAI / vLLM.
LLAMA_CPP = json.dumps({"error": {"code": 400, "type": "exceed_context_size_error", "n_prompt_tokens": 9120,
                                  "n_ctx": 4096, "message": "the request exceeds the available context size, "
                                  "try increasing it"}})
OPENAI = json.dumps({"error": {"code": "context_length_exceeded", "type": "invalid_request_error",
                               "message": "This model's maximum context length is 8192 tokens."}})


def analysed(standin: ChatStandIn, **overrides: object) -> tuple[LlmOutcome, int]:
    async def go() -> tuple[LlmOutcome, int]:
        async with standin.http() as http:
            client = make_client(standin, http, FakeClock(), **overrides)
            outcome = await analyse(client, incident(), brief())
            return outcome, client.breaker.failures

    return asyncio.run(go())


@pytest.mark.parametrize("body", [LLAMA_CPP, OPENAI], ids=["llama.cpp", "openai"])
def test_context_overflow_is_named_not_retried_and_not_held_against_the_server(body: str) -> None:
    standin = ChatStandIn([Reply(status=400, text=body), Reply(answer_json())])
    outcome, failures = analysed(standin)
    assert isinstance(outcome, LlmFailure)
    assert outcome.kind == "context_overflow" and not outcome.retriable
    assert "does not fit the model's context" in outcome.reason
    assert len(standin.requests) == 1 and failures == 0


def test_the_client_raises_the_typed_error() -> None:
    standin = ChatStandIn([Reply(status=400, text=LLAMA_CPP)])

    async def go() -> None:
        async with standin.http() as http:
            await make_client(standin, http).complete(
                ChatRequest(messages=[ChatMessage(role="user", content="x")]), tenant="acme")

    with pytest.raises(LlmContextOverflowError) as raised:
        asyncio.run(go())
    assert raised.value.status == 400


def test_another_400_is_still_a_plain_request_failure() -> None:
    standin = ChatStandIn([Reply(status=400, text='{"error": {"message": "messages: field required"}}')])
    outcome, _ = analysed(standin)
    assert isinstance(outcome, LlmFailure) and outcome.kind == "request"


def test_a_server_known_to_lack_json_schema_is_asked_with_json_object_first() -> None:
    standin = ChatStandIn([Reply(answer_json())], supports_json_schema=False)
    outcome, _ = analysed(standin, response_mode="json_object")
    assert isinstance(outcome, LlmRca)
    assert [r["response_format"]["type"] for r in standin.requests] == ["json_object"]  # no 400 paid first


def test_llama_cpps_words_for_a_schema_it_cannot_compile_start_the_fallback() -> None:
    # Measured against llama-server (tests/integration/llm_real): it says "JSON schema", not "json_schema".
    body = json.dumps({"error": {"code": 400, "type": "invalid_request_error", "message": "Unable to generate "
                                 "parser for this template. Automatic parser generation failed: JSON schema error "
                                 "at #: unrecognized type nonsense"}})
    standin = ChatStandIn([Reply(status=400, text=body), Reply(answer_json())])
    outcome, _ = analysed(standin)
    assert isinstance(outcome, LlmRca)
    assert [r["response_format"]["type"] for r in standin.requests] == ["json_schema", "json_object"]
