"""Build the tools with their configured backends: the read-only evidence tools and the executor's registry.

Every backend client comes from the one HTTP factory, so the proxy, no_proxy and
the host allow-list apply to each of them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from executors import ToolRegistry
from executors.evidence import EvidenceTool, build_evidence_tools
from streams.settings import KubernetesClusterSettings, Settings
from streams.wiring.http_clients import make_async_client

if TYPE_CHECKING:
    from pathlib import Path

    from executors.tools.k8s_api import K8sApi

logger = logging.getLogger(__name__)


def build_evidence_toolset(settings: Settings) -> dict[str, EvidenceTool[Any]]:
    """The read-only tools with the configured backends (used by the rca stage and by /tools)."""
    config = settings.evidence
    prom = es = k8s = None
    netprobe = None
    if config.prometheus_url:
        from executors.evidence.prom import PromApi

        prom = PromApi.create(make_async_client(settings.http, verify=config.prometheus_auth.verify()),
                              config.prometheus_url, auth=config.prometheus_auth)
    if config.elasticsearch_url:
        from executors.evidence.es import EsApi, EsConfig

        es = EsApi.create(make_async_client(settings.http, verify=config.elasticsearch_auth.verify()),
                          EsConfig(base_url=config.elasticsearch_url, index=config.elasticsearch_index,
                                   auth=config.elasticsearch_auth))
    k8s = k8s_api(settings, kubeconfig=config.kubeconfig, kube_context=config.kube_context,
                  in_cluster=config.in_cluster, cluster=config.cluster, timeout_s=config.call_timeout_s)
    if config.netprobe_targets:
        from executors.evidence.netprobe import NetprobeConfig

        netprobe = NetprobeConfig(targets=config.netprobe_targets)
    tools = build_evidence_tools(prom=prom, k8s=k8s, es=es, netprobe=netprobe,
                                 http_client=make_async_client(settings.http))
    logger.info("evidence tools: %s", ", ".join(sorted(tools)) or "none")
    return tools


def k8s_api(
    settings: Settings,
    *,
    kubeconfig: Path | None = None,
    kube_context: str | None = None,
    in_cluster: bool = False,
    cluster: KubernetesClusterSettings | None = None,
    timeout_s: float = 10.0,
) -> K8sApi | None:
    """The official Kubernetes client for one configured cluster, or None when none is configured.

    Sources, first match wins: the pod's service account (``in_cluster``), a kubeconfig (exec plugins and
    their token renewal included), explicit ``cluster`` settings. ``http.proxy``, ``no_proxy`` and
    ``allowed_hosts`` apply to it as to every other outbound call. Nothing is read until the first call.
    """
    if not (in_cluster or kubeconfig or cluster):
        return None
    from executors.tools.k8s_api import K8sApi, K8sConfig, Outbound

    outbound = Outbound(proxy=settings.http.proxy, no_proxy=tuple(settings.http.no_proxy),
                        allowed_hosts=tuple(settings.http.allowed_hosts))
    if in_cluster:
        return K8sApi.in_cluster(outbound=outbound, timeout_s=timeout_s)
    if kubeconfig:
        return K8sApi.from_kubeconfig(str(kubeconfig), context=kube_context, outbound=outbound, timeout_s=timeout_s)
    assert cluster is not None
    return K8sApi.from_config(K8sConfig(
        server=cluster.server, token=cluster.token, token_file=str(cluster.token_file) if cluster.token_file else None,
        ca_file=str(cluster.ca_file) if cluster.ca_file else None,
        cert_file=str(cluster.cert_file) if cluster.cert_file else None,
        key_file=str(cluster.key_file) if cluster.key_file else None,
        verify_tls=cluster.verify_tls, timeout_s=cluster.timeout_s,
    ), outbound=outbound)


def build_tool_registry(settings: Settings) -> ToolRegistry:
    """The executor's tools with the backends configured; an unconfigured tool can still dry-run."""
    config = settings.executor
    backends: dict[str, object] = {}
    k8s = k8s_api(settings, kubeconfig=config.kubeconfig, kube_context=config.kube_context,
                  in_cluster=config.in_cluster, cluster=config.cluster)
    if k8s is not None:
        backends["k8s"] = k8s
    if config.reload_endpoints:
        from executors.tools.http_reload import ReloadEndpoints

        backends["http"] = ReloadEndpoints(make_async_client(settings.http), config.reload_endpoints)
    if config.alertmanager_url:
        from executors.tools.alertmanager import AlertmanagerApi

        backends["alertmanager"] = AlertmanagerApi(make_async_client(settings.http, base_url=config.alertmanager_url))
    logger.info("executor backends: %s (dry_run=%s)", ", ".join(sorted(backends)) or "none", config.dry_run)
    return ToolRegistry(backends=backends)
