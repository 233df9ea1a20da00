"""The runner reads only inside the tenant's scope: another tenant's pods and logs are never asked for."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx
import pytest

from executors.evidence import EvidenceReport, EvidenceRunner, PlannedStep, build_evidence_tools, plan_from_triage
from executors.evidence.es import EsApi, EsConfig
from executors.evidence.prom import PromApi
from executors.evidence.runner import ReadTarget
from policies import PolicySet, load_policies, triage
from policies.tenant_scope import TenantScope
from schemas.records import EvidenceStatus
from tests.unit.executors.evidence.helpers import NOW, mock_client, run
from tests.unit.executors.evidence.standins import EsStandIn, K8sReadStandIn
from tests.unit.executors.evidence.test_evidence_runner import incident
from tests.unit.executors.exec_helpers import asgi_client, k8s_api

ACME = TenantScope(tenant="acme", namespaces=("team-a-*",), senders=("*@alerts.acme.test",))


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    return load_policies()


@dataclass
class Backends:
    """Stand-ins for the shared backends, holding pods, logs and metrics of both tenants."""

    cluster: K8sReadStandIn = field(default_factory=K8sReadStandIn)
    es: EsStandIn = field(default_factory=EsStandIn)
    #: Every PromQL query asked.
    prom_queries: list[str] = field(default_factory=list)

    def prom(self, request: httpx.Request) -> httpx.Response:
        self.prom_queries.append(request.url.params.get("query", "") or request.content.decode())
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {}, "value": [NOW.timestamp(), "3"]}]}})


def gather(steps: list[PlannedStep], target: ReadTarget) -> tuple[EvidenceReport, Backends]:
    """Run ``steps`` against stand-ins that hold pods, logs and metrics of both tenants."""
    backends = Backends()
    cluster, es = backends.cluster, backends.es
    for namespace in ("team-a-web", "team-b"):
        cluster.add_labelled_pod(namespace, "noisy-0", {"app": "noisy"})
        cluster.logs[(namespace, "noisy-0")] = f"{namespace} secret log line\n" * 5
        es.add_logs("noisy-0", f"{namespace} secret log line", 5, namespace=namespace)

    async def go() -> EvidenceReport:
        k8s = k8s_api(cluster.app(), "viewer-token")
        es_client = asgi_client(es.app(), "http://es.test:9200")
        prom_client = mock_client(backends.prom)
        tools = build_evidence_tools(k8s=k8s, es=EsApi.create(es_client, EsConfig(base_url="http://es.test:9200")),
                                     prom=PromApi.create(prom_client, "http://prom.test:9090"))
        try:
            return await EvidenceRunner(tools).run(steps, now=es.now, target=target)
        finally:
            await asyncio.gather(k8s.aclose(), es_client.aclose(), prom_client.aclose())

    return run(go), backends


def log_flood_plan(policies: PolicySet, namespace: str) -> list[PlannedStep]:
    inc = incident(policies, "LogFlood", {"namespace": namespace, "pod": "noisy-0"})
    cls = policies.get(inc.alert_class)
    assert cls is not None
    return plan_from_triage([s.id for s in cls.spec.evidence], triage(inc, policies, NOW).evidence)


def test_an_alert_naming_another_tenants_namespace_reads_nothing(policies: PolicySet) -> None:
    plan = log_flood_plan(policies, "team-b")
    report, seen = gather(plan, ReadTarget(ACME, cluster=None, namespace="team-b"))
    assert seen.cluster.reads == [] and seen.es.requests == [] and seen.prom_queries == []
    assert [e.status for e in report.evidence] == [EvidenceStatus.SKIPPED] * 3
    for evidence in report.evidence:
        assert "not read: outside tenant scope: namespace 'team-b' is not one of tenant acme's namespaces" in (
            evidence.summary)
    assert "secret" not in " ".join(e.summary for e in report.evidence)


def test_the_tenants_own_namespace_is_read(policies: PolicySet) -> None:
    plan = log_flood_plan(policies, "team-a-web")
    report, seen = gather(plan, ReadTarget(ACME, cluster=None, namespace="team-a-web"))
    assert [e.status for e in report.evidence] == [EvidenceStatus.SUCCESS] * 3
    assert seen.cluster.reads and all("/namespaces/team-a-web/" in path for path, _ in seen.cluster.reads)
    assert seen.es.requests and seen.prom_queries


def test_a_step_reading_another_namespace_than_the_alerts_is_refused() -> None:
    # A plan step (or an LLM-suggested read) may name a namespace of its own; that one is checked too.
    steps = [
        PlannedStep("logs", "k8s", "logs", "namespace=team-b pod=noisy-0"),
        PlannedStep("volume", "es", "count", 'kubernetes.namespace_name:"team-b" AND kubernetes.pod_name:"noisy-0" '
                    "AND @timestamp:[now-5m TO now]"),
        PlannedStep("everywhere", "es", "count", 'kubernetes.pod_name:"noisy-0" AND @timestamp:[now-5m TO now]'),
    ]
    report, seen = gather(steps, ReadTarget(ACME, cluster=None, namespace="team-a-web"))
    assert seen.cluster.reads == [] and seen.es.requests == []
    assert [e.status for e in report.evidence] == [EvidenceStatus.SKIPPED] * 3
    assert "namespace 'team-b'" in report.evidence[0].summary
    assert "namespace 'team-b'" in report.evidence[1].summary
    assert "names no namespace" in report.evidence[2].summary  # a search over every tenant's logs


def test_an_unscoped_single_tenant_reads_as_before(policies: PolicySet) -> None:
    plan = log_flood_plan(policies, "team-b")
    report, seen = gather(plan, ReadTarget(TenantScope(tenant="default"), cluster=None, namespace="team-b"))
    assert seen.cluster.reads and [e.status for e in report.evidence] == [EvidenceStatus.SUCCESS] * 3
