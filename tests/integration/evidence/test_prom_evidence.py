"""Evidence tools against a real Prometheus: the policy's own queries, real errors, and hostile labels."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from executors.evidence import EvidenceReport, EvidenceRunner, build_evidence_tools, plan_from_triage
from executors.evidence.base import Observation
from executors.evidence.prom import PromApi, Query, QueryRange
from policies import PolicySet, load_policies, promql_escape, triage
from schemas.records import AlertEvent, AlertMetrics, EvidenceStatus, Incident
from tests.integration.evidence.conftest import RunningPrometheus
from tests.integration.evidence.exporter import LABELS


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    return load_policies()


def observe(prom: RunningPrometheus, query: str, *, ranged: bool = False, **params: str) -> Observation:
    async def go() -> Observation:
        async with httpx.AsyncClient(timeout=10) as client:
            api = PromApi.create(client, prom.url)
            tool = QueryRange(api) if ranged else Query(api)
            if params:
                return await tool.observe({"query": query, **params})
            return await tool.observe_query(query)
    return asyncio.run(go())


def incident(policies: PolicySet, alert: str, labels: dict[str, str]) -> Incident:
    now = datetime.now(UTC)
    event = AlertEvent(tenant="acme", event_id="e1", fingerprint="f1", alert=alert, severity="warning",
                       labels=labels, metrics=AlertMetrics(times=1), received_at=now, parser="test")
    event = event.model_copy(update={"alert_class": policies.classify(event)})
    return Incident(tenant="acme", incident_id="inc-1", fingerprint="f1", alert_class=event.alert_class,
                    opened_at=now, last_seen_at=now, last_event_id="e1", event=event)


def run_plan(prom: RunningPrometheus, policies: PolicySet, inc: Incident) -> EvidenceReport:
    cls = policies.get(inc.alert_class)
    assert cls is not None, inc.alert_class
    now = datetime.now(UTC)
    plan = plan_from_triage([s.id for s in cls.spec.evidence], triage(inc, policies, now).evidence)

    async def go() -> EvidenceReport:
        async with httpx.AsyncClient(timeout=10) as client:
            tools = build_evidence_tools(prom=PromApi.create(client, prom.url))
            return await EvidenceRunner(tools, call_timeout_s=10, budget_s=30).run(plan, now=now)
    return asyncio.run(go())


def test_remote_write_behind_plan_measures_the_lag(prometheus: RunningPrometheus, policies: PolicySet) -> None:
    inc = incident(policies, "PrometheusRemoteWriteBehind",
                   {"namespace": "insight-system", "pod": "prometheus-insight-agent-0"})
    report = run_plan(prometheus, policies, inc)
    cls = policies.get(inc.alert_class)
    assert cls is not None
    by_id = dict(zip([s.id for s in cls.spec.evidence], report.evidence, strict=True))
    assert report.values["lag_seconds"] == 600.0
    assert by_id["lag_seconds"].status is EvidenceStatus.SUCCESS
    # Series the exporter does not serve are "no data", not zero and not an error.
    assert by_id["failed_rate"].status is EvidenceStatus.NO_DATA
    assert "failed_rate" not in report.values


def test_etcd_fsync_p99_from_real_histogram_buckets(prometheus: RunningPrometheus, policies: PolicySet) -> None:
    inc = incident(policies, "etcdHighFsyncDurations", {"namespace": "kube-system", "pod": "etcd-master-0"})
    if inc.alert_class != "etcd_latency":
        pytest.fail(f"etcd alert classified as {inc.alert_class}")
    report = run_plan(prometheus, policies, inc)
    # Every fsync lands in the (0.512, 1.024] bucket: p99 interpolates inside it.
    assert 0.512 < report.values["fsync_p99"] <= 1.024


def test_counter_rate_and_range_summary(prometheus: RunningPrometheus) -> None:
    obs = observe(prometheus, 'sum(rate(vm_rows_inserted_total{namespace="insight-system"}[1m]))')
    assert obs.values[""] > 0
    ranged = observe(prometheus, f"prometheus_remote_storage_highest_timestamp_in_seconds{{{LABELS}}}",
                     ranged=True, range="5m", step="15s")
    assert ranged.evidence.status is EvidenceStatus.SUCCESS
    assert ranged.values["max"] == ranged.values["min"] == 1_764_064_800.0
    assert "min=" in ranged.evidence.summary and "last=" in ranged.evidence.summary


def test_prometheus_parse_error_reaches_the_reader(prometheus: RunningPrometheus) -> None:
    obs = observe(prometheus, "sum(rate(up[5m])) by by")
    assert obs.evidence.status is EvidenceStatus.ERROR
    assert "bad_data" in (obs.evidence.error or "") and "parse error" in (obs.evidence.error or "")


@pytest.mark.parametrize("value", ['a"}) or vector(1) #', "../../etc", "x\n", "q\\\"", "z" * 10_000])
def test_hostile_label_escaped_by_policies_matches_nothing(prometheus: RunningPrometheus, value: str) -> None:
    query = f'max(prometheus_remote_storage_highest_timestamp_in_seconds{{pod="{promql_escape(value)}"}})'
    obs = observe(prometheus, query)
    if len(query) > 4000:
        assert obs.evidence.status is EvidenceStatus.ERROR and "refused" in (obs.evidence.error or "")
        return
    # Had the value escaped its string, `or vector(1)` would have answered 1.
    assert obs.evidence.status is EvidenceStatus.NO_DATA, obs.evidence
    assert obs.values == {}
