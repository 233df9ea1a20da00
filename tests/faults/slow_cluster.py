"""A Kubernetes API stand-in whose reads take time, so a kill -9 of the executor lands mid-action.

The executor runs ``diagnostics.collect`` for every fault mail (the JenkinsRestarted policy's
auto-approved action). Dry runs finish in microseconds, so a kill almost never fell between an
action's ``running`` record and the commit of its approval's offset, the window the ledger pre-scan
protects. Here each run lists the workload's events from this server, which answers after
``delay_s``, and counts those reads per workload: the side effect, counted where it happens.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from starlette.requests import Request
from starlette.responses import Response

from tests.support.loopback import serve
from tests.unit.executors.k8s_standin import K8sStandIn


@dataclass
class SlowCluster(K8sStandIn):
    delay_s: float = 1.5
    #: Event reads per workload: one per run of ``diagnostics.collect`` on it.
    runs: Counter[str] = field(default_factory=Counter)

    async def event_list(self, request: Request) -> Response:
        selector = request.query_params.get("fieldSelector", "")
        self.runs[selector.removeprefix("involvedObject.name=")] += 1
        await asyncio.sleep(self.delay_s)
        return await super().event_list(request)


@contextmanager
def slow_cluster(tmp: Path, delay_s: float = 1.5) -> Iterator[tuple[SlowCluster, dict[str, str]]]:
    """The running stand-in and the executor env that makes it act for real on it (kubeconfig, no dry run)."""
    cluster = SlowCluster(delay_s=delay_s)
    with serve(cluster.app(), "slow-k8s") as url:
        kubeconfig = tmp / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "standin",
            "clusters": [{"name": "standin", "cluster": {"server": url}}],
            "users": [{"name": "viewer", "user": {"token": cluster.viewer_token}}],
            "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "viewer"}}],
        }))
        yield cluster, {"RCAFLOW_EXECUTOR__DRY_RUN": "false", "RCAFLOW_EXECUTOR__KUBECONFIG": str(kubeconfig)}
