"""The runner over a real policy plan: what triage gets back, and how failures, gaps and slow tools show up."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from executors.base import ActionSpec
from executors.evidence import EvidenceReport, EvidenceRunner, PlannedStep, build_evidence_tools, plan_from_triage
from executors.evidence.base import EvidenceContext, EvidenceTool, Finding, RequestLog
from executors.evidence.es import EsApi, EsConfig
from executors.evidence.prom import PromApi
from executors.params import Params
from policies import PolicySet, load_policies, triage
from schemas.records import AlertEvent, AlertMetrics, EvidenceStatus, Incident, Risk
from tests.unit.executors.evidence.helpers import NOW, run
from tests.unit.executors.evidence.standins import K8sReadStandIn
from tests.unit.executors.exec_helpers import k8s_api


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    return load_policies()


def incident(policies: PolicySet, alert: str, labels: dict[str, str]) -> Incident:
    event = AlertEvent(tenant="acme", event_id="e1", fingerprint="f1", alert=alert, severity="warning",
                       labels=labels, metrics=AlertMetrics(times=1), received_at=NOW, parser="test")
    event = event.model_copy(update={"alert_class": policies.classify(event)})
    return Incident(tenant="acme", incident_id="inc-1", fingerprint="f1", alert_class=event.alert_class,
                    opened_at=NOW, last_seen_at=NOW, last_event_id="e1", event=event)


def backends(prom_value: str, es_total: int) -> tuple[httpx.AsyncClient, httpx.AsyncClient, K8sReadStandIn]:
    def prom(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {}, "value": [NOW.timestamp(), prom_value]}]}})

    def es(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert "query_string" not in json.dumps(body)
        return httpx.Response(200, json={"took": 3, "timed_out": False, "_shards": {"total": 1, "failed": 0},
                                         "hits": {"total": {"value": es_total, "relation": "eq"}, "hits": []}})

    cluster = K8sReadStandIn()
    cluster.add_labelled_pod("insight-system", "noisy-0", {"app": "noisy"})
    cluster.logs[("insight-system", "noisy-0")] = "".join(f"debug tick {i}\n" for i in range(300))
    return (httpx.AsyncClient(transport=httpx.MockTransport(prom)),
            httpx.AsyncClient(transport=httpx.MockTransport(es)), cluster)


def gather(policies: PolicySet, inc: Incident, prom_value: str, es_total: int, **runner_kw: Any) -> EvidenceReport:
    cls = policies.get(inc.alert_class)
    assert cls is not None
    plan = plan_from_triage([s.id for s in cls.spec.evidence], triage(inc, policies, NOW).evidence)

    async def go() -> EvidenceReport:
        prom_client, es_client, cluster = backends(prom_value, es_total)
        k8s = k8s_api(cluster.app(), "viewer-token")
        tools = build_evidence_tools(
            prom=PromApi.create(prom_client, "http://prom.test:9090"), k8s=k8s,
            es=EsApi.create(es_client, EsConfig(base_url="http://es.test:9200")),
        )
        try:
            return await EvidenceRunner(tools, **runner_kw).run(plan, now=NOW)
        finally:
            await asyncio.gather(prom_client.aclose(), es_client.aclose(), k8s.aclose())
    return run(go)


def test_measured_plan_drives_the_policy_diagnosis(policies: PolicySet) -> None:
    inc = incident(policies, "LogFlood", {"namespace": "insight-system", "pod": "noisy-0"})
    report = gather(policies, inc, prom_value="5", es_total=150_000)
    assert [e.status for e in report.evidence] == [EvidenceStatus.SUCCESS] * 3
    assert report.values["log_lines_5m"] == 150_000.0 and report.values["restarts_1h"] == 5.0
    assert report.values["pod_logs"] == 200.0  # tail=200 from the plan
    assert [e.summary.split(":")[0] for e in report.evidence] == ["log_lines_5m", "restarts_1h", "pod_logs"]
    result = triage(inc, policies, NOW, evidence_values=report.values)
    assert "反复重启" in result.diagnosis  # crash_loop_flood: flooding and crash looping

    quiet = gather(policies, inc, prom_value="0", es_total=10)
    assert "反复重启" not in triage(inc, policies, NOW, evidence_values=quiet.values).diagnosis


def test_unrenderable_steps_pass_through_and_unconfigured_tools_are_skipped(policies: PolicySet) -> None:
    inc = incident(policies, "LogFlood", {"namespace": "insight-system", "pod": 'a"}) or vector(1) #'})
    plan = plan_from_triage(["log_lines_5m", "restarts_1h", "pod_logs"], triage(inc, policies, NOW).evidence)
    assert all(step.blocked is not None for step in plan)
    report = run(lambda: EvidenceRunner({}).run(plan, now=NOW))
    assert all(e.status is EvidenceStatus.ERROR for e in report.evidence) and report.values == {}
    assert all("vector(1)" not in e.query for e in report.evidence)

    fine = [PlannedStep("x", "netprobe", "tcp", "db:5432")]
    skipped = run(lambda: EvidenceRunner({}).run(fine, now=NOW))
    assert skipped.evidence[0].status is EvidenceStatus.SKIPPED
    assert "not configured" in skipped.evidence[0].summary


class SleepParams(Params):
    query: str


class Sleepy(EvidenceTool[SleepParams]):
    """A tool that answers after ``query`` seconds: stands in for an upstream that hangs."""

    spec = ActionSpec(name="test.sleep", description="sleeps", params=SleepParams, risk=Risk.READ)

    async def _gather(self, params: SleepParams, ctx: EvidenceContext, log: RequestLog) -> Finding:
        log.sent("SLEEP", params.query)
        await asyncio.sleep(float(params.query))
        return Finding("woke", value=1.0)


def test_a_hanging_call_times_out_alone_and_the_budget_bounds_the_whole_plan() -> None:
    steps = [PlannedStep("fast", "test", "sleep", "0"), PlannedStep("hang", "test", "sleep", "30")]
    per_call = run(lambda: EvidenceRunner({"test.sleep": Sleepy()}, call_timeout_s=0.2, budget_s=60).run(steps))
    assert [e.status for e in per_call.evidence] == [EvidenceStatus.SUCCESS, EvidenceStatus.ERROR]
    assert per_call.values == {"fast": 1.0}
    assert "no answer within 0.2s" in (per_call.evidence[1].error or "")
    assert per_call.evidence[1].query == "30"

    budget = run(lambda: EvidenceRunner({"test.sleep": Sleepy()}, call_timeout_s=60, budget_s=0.2).run(steps))
    assert budget.evidence[1].status is EvidenceStatus.ERROR
    assert "budget" in (budget.evidence[1].error or "")


def test_plan_from_triage_refuses_a_short_evidence_list() -> None:
    with pytest.raises(ValueError):
        plan_from_triage(["a", "b"], [])


def test_every_shipped_plan_step_is_accepted_by_its_tool(policies: PolicySet) -> None:
    """A policy step a tool would refuse would silently never gather anything: catch it here."""
    tools = build_evidence_tools(
        prom=PromApi.create(httpx.AsyncClient(), "http://prom.test"),
        k8s=k8s_api(K8sReadStandIn().app()),
        es=EsApi.create(httpx.AsyncClient(), EsConfig(base_url="http://es.test")),
    )
    sample = {"namespace": "insight-system", "pod": "vmstorage-0", "deployment|re": "vminsert",
              "deployment": "vminsert", "statefulset": "vmstorage"}
    checked = 0
    for cls in policies.document.classes:
        for step in cls.evidence:
            query = step.query
            for var, value in sample.items():
                query = query.replace("${" + var + "}", value)
            assert "${" not in query, (cls.id, step.id, query)
            tool = tools[f"{step.tool}.{step.operation}"]
            tool.validate(tool.parse_query(query))
            checked += 1
    assert checked > 20
