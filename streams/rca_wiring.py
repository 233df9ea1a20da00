"""Build the RCA engine's outbound parts from settings: evidence tools and the LLM client.

Kept apart from ``runtime`` so a process that needs neither (the API, the
executor) never imports them.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from executors import ToolRegistry
from executors.evidence import EvidenceRunner, EvidenceTool, build_evidence_tools
from streams.http_clients import make_async_client
from streams.notify_stage import Notifier
from streams.rca_llm import LlmStage
from streams.settings import Settings

if TYPE_CHECKING:
    from executors.tools.k8s_api import K8sApi, K8sConfig

logger = logging.getLogger(__name__)


def build_evidence_runner(settings: Settings) -> EvidenceRunner | None:
    config = settings.evidence
    if not config.any_backend:
        return None
    tools = build_evidence_toolset(settings)
    return EvidenceRunner(tools, call_timeout_s=config.call_timeout_s, budget_s=config.budget_s,
                          concurrency=config.concurrency)


def build_evidence_toolset(settings: Settings) -> dict[str, EvidenceTool[Any]]:
    """The read-only tools with the configured backends (used by the rca stage and by /tools)."""
    config = settings.evidence
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
        from executors.tools.k8s_api import load_kubeconfig

        k8s = k8s_api(settings, load_kubeconfig(str(config.kubeconfig) if config.kubeconfig else None,
                                                context=config.kube_context, in_cluster=config.in_cluster))
    if config.netprobe_targets:
        from executors.evidence.netprobe import NetprobeConfig

        netprobe = NetprobeConfig(targets=config.netprobe_targets)
    tools = build_evidence_tools(prom=prom, k8s=k8s, es=es, netprobe=netprobe,
                                 http_client=make_async_client(settings.http))
    logger.info("evidence tools: %s", ", ".join(sorted(tools)) or "none")
    return tools


def k8s_api(settings: Settings, config: K8sConfig) -> K8sApi:
    """The Kubernetes client through the shared factory, so http.proxy, no_proxy and allowed_hosts apply to it too."""
    from executors.tools.k8s_api import K8sApi

    client = make_async_client(settings.http, base_url=config.server.rstrip("/"), verify=config.ssl_context(),
                               timeout_s=config.timeout_s)
    return K8sApi.from_config(config, client)


def build_tool_registry(settings: Settings) -> ToolRegistry:
    """The executor's tools with the backends configured; an unconfigured tool can still dry-run."""
    config = settings.executor
    backends: dict[str, object] = {}
    if config.kubeconfig or config.in_cluster:
        from executors.tools.k8s_api import load_kubeconfig

        backends["k8s"] = k8s_api(settings, load_kubeconfig(
            str(config.kubeconfig) if config.kubeconfig else None, context=config.kube_context,
            in_cluster=config.in_cluster))
    if config.reload_endpoints:
        from executors.tools.http_reload import ReloadEndpoints

        backends["http"] = ReloadEndpoints(make_async_client(settings.http), config.reload_endpoints)
    if config.alertmanager_url:
        from executors.tools.alertmanager import AlertmanagerApi

        backends["alertmanager"] = AlertmanagerApi(make_async_client(settings.http, base_url=config.alertmanager_url))
    logger.info("executor backends: %s (dry_run=%s)", ", ".join(sorted(backends)) or "none", config.dry_run)
    return ToolRegistry(backends=backends)


def build_notifier(settings: Settings, store: MutableMapping[str, Any]) -> Notifier | None:
    """First-response notifications, or None when no tenant has a channel configured."""
    from executors.approvals import LinkSigner
    from streams.notify_stage import build_channels

    channels = build_channels(settings.notify, make_async_client(settings.http))
    if not channels:
        return None
    secret = settings.approvals.link_secret
    signer = LinkSigner(secret, ttl=timedelta(minutes=settings.approvals.link_ttl_minutes)) if secret else None
    return Notifier(channels, store, link_signer=signer, public_base_url=settings.approvals.public_base_url)


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
        burst_per_tenant=settings.llm.burst_per_tenant,
    )
    client = LlmClient(config, make_async_client(settings.http))
    logger.info("LLM second opinion on: %s at %s", config.model, config.base_url)
    return LlmStage(client, load_policies(settings.policies_file))
