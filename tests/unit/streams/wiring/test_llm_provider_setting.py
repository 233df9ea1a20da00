"""The LLM provider is chosen by the llm.provider setting through the provider registry, not hard-wired."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import ClassVar

import httpx
import pytest

from executors.llm import PROVIDERS, ChatCompletion, ChatRequest, LlmConfig, LlmConfigError
from schemas.records import AlertEvent, Engine, Incident, RcaResult
from streams.settings import LlmSettings, Settings
from streams.wiring.runtime import build_stages

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


class RecordingProvider:
    """A provider that answers nothing useful but remembers that it was asked (as a real one would be)."""

    asked: ClassVar[list[ChatRequest]] = []

    def __init__(self, config: LlmConfig, http: httpx.AsyncClient) -> None:
        self.config = config

    async def chat(self, request: ChatRequest) -> ChatCompletion:
        RecordingProvider.asked.append(request)
        return ChatCompletion(content='{"not": "an answer"}', model=self.config.model)


def _triaged() -> RcaResult:
    event = AlertEvent(tenant="acme", event_id="e-1", fingerprint="fp", alert="etcdHighFsyncDurations",
                       severity="P2", alert_class="etcd_latency", received_at=T0, parser="test",
                       labels={"namespace": "kube-system", "workload": "etcd-master-1"})
    incident = Incident(tenant="acme", incident_id="i-1", fingerprint="fp", alert_class="etcd_latency",
                        opened_at=T0, last_seen_at=T0, last_event_id="e-1", event=event)
    return RcaResult(tenant="acme", incident_id="i-1", alert_class="etcd_latency", engine=Engine.POLICY,
                     incident=incident, diagnosis="slow disk", produced_at=T0)


def test_the_configured_provider_answers_the_second_opinion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PROVIDERS, "recording", f"{__name__}:RecordingProvider")
    RecordingProvider.asked.clear()
    settings = Settings(llm=LlmSettings(enabled=True, provider="recording"))
    stages = build_stages(settings, engines=True)
    assert stages.second_opinion is not None
    result = asyncio.run(stages.second_opinion(_triaged()))
    assert RecordingProvider.asked, "the configured provider was never asked"
    assert result.outcome != "ok"  # its answer was no answer: the policy's triage stands


def test_an_unknown_provider_is_refused_at_start_naming_the_known_ones() -> None:
    settings = Settings(llm=LlmSettings(enabled=True, provider="gpt-from-a-typo"))
    with pytest.raises(LlmConfigError, match="openai_compat"):
        build_stages(settings, engines=True)


def test_the_schema_limit_settings_reach_the_schema_the_provider_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PROVIDERS, "recording", f"{__name__}:RecordingProvider")
    for limits, want in ((None, None), (160, 160)):
        RecordingProvider.asked.clear()
        settings = Settings(llm=LlmSettings(enabled=True, provider="recording", schema_max_chars=limits,
                                            schema_max_items=2))
        stages = build_stages(settings, engines=True)
        assert stages.second_opinion is not None
        asyncio.run(stages.second_opinion(_triaged()))
        schema = RecordingProvider.asked[0].json_schema
        assert schema is not None
        assert schema["$defs"]["Diagnosis"]["properties"]["cause"].get("maxLength") == want
        assert schema["properties"]["actions"].get("maxItems") == (2 if limits else None)
