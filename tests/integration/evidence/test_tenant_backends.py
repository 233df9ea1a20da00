"""Each tenant's evidence goes to its own backend: two real VictoriaMetrics behind the vmselect tenant path shape.

Debian's victoria-metrics is the single-node build, which has no ``/select/<accountID>/prometheus`` paths
(it answers "unsupported path"). The stand-in below speaks exactly that path shape of the cluster
version's vmselect and forwards each account to its own real single-node VictoriaMetrics, recording which
account every query asked for; the queries and answers are VictoriaMetrics' own.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from executors.evidence import EvidenceReport, PlannedStep
from executors.evidence.runner import ReadTarget
from policies.tenant_scope import TenantScope
from schemas.records import EvidenceStatus
from streams.settings import EvidenceSettings, Settings, TenantEvidenceSettings, TenantSettings
from streams.wiring.rca import build_evidence_runner
from tests.integration.evidence.conftest import RunningPrometheus
from tests.support.loopback import serve

METRIC = "rcaflow_tenant_probe"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def two_victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """account id → URL of its own single-node VictoriaMetrics, holding ``rcaflow_tenant_probe`` = the account."""
    binary = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    if not Path(binary).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("the victoria-metrics binary is missing: apt-get install -y victoria-metrics")
        pytest.skip("the victoria-metrics binary is missing: apt-get install -y victoria-metrics")
    procs: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    try:
        for account in ("1", "2"):
            work = tmp_path_factory.mktemp(f"vm{account}")
            port = _free_port()
            procs.append(subprocess.Popen(
                [binary, f"-storageDataPath={work / 'data'}", f"-httpListenAddr=127.0.0.1:{port}",
                 "-retentionPeriod=1d", "-loggerLevel=WARN", "-search.latencyOffset=0s"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            urls[account] = url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"victoria-metrics {account} never answered"
                time.sleep(0.1)
            httpx.post(f"{url}/api/v1/import/prometheus", content=f'{METRIC}{{job="probe"}} {account}\n',
                       timeout=5).raise_for_status()
            httpx.get(f"{url}/internal/force_flush", timeout=5)
            deadline = time.monotonic() + 60
            while not httpx.get(f"{url}/api/v1/query", params={"query": METRIC}, timeout=5).json()["data"]["result"]:
                assert time.monotonic() < deadline, f"victoria-metrics {account} never served the probe"
                time.sleep(0.2)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=20)


class Vmselect:
    """Speaks vmselect's ``/select/<accountID>/prometheus/api/v1/...``; forwards to that account's storage."""

    def __init__(self, accounts: dict[str, str]) -> None:
        self.accounts = accounts
        self.asked: list[str] = []
        self.app = Starlette(routes=[Route("/select/{account}/prometheus/api/v1/{endpoint}", self.forward,
                                           methods=["GET", "POST"])])

    async def forward(self, request: Request) -> Response:
        account = request.path_params["account"]
        self.asked.append(account)
        if account not in self.accounts:
            return Response(f"unknown accountID {account}", status_code=400)
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.request(request.method, f"{self.accounts[account]}/api/v1/"
                                          f"{request.path_params['endpoint']}", params=request.query_params,
                                          content=await request.body(),
                                          headers={"content-type": request.headers.get("content-type", "")})
        return Response(answer.content, status_code=answer.status_code, media_type="application/json")


def _measure(settings: Settings, tenant: str) -> EvidenceReport:
    runner = build_evidence_runner(settings)
    assert runner is not None
    step = PlannedStep(id="probe", tool="prom", operation="query", query=METRIC)
    target = ReadTarget(TenantScope(tenant=tenant, namespaces=("*",)), cluster=None, namespace=None)
    return asyncio.run(runner.run([step], now=datetime.now(UTC), target=target))


def test_each_tenants_queries_go_to_its_own_vmselect_account_only(
    two_victoria_metrics: dict[str, str], prometheus: RunningPrometheus
) -> None:
    vmselect = Vmselect(two_victoria_metrics)
    with serve(vmselect.app, "vmselect") as url:
        settings = Settings(
            evidence=EvidenceSettings(prometheus_url=prometheus.url),  # the global backend: a real Prometheus
            tenants={
                "acme": TenantSettings(namespaces=["*"], senders=["*@a.test"], evidence=TenantEvidenceSettings(
                    prometheus_url=f"{url}/select/1/prometheus")),
                "other": TenantSettings(namespaces=["*"], senders=["*@o.test"], evidence=TenantEvidenceSettings(
                    prometheus_url=f"{url}/select/2/prometheus")),
                "third": TenantSettings(namespaces=["*"], senders=["*@t.test"]),
            })
        acme = _measure(settings, "acme")
        assert vmselect.asked == ["1"]
        assert acme.evidence[0].status is EvidenceStatus.SUCCESS and acme.values["probe"] == 1.0

        other = _measure(settings, "other")
        assert vmselect.asked == ["1", "2"]
        assert other.values["probe"] == 2.0

        # A tenant without its own backend reads the global Prometheus, which has no such series.
        third = _measure(settings, "third")
        assert vmselect.asked == ["1", "2"]
        assert third.evidence[0].status is EvidenceStatus.NO_DATA and third.values == {}
