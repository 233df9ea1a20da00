"""The LLM's evidence round as the worker wires it: the model asks for reads by catalogue operation, within
the tenant's scope and a budget; scripted model (OpenAI-compatible stand-in), stand-in backends."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from executors.evidence import EvidenceRunner, build_evidence_tools
from executors.evidence.es import EsApi, EsConfig
from executors.evidence.prom import PromApi
from executors.llm import EvidenceRequest, ToolBudget
from policies import PolicySet, load_policies, triage
from policies.tenant_scope import TenantScope, TenantScopes
from schemas.records import Evidence, EvidenceStatus, RcaResult
from streams.settings import EvidenceSettings, LlmSettings, Settings, TenantSettings
from streams.stages.core import StageContext
from streams.stages.rca import LlmEvidence
from streams.stages.second_opinion import SecondOpinion
from streams.wiring.rca import build_llm_evidence
from tests.unit.executors.evidence.helpers import NOW
from tests.unit.executors.evidence.standins import EsStandIn, K8sReadStandIn
from tests.unit.executors.evidence.test_evidence_runner import incident
from tests.unit.executors.exec_helpers import asgi_client, k8s_api
from tests.unit.executors.llm.standin import ChatStandIn, Reply, answer_json, make_client

ACME = TenantScope(tenant="acme", namespaces=("team-a-*",), senders=("*@alerts.acme.test",))
WHOLE = TenantScope(tenant="acme", namespaces=("*",))

OWN_LOGS = {"tool": "es", "operation": "search",
            "query": 'kubernetes.namespace_name:"team-a-web" AND kubernetes.pod_name:"noisy-0" '
                     "AND @timestamp:[now-5m TO now]",
            "purpose": "what the noisy pod logs"}
OTHER_LOGS = {"tool": "k8s", "operation": "logs", "query": "namespace=team-b pod=noisy-0",
              "purpose": "compare with the neighbour"}
OTHER_METRICS = {"tool": "prom", "operation": "query", "query": 'sum(rate(log_lines_total{namespace="team-b"}[5m]))',
                 "purpose": "log volume elsewhere"}
PROBE = {"tool": "netprobe", "operation": "tcp", "query": "attacker.example:22", "purpose": "is it up"}


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    return load_policies()


@dataclass
class Backends:
    """Stand-ins for the shared backends, holding pods, logs and metrics of two tenants."""

    cluster: K8sReadStandIn = field(default_factory=K8sReadStandIn)
    es: EsStandIn = field(default_factory=EsStandIn)
    prom_queries: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for namespace in ("team-a-web", "team-b"):
            self.cluster.add_labelled_pod(namespace, "noisy-0", {"app": "noisy"})
            self.cluster.logs[(namespace, "noisy-0")] = f"{namespace} secret log line\n" * 5
            self.es.add_logs("noisy-0", f"{namespace} secret log line", 5, namespace=namespace)

    def prom(self, request: httpx.Request) -> httpx.Response:
        self.prom_queries.append(request.url.params.get("query", "") or request.content.decode())
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {}, "value": [NOW.timestamp(), "3"]}]}})

    def other_tenant_read(self) -> bool:
        return any("team-b" in path for path, _ in self.cluster.reads) or any(
            "team-b" in json.dumps(r) for r in self.es.requests) or any("team-b" in q for q in self.prom_queries)


def triaged(policies: PolicySet) -> RcaResult:
    inc = incident(policies, "LogFlood", {"namespace": "team-a-web", "pod": "noisy-0"})
    return triage(inc, policies, NOW)


def second_opinion(
    policies: PolicySet, replies: list[Reply], scope: TenantScope, budget: ToolBudget
) -> tuple[list[object], ChatStandIn, Backends]:
    standin = ChatStandIn(replies)
    seen = Backends()

    async def go() -> list[object]:
        k8s = k8s_api(seen.cluster.app(), "viewer-token")
        es_client = asgi_client(seen.es.app(), "http://es.test:9200")
        prom_client = httpx.AsyncClient(transport=httpx.MockTransport(seen.prom))
        tools = build_evidence_tools(k8s=k8s, es=EsApi.create(es_client, EsConfig(base_url="http://es.test:9200")),
                                     prom=PromApi.create(prom_client, "http://prom.test:9090"))
        rounds = LlmEvidence(EvidenceRunner(tools), TenantScopes([scope]), budget)
        try:
            async with standin.http() as http:
                # "now" is the stand-in's clock, so its log lines fall inside the model's time window.
                stage = SecondOpinion(make_client(standin, http), policies, evidence=rounds,
                                      context=StageContext(clock=lambda: seen.es.now))
                return [o.record for o in (await stage(triaged(policies))).outputs]
        finally:
            await asyncio.gather(k8s.aclose(), es_client.aclose(), prom_client.aclose())

    return asyncio.run(go()), standin, seen


def _llm_result(records: list[object]) -> RcaResult:
    result = records[0]
    assert isinstance(result, RcaResult)
    return result


def _prompt(request: dict[str, Any]) -> str:
    return "\n".join(m["content"] for m in request["messages"])


def test_the_model_reads_what_it_asked_for_in_its_tenants_namespace_and_answers_again(policies: PolicySet) -> None:
    first = answer_json(evidence_plan=[OWN_LOGS], summary="maybe a crash loop", confidence=0.3)
    final = answer_json(summary="log flood from a crash-looping pod", cause="noisy-0 restarts", confidence=0.8)
    records, standin, seen = second_opinion(policies, [Reply(first), Reply(final)], ACME, ToolBudget())

    result = _llm_result(records)
    assert result.diagnosis == "log flood from a crash-looping pod"
    fetched = [e for e in result.evidence if e.summary.startswith("llm:")]
    assert [(e.tool, e.operation, e.status) for e in fetched] == [("es", "search", EvidenceStatus.SUCCESS)]
    # What was read went back to the model: the second prompt carries it, the first did not.
    assert len(standin.requests) == 2
    assert "llm:es.search" in _prompt(standin.requests[1]) and "llm:es.search" not in _prompt(standin.requests[0])
    assert "team-a-web secret log line" in _prompt(standin.requests[1])
    assert seen.es.requests and not seen.other_tenant_read()


def test_reads_outside_the_tenants_scope_are_refused_and_said_so(policies: PolicySet) -> None:
    first = answer_json(evidence_plan=[OTHER_LOGS, OTHER_METRICS, PROBE])
    records, standin, seen = second_opinion(policies, [Reply(first), Reply(answer_json())], ACME, ToolBudget())

    assert not seen.other_tenant_read()
    assert seen.cluster.reads == [] and seen.prom_queries == []
    fetched = {(e.tool, e.operation): e for e in _llm_result(records).evidence if e.summary.startswith("llm:")}
    # netprobe is never offered to the model, so it is not even a refused read.
    assert set(fetched) == {("k8s", "logs"), ("prom", "query")}
    assert all(e.status is EvidenceStatus.SKIPPED for e in fetched.values())
    assert "namespace 'team-b' is not one of tenant acme's namespaces" in fetched[("k8s", "logs")].summary
    assert "runs only for a tenant that may read every namespace" in fetched[("prom", "query")].summary
    assert "secret" not in _prompt(standin.requests[1])


def test_a_tenant_owning_every_namespace_may_run_the_models_promql(policies: PolicySet) -> None:
    first = answer_json(evidence_plan=[OTHER_METRICS])
    records, _, seen = second_opinion(policies, [Reply(first), Reply(answer_json())], WHOLE, ToolBudget())
    assert seen.prom_queries and "log_lines_total" in seen.prom_queries[0]
    fetched = [e for e in _llm_result(records).evidence if e.summary.startswith("llm:")]
    assert [e.status for e in fetched] == [EvidenceStatus.SUCCESS]


def test_calls_and_rounds_are_bounded(policies: PolicySet) -> None:
    many = [dict(OWN_LOGS, query=OWN_LOGS["query"].replace("now-5m", f"now-{i + 1}m")) for i in range(6)]
    asks_again = answer_json(evidence_plan=[dict(OWN_LOGS, query=OWN_LOGS["query"].replace("now-5m", "now-9m"))])
    replies = [Reply(answer_json(evidence_plan=many)), Reply(asks_again), Reply(asks_again), Reply(asks_again)]
    records, standin, seen = second_opinion(policies, replies, WHOLE, ToolBudget(max_calls=2, max_rounds=1))

    fetched = [e for e in _llm_result(records).evidence if e.summary.startswith("llm:")]
    assert len(fetched) == 2 and len(seen.es.requests) == 2
    assert len(standin.requests) == 2  # the first answer, one round, the answer after it; never a third


def test_the_worker_wires_the_round_only_with_evidence_backends() -> None:
    scoped = {"acme": TenantSettings(namespaces=["team-a-*"])}
    without = Settings(tenants=scoped)
    assert build_llm_evidence(without) is None
    with_prom = Settings(tenants=scoped, evidence=EvidenceSettings(prometheus_url="http://prom.test:9090"))
    rounds = build_llm_evidence(with_prom)
    assert rounds is not None and rounds.budget == ToolBudget(max_calls=5, time_budget_s=30.0, max_rounds=1)
    assert rounds.scopes["acme"].namespaces == ("team-a-*",)
    off = Settings(tenants=scoped, evidence=EvidenceSettings(prometheus_url="http://prom.test:9090"),
                   llm=LlmSettings(evidence_rounds=0))
    assert build_llm_evidence(off) is None


def test_the_fetcher_itself_refuses_what_the_catalogue_does_not_offer_the_model(policies: PolicySet) -> None:
    # analyse already drops such requests; the fetcher is the second belt for any other caller.
    seen = Backends()

    async def go() -> list[Evidence]:
        k8s = k8s_api(seen.cluster.app(), "viewer-token")
        rounds = LlmEvidence(EvidenceRunner(build_evidence_tools(k8s=k8s)), TenantScopes([WHOLE]), ToolBudget())
        fetch = rounds.fetcher(triaged(policies).incident, NOW)
        try:
            return [await fetch(EvidenceRequest(tool="k8s", operation=op, query="namespace=team-a-web pod=noisy-0",
                                                purpose="x")) for op in ("owners", "rollout_restart")]
        finally:
            await k8s.aclose()

    records = asyncio.run(go())
    assert seen.cluster.reads == []
    assert [e.status for e in records] == [EvidenceStatus.SKIPPED] * 2
    assert all("not an evidence operation offered to the LLM" in e.summary for e in records)


def test_the_model_is_offered_only_the_evidence_this_deployment_can_read(policies: PolicySet) -> None:
    """Prometheus alone configured: the prompt and the JSON schema offer prom reads only, so a model (held to the
    schema by a grammar on llama.cpp) cannot spend its few reads on a backend that is not there."""
    seen = Backends()
    standin = ChatStandIn([Reply(answer_json(evidence_plan=[OTHER_METRICS])), Reply(answer_json())])

    async def go() -> None:
        prom_client = httpx.AsyncClient(transport=httpx.MockTransport(seen.prom))
        tools = build_evidence_tools(prom=PromApi.create(prom_client, "http://prom.test:9090"))
        rounds = LlmEvidence(EvidenceRunner(tools), TenantScopes([WHOLE]), ToolBudget())
        assert rounds.offered("acme") == {"prom": ("query", "query_range")}
        try:
            async with standin.http() as http:
                await SecondOpinion(make_client(standin, http), policies, evidence=rounds)(triaged(policies))
        finally:
            await prom_client.aclose()

    asyncio.run(go())
    schema = standin.requests[0]["response_format"]["json_schema"]["schema"]
    assert schema["$defs"]["EvidenceRequest"]["properties"]["tool"]["enum"] == ["prom"]
    prompt = _prompt(standin.requests[0])
    assert "- prom: query, query_range" in prompt and "- k8s:" not in prompt and "- es:" not in prompt
    assert seen.prom_queries  # and the read it asked for ran
