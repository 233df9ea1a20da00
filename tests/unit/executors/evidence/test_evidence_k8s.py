"""k8s evidence against the Kubernetes API stand-in: what the on-call reader and the thresholds get."""

from __future__ import annotations

from typing import Any

import pytest

from executors.evidence.base import Observation
from executors.evidence.k8s import Events, Logs, Owners, Pods
from schemas.records import EvidenceStatus
from tests.unit.executors.evidence.helpers import NOW, run
from tests.unit.executors.evidence.standins import K8sReadStandIn
from tests.unit.executors.exec_helpers import k8s_api

NS = "insight-system"


@pytest.fixture
def cluster() -> K8sReadStandIn:
    c = K8sReadStandIn()
    c.add_labelled_pod(NS, "vmstorage-0", {"app.kubernetes.io/name": "vmstorage"}, owner=("StatefulSet", "vmstorage"))
    c.add_labelled_pod(NS, "vmstorage-1", {"app.kubernetes.io/name": "vmstorage"}, owner=("StatefulSet", "vmstorage"),
                       restarts=7, ready=False, waiting="CrashLoopBackOff")
    c.add_labelled_pod(NS, "vminsert-7d9f8c6b5-x2x4z", {"app.kubernetes.io/name": "vminsert"},
                       owner=("ReplicaSet", "vminsert-7d9f8c6b5"))
    c.add_replicaset(NS, "vminsert-7d9f8c6b5", "vminsert")
    c.add_workload(NS, "statefulsets", "vmstorage")
    c.add_event(NS, "vmstorage-1", "BackOff", "Back-off restarting failed container", at="2026-11-25T09:59:00Z")
    c.add_event(NS, "vmstorage-1", "Pulled", "Container image already present", type_="Normal",
                at="2026-11-25T09:58:00Z")
    c.logs[(NS, "vmstorage-1")] = "".join(
        [f"2026-11-25T09:5{i % 10}:00Z error cannot open file part-{i}: no space left on device\n" for i in range(40)]
        + ["2026-11-25T09:59:59Z info started\n"])
    return c


def observe(cluster: K8sReadStandIn | None, tool_cls: type[Any], query: str, token: str = "viewer-token",
            app: Any = None) -> Observation:
    async def go() -> Observation:
        api = k8s_api(app or cluster.app(), token)  # type: ignore[union-attr]
        try:
            return await tool_cls(api).observe_query(query, now=NOW)
        finally:
            await api.aclose()
    return run(go)


def test_pods_by_selector_lists_the_unhealthy_first_with_counts(cluster: K8sReadStandIn) -> None:
    obs = observe(cluster, Pods, f"namespace={NS} selector=app.kubernetes.io/name=vmstorage")
    assert obs.values == {"": 2.0, "restarts": 7.0, "not_ready": 1.0}
    lines = obs.evidence.summary.splitlines()
    assert "vmstorage-1" in lines[1] and "CrashLoopBackOff" in lines[1] and "ready=false" in lines[1]
    assert cluster.reads[-1][1]["labelSelector"] == "app.kubernetes.io/name=vmstorage"
    assert "labelSelector" in obs.evidence.query


def test_events_newest_first_with_warning_count(cluster: K8sReadStandIn) -> None:
    obs = observe(cluster, Events, f"namespace={NS} involvedObject.name=vmstorage-1")
    assert obs.values == {"": 1.0, "total": 2.0}
    assert "BackOff" in obs.evidence.summary.splitlines()[1]
    assert cluster.reads[-1][1]["fieldSelector"] == "involvedObject.name=vmstorage-1"


def test_no_events_is_no_data(cluster: K8sReadStandIn) -> None:
    obs = observe(cluster, Events, f"namespace={NS} involvedObject.name=vmstorage-0")
    assert obs.evidence.status is EvidenceStatus.NO_DATA


