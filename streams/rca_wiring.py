"""Build the RCA engine's outbound parts from settings: evidence tools and the LLM client.

Kept apart from ``runtime`` so a process that needs neither (the API, the
executor) never imports them.
"""

from __future__ import annotations

import logging

from executors.evidence import EvidenceRunner, build_evidence_tools
from streams.http_clients import make_async_client
from streams.rca_llm import LlmStage
from streams.settings import Settings

logger = logging.getLogger(__name__)


def build_evidence_runner(settings: Settings) -> EvidenceRunner | None:
    config = settings.evidence
    if not config.any_backend:
        return None
    prom = es = k8s = None
    netprobe = None
    if config.prometheus_url:
        from executors.evidence.prom import PromApi

        prom = PromApi.create(make_async_client(settings.http), config.prometheus_url)
    if config.elasticsearch_url:
        from executors.evidence.es import EsApi, EsConfig

        es = EsApi.create(make_async_client(settings.http),
                          EsConfig(base_url=config.elasticsearch_url, index=config.elasticsearch_index))
    if config.kubeconfig or config.in_cluster:
        from executors.tools.k8s_api import K8sApi, load_kubeconfig

        k8s = K8sApi.from_config(load_kubeconfig(str(config.kubeconfig) if config.kubeconfig else None,
                                                 context=config.kube_context, in_cluster=config.in_cluster))
    if config.netprobe_targets:
        from executors.evidence.netprobe import NetprobeConfig

        netprobe = NetprobeConfig(targets=config.netprobe_targets)
    tools = build_evidence_tools(prom=prom, k8s=k8s, es=es, netprobe=netprobe,
                                 http_client=make_async_client(settings.http))
    logger.info("evidence tools: %s", ", ".join(sorted(tools)) or "none")
    return EvidenceRunner(tools, call_timeout_s=config.call_timeout_s, budget_s=config.budget_s,
                          concurrency=config.concurrency)


def build_llm_stage(settings: Settings) -> LlmStage | None:
    """The LLM second opinion, or None when no API key (or explicit switch) enables it."""
    if not settings.llm_enabled:
        return None
    from executors.llm import LlmClient, LlmConfig
    from policies import load_policies

    key = settings.qwen_api_key
    config = LlmConfig(
        base_url=settings.llm.base_url,
        model=settings.llm.model,
        api_key=key if key is not None else LlmConfig().api_key,
        timeout_s=settings.llm.timeout_s,
        max_concurrency_per_tenant=settings.llm.max_concurrency_per_tenant,
        rate_per_tenant_per_s=settings.llm.rate_per_tenant_per_s,
    )
    client = LlmClient(config, make_async_client(settings.http))
    logger.info("LLM second opinion on: %s at %s", config.model, config.base_url)
    return LlmStage(client, load_policies(settings.policies_file))
