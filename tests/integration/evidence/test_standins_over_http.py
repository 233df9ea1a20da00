"""k8s and Elasticsearch evidence over real sockets: stand-ins served by uvicorn, real client timeouts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from executors.evidence import EvidenceRunner, PlannedStep
from executors.evidence.es import Count, EsApi, EsConfig
from executors.evidence.k8s import Logs
from executors.tools.k8s_api import K8sApi, K8sConfig
from schemas.records import EvidenceStatus
from tests.support.loopback import serve as serve_on_loopback
from tests.unit.executors.evidence.standins import EsStandIn, K8sReadStandIn

QUERY = 'kubernetes.namespace_name:"insight-system" AND kubernetes.pod_name:"noisy-0" AND @timestamp:[now-5m TO now]'


@pytest.fixture
def serve() -> Iterator[Any]:
    with contextlib.ExitStack() as running:
        yield lambda app: running.enter_context(serve_on_loopback(app))


def test_es_count_over_http_and_a_hanging_cluster(serve: Any) -> None:
    es = EsStandIn()
    es.add_logs("noisy-0", "x", 12)
    url = serve(es.app())

    async def go(timeout: float) -> Any:
        api = EsApi.from_config(EsConfig(base_url=url, timeout_s=timeout))
        try:
            return await Count(api).observe_query(QUERY, now=es.now)
        finally:
            await api.aclose()

    assert asyncio.run(go(5)).values[""] == 12.0
    es.hang_s = 3
    slow = asyncio.run(go(0.3))
    assert slow.evidence.status is EvidenceStatus.ERROR and "timed out" in (slow.evidence.error or "")
    assert "/_search" in slow.evidence.query


def test_k8s_logs_over_http_through_the_shared_client_and_the_runner_budget(serve: Any) -> None:
    cluster = K8sReadStandIn()
    cluster.add_labelled_pod("insight-system", "vmalert-0", {"app": "vmalert"})
    cluster.logs[("insight-system", "vmalert-0")] = "cannot parse rules file /etc/rules/a.yaml: line 3\n" * 3
    url = serve(cluster.app())
    step = PlannedStep("vmalert_logs", "k8s", "logs", "namespace=insight-system pod=vmalert-0 since=15m grep=cannot")

    async def go() -> Any:
        api = K8sApi.from_config(K8sConfig(server=url, token=SecretStr("viewer-token"), timeout_s=5))
        try:
            return await EvidenceRunner({"k8s.logs": Logs(api)}, call_timeout_s=0.5, budget_s=5).run([step])
        finally:
            await api.aclose()

    report = asyncio.run(go())
    assert report.values == {"vmalert_logs": 3.0}
    cluster.hang_s = 3
    slow = asyncio.run(go())
    assert slow.evidence[0].status is EvidenceStatus.ERROR and slow.values == {}
    assert "no answer within 0.5s" in (slow.evidence[0].error or "")


def test_token_is_never_in_the_evidence(serve: Any) -> None:
    cluster = K8sReadStandIn()
    url = serve(cluster.app())

    async def go() -> Any:
        api = K8sApi.from_config(K8sConfig(server=url, token=SecretStr("s3cr3t-token")))
        try:
            return await Logs(api).observe_query("namespace=insight-system pod=absent-0")
        finally:
            await api.aclose()

    obs = asyncio.run(go())
    assert obs.evidence.status is EvidenceStatus.ERROR and "401" in (obs.evidence.error or "")
    assert "s3cr3t" not in obs.evidence.model_dump_json()
