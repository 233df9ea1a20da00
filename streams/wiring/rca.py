"""Build the RCA engine's outbound parts from settings: the evidence runner and the LLM second opinion.

Imported on use (``build_stages(engines=True)``), so a process that needs neither
(the API, the executor) never loads the LLM client or the evidence tools.
"""

from __future__ import annotations

import logging

from executors.evidence import EvidenceRunner
from policies import PolicySet
from streams.settings import Settings
from streams.stages.core import StageContext
from streams.stages.second_opinion import SecondOpinion
from streams.wiring.http_clients import make_async_client

logger = logging.getLogger(__name__)


def build_evidence_runner(settings: Settings) -> EvidenceRunner | None:
    """The rca stage's evidence runner over the configured backends, or None when none is configured."""
    from streams.wiring.tools import build_evidence_toolset

    config = settings.evidence
    if not config.any_backend:
        return None
    tools = build_evidence_toolset(settings)
    return EvidenceRunner(tools, call_timeout_s=config.call_timeout_s, budget_s=config.budget_s,
                          concurrency=config.concurrency)


def build_second_opinion(settings: Settings, policies: PolicySet, context: StageContext) -> SecondOpinion | None:
    """The LLM second opinion, or None when no API key (or explicit switch) enables it."""
    if not settings.llm_enabled:
        return None
    from executors.llm import LlmClient, LlmConfig

    key = settings.qwen_api_key
    config = LlmConfig(
        provider=settings.llm.provider,
        base_url=settings.llm.base_url,
        model=settings.llm.model,
        api_key=key if key is not None else LlmConfig().api_key,
        timeout_s=settings.llm.timeout_s,
        max_concurrency_per_tenant=settings.llm.max_concurrency_per_tenant,
        rate_per_tenant_per_s=settings.llm.rate_per_tenant_per_s,
        burst_per_tenant=settings.llm.burst_per_tenant,
    )
    client = LlmClient(config, make_async_client(settings.http))
    logger.info("LLM second opinion on: %s at %s", config.model, config.base_url)
    return SecondOpinion(client, policies, context=context)
