"""Build the tools with their configured backends: the read-only evidence tools and the executor's registry.

Every backend client comes from the one HTTP factory, so the proxy, no_proxy and
the host allow-list apply to each of them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from executors import ToolRegistry
from executors.evidence import EvidenceTool, build_evidence_tools
from streams.settings import Settings
from streams.wiring.http_clients import make_async_client

if TYPE_CHECKING:
    from executors.tools.k8s_api import K8sApi, K8sConfig

logger = logging.getLogger(__name__)


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