def test_logs_grep_folds_repeats_and_is_bounded(cluster: K8sReadStandIn) -> None:
    obs = observe(cluster, Logs, f"namespace={NS} pod=vmstorage-1 since=15m grep=cannot|error|failed")
    assert obs.values == {"": 40.0}
    assert "x40: " in obs.evidence.summary and "no space left on device" in obs.evidence.summary
    query = cluster.reads[-1][1]
    assert query["sinceSeconds"] == "900" and query["tailLines"] == "100" and int(query["limitBytes"]) <= 262144


def test_logs_without_matches_say_what_was_searched(cluster: K8sReadStandIn) -> None:
    obs = observe(cluster, Logs, f"namespace={NS} pod=vmstorage-1 grep=panic")
    assert obs.evidence.status is EvidenceStatus.NO_DATA and "/panic/" in obs.evidence.summary


def test_owner_chain_says_when_an_owner_is_gone(cluster: K8sReadStandIn) -> None:
    """Stand-in: a ReplicaSet whose Deployment was deleted with --cascade=orphan; the plain chain is in k8s_real."""
    obs = observe(cluster, Owners, f"namespace={NS} pod=vminsert-7d9f8c6b5-x2x4z")
    assert obs.evidence.summary == ("Pod/vminsert-7d9f8c6b5-x2x4z → ReplicaSet/vminsert-7d9f8c6b5 → "
                                    "Deployment/vminsert (gone)")
    sts = observe(cluster, Owners, f"namespace={NS} pod=vmstorage-0")
    assert sts.evidence.summary == "Pod/vmstorage-0 → StatefulSet/vmstorage"


def test_forbidden_and_unauthorized_are_errors_with_the_api_server_message(cluster: K8sReadStandIn) -> None:
    cluster.fail_next("GET", 403, 'pods is forbidden: User "system:serviceaccount:rcaflow:viewer" cannot list')
    obs = observe(cluster, Pods, f"namespace={NS} selector=app=x")
    assert obs.evidence.status is EvidenceStatus.ERROR
    assert "403 Forbidden" in (obs.evidence.error or "") and "cannot list" in (obs.evidence.error or "")
    bad = observe(cluster, Pods, f"namespace={NS} selector=app=x", token="wrong")
    assert "401" in (bad.evidence.error or "")


def test_server_error_keeps_the_request_that_failed(cluster: K8sReadStandIn) -> None:
    cluster.fail_next("GET", 500, "etcdserver: request timed out")
    obs = observe(cluster, Events, f"namespace={NS} involvedObject.name=vmstorage-1")
    assert "etcdserver: request timed out" in (obs.evidence.error or "")
    assert obs.evidence.query.startswith(f"GET /api/v1/namespaces/{NS}/events ")


@pytest.mark.parametrize(
    "query",
    [
        "namespace=../../etc pod=x",
        "namespace=insight-system pod=../../etc",
        "namespace=insight-system pod=x%2F..",
        'namespace=insight-system pod=a"})',
        "namespace=insight-system pod=" + "a" * 10_000,
        "namespace=insight-system selector=app=x,tier!=y;rm",
        "namespace=insight-system pod=x pod=y",
        "namespace=insight-system pod=x grep=(",
        "namespace=insight-system nonsense",
    ],
)
def test_hostile_names_never_reach_a_url(cluster: K8sReadStandIn, query: str) -> None:
    tool = Pods if "selector" in query else Logs
    obs = observe(cluster, tool, query)
    assert obs.evidence.status is EvidenceStatus.ERROR
    assert cluster.reads == []
    assert len(obs.evidence.query) <= 5100


def test_newline_in_a_name_is_refused(cluster: K8sReadStandIn) -> None:
    async def go() -> Observation:
        api = k8s_api(cluster.app(), "viewer-token")
        try:
            return await Logs(api).observe({"namespace": NS, "pod": "x\n"}, now=NOW)
        finally:
            await api.aclose()
    obs = run(go)
    assert obs.evidence.status is EvidenceStatus.ERROR and cluster.reads == []
    assert "pod" in (obs.evidence.error or "")
