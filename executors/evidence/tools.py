"""Build the ``"tool.operation"`` → tool map the runner takes, from whichever backends are configured.

A family whose backend is ``None`` is simply absent, so its plan steps come out
``skipped`` ("not configured here") rather than failing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from executors.evidence.base import EvidenceTool

if TYPE_CHECKING:
    import httpx

    from executors.evidence.es import EsApi
    from executors.evidence.netprobe import NetprobeConfig
    from executors.evidence.prom import PromApi
    from executors.tools.k8s_api import K8sApi


def build_evidence_tools(
    *,
    prom: PromApi | None = None,
    k8s: K8sApi | None = None,
    es: EsApi | None = None,
    netprobe: NetprobeConfig | None = None,
    http_client: httpx.AsyncClient | None = None,
) -> dict[str, EvidenceTool[Any]]:
    """Imports each family only when its backend is given (an optional dependency missing stays harmless)."""
    tools: list[EvidenceTool[Any]] = []
    if prom is not None:
        from executors.evidence import prom as prom_tools

        tools += [prom_tools.Query(prom), prom_tools.QueryRange(prom)]
    if k8s is not None:
        from executors.evidence import k8s as k8s_tools

        tools += [cls(k8s) for cls in (k8s_tools.Pods, k8s_tools.Events, k8s_tools.Logs, k8s_tools.Owners,
                                       k8s_tools.Describe)]
    if es is not None:
        from executors.evidence import es as es_tools

        tools += [es_tools.Count(es), es_tools.Search(es)]
    if netprobe is not None:
        from executors.evidence.netprobe import probes

        tools += list(probes(netprobe, http_client).values())
    return {tool.spec.name: tool for tool in tools}
