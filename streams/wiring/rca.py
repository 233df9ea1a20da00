"""Build the RCA engine's outbound parts from settings: the evidence runner and the LLM second opinion.

Imported on use (``build_stages(engines=True)``), so a process that needs neither
(the API, the executor) never loads the LLM client or the evidence tools.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from executors.evidence import EvidenceRunner
from policies import PolicySet
from streams.settings import Settings, TenantLlmSettings
from streams.stages.core import StageContext
from streams.stages.rca import LlmEvidence
from streams.stages.second_opinion import SecondOpinion
from streams.wiring.http_clients import make_async_client

if TYPE_CHECKING:
    from streams.kb.similar import SimilarLookup

logger = logging.getLogger(__name__)


def build_evidence_runner(settings: Settings) -> EvidenceRunner | None:
    """The rca stage's evidence runner over the configured backends, or None when none is configured."""
    from streams.wiring.tools import build_evidence_toolset

    config = settings.evidence
    own = {name: t.evidence for name, t in settings.tenants.items() if t.evidence.any_backend}
    if not (config.any_backend or own):
        return None
    tools = build_evidence_toolset(settings) if config.any_backend else {}
    runner = EvidenceRunner(tools, call_timeout_s=config.call_timeout_s, budget_s=config.budget_s,
                            concurrency=config.concurrency)
    if not own:
        return runner
    from streams.wiring.tenants import build_tenant_evidence_runner

    return build_tenant_evidence_runner(settings, runner, own)


def build_second_opinion(settings: Settings, policies: PolicySet, context: StageContext) -> SecondOpinion | None:
    """The LLM second opinion, or None when no API key (or explicit switch) enables it."""
    if not settings.llm_enabled:
        return None
    from executors.llm import LlmClient, LlmConfig, ResponseMode, SchemaLimits, TenantLimitConfig

    key = settings.qwen_api_key
    config = LlmConfig(
        provider=settings.llm.provider,
        base_url=settings.llm.base_url,
        model=settings.llm.model,
        api_key=key if key is not None else LlmConfig().api_key,
        timeout_s=settings.llm.timeout_s,
        max_tokens=settings.llm.max_tokens,
        response_mode=ResponseMode(settings.llm.response_mode),
        schema_limits=(SchemaLimits(max_chars=settings.llm.schema_max_chars, max_items=settings.llm.schema_max_items)
                       if settings.llm.schema_max_chars is not None else None),
        max_concurrency_per_tenant=settings.llm.max_concurrency_per_tenant,
        rate_per_tenant_per_s=settings.llm.rate_per_tenant_per_s,
        burst_per_tenant=settings.llm.burst_per_tenant,
        tenant_limits={
            name: TenantLimitConfig(max_concurrency=t.llm.max_concurrency, rate=t.llm.rate_per_s,
                                    burst=t.llm.burst, tokens_per_hour=t.llm.tokens_per_hour)
            for name, t in settings.tenants.items() if t.llm != TenantLlmSettings()
        },
    )
    client = LlmClient(config, make_async_client(settings.http))
    evidence = build_llm_evidence(settings)
    logger.info("LLM second opinion on: %s at %s (evidence round %s)", config.model, config.base_url,
                "on" if evidence is not None else "off")
    similar = build_similar_lookup(settings)
    return SecondOpinion(client, policies, context=context, evidence=evidence,
                         similar=similar.past_incidents if similar is not None else None)


def build_similar_lookup(settings: Settings) -> SimilarLookup | None:
    """Past incidents from the knowledge base for the prompt and the first response; None without a KB."""
    if not settings.kb.enabled:
        return None
    from streams.kb.similar import lookup_from_settings

    return lookup_from_settings(settings.kb)


def build_llm_evidence(settings: Settings) -> LlmEvidence | None:
    """The model's evidence round, or None when it is switched off or no evidence backend is configured.

    Its own runner (same backends and per-call timeout as the rca stage's), so the model's reads have
    their own budget and never hold up the policy's plan of the next incident.
    """
    llm = settings.llm
    if llm.evidence_rounds == 0 or llm.evidence_max_calls == 0:
        return None
    runner = build_evidence_runner(settings)
    if runner is None:
        return None
    from executors.llm import ToolBudget
    from streams.wiring.runtime import build_scopes

    budget = ToolBudget(max_calls=llm.evidence_max_calls, time_budget_s=llm.evidence_budget_s,
                        max_rounds=llm.evidence_rounds)
    return LlmEvidence(runner, build_scopes(settings), budget)
