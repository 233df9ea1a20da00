"""Whatever the model answers, the LLM stage keeps the incident: a usable answer, the triage, or a wait.

Malformed replies (garbage, truncated JSON, wrong types, huge, deeply nested, broken usage
counters) keep the policy's triage and are counted; a model that is down raises a
TransientError so the worker retries instead of skipping the incident.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from executors.llm import LlmClient, LlmConfig
from schemas.errors import TransientError
from schemas.records import AlertEvent, Engine, Incident, RawMail, RcaResult, SourceKind
from streams.settings import Settings
from streams.stages.core import Position
from streams.stages.metrics import StageMetrics
from streams.stages.second_opinion import ModelUnavailableError, SecondOpinion
from streams.wiring.runtime import Stages, build_stages
from tests.unit.executors.llm.standin import ChatStandIn, FakeClock, Reply, answer_json

SAMPLES = Path(__file__).resolve().parents[4] / "samples"


def _triaged(stages: Stages) -> RcaResult:
    mail = RawMail(tenant="acme", message_id="<m@x>", mailbox="t", source=SourceKind.FILE,
                   received_at=datetime.now(UTC), raw=(SAMPLES / "etcd_latency.eml").read_bytes())
    event = stages.normalize(mail, Position("raw-mail", 0, 7)).outputs[0].record
    assert isinstance(event, AlertEvent)
    incident = stages.dedup(event, None).outputs[0].record
    assert isinstance(incident, Incident)
    triaged = asyncio.run(stages.rca(incident)).outputs[0].record
    assert isinstance(triaged, RcaResult)
    return triaged


def _ask(replies: list[Reply], registry: CollectorRegistry) -> tuple[list[object], str]:
    stages = build_stages(Settings(), StageMetrics(registry))
    triaged = _triaged(stages)
    standin = ChatStandIn(replies)
    clock = FakeClock()

    async def go() -> tuple[list[object], str]:
        async with standin.http() as http:
            client = LlmClient(LlmConfig(api_key="k", base_url="http://llm.test/v1", breaker_threshold=100), http,
                               clock=clock, sleep=clock.sleep)
            result = await SecondOpinion(client, stages.policies, context=stages.context)(triaged)
            return [o.record for o in result.outputs], result.outcome

    return asyncio.run(go())


NESTED = "{\"a\": " + "[" * 60_000
MALFORMED = {
    "garbage": "I think the disk is slow. Restart everything!",
    "truncated": answer_json()[:60],
    "wrong_types": json.dumps({"evidence_plan": "none", "diagnosis": {"summary": 7, "cause": [], "confidence": "x"},
                               "actions": {}, "rollback": None}),
    "huge": "{\"diagnosis\": \"" + "x" * 400_000 + "\"}",
    "nested": NESTED,
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_a_malformed_reply_keeps_the_triage_and_is_counted(kind: str) -> None:
    registry = CollectorRegistry()
    records, outcome = _ask([Reply(MALFORMED[kind]), Reply(MALFORMED[kind])], registry)
    assert records == [] and outcome == "invalid_answer"
    assert registry.get_sample_value("rcaflow_stage_processed_total",
                                     {"stage": "llm", "outcome": "invalid_answer", "tenant": "_other"}) == 1


def test_usage_counters_of_the_wrong_type_do_not_break_a_good_answer() -> None:
    class OddUsage(ChatStandIn):
        async def chat(self, request):  # type: ignore[no-untyped-def]
            from starlette.responses import JSONResponse

            await request.body()
            return JSONResponse({"model": ["not", "a", "name"], "choices": [{"message": {"content": answer_json()},
                                                                             "finish_reason": "stop"}],
                                 "usage": {"prompt_tokens": "many", "completion_tokens": None,
                                           "total_tokens": 1e30}})

    stages = build_stages(Settings(), StageMetrics(CollectorRegistry()))
    triaged = _triaged(stages)
    standin = OddUsage([])

    async def go() -> list[object]:
        async with standin.http() as http:
            client = LlmClient(LlmConfig(api_key="k", base_url="http://llm.test/v1"), http)
            return [o.record for o in (await SecondOpinion(client, stages.policies)(triaged)).outputs]

    (answer, *_) = asyncio.run(go())
    assert isinstance(answer, RcaResult) and answer.engine is Engine.LLM
    assert answer.tokens is not None and 0 < answer.tokens < 2**31 and answer.model == "qwen-plus"


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_model_that_stays_down_is_a_transient_error_not_a_skip(status: int) -> None:
    with pytest.raises(ModelUnavailableError) as info:
        _ask([Reply(status=status, headers={"retry-after": "0"}) for _ in range(10)], CollectorRegistry())
    assert isinstance(info.value, TransientError) and info.value.retriable
