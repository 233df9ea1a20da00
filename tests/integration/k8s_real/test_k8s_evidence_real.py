"""The read-only k8s evidence and diagnostics against a real API server: pods, events, owners, logs, describe.

The facts come from the real controllers: the deployment controller's ScalingReplicaSet events, the
ReplicaSet's ownerReference, the scheduler's placement, kwok's pod status and its served log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from executors.evidence.k8s import Describe, Events, Logs, Owners, Pods
from executors.tools.k8s_api import K8sApi
from schemas.records import Risk
from tests.integration.k8s_real.conftest import admin_api, create_deployment, live_pods, run, wait_for
from tests.support.k8s.cluster import K8sCluster

T = TypeVar("T")


def _with_api(cluster: K8sCluster, use: Callable[[K8sApi], Awaitable[T]]) -> T:
    async def go() -> T:
        api = K8sApi.from_kubeconfig(str(cluster.kubeconfig))
        try:
            return await use(api)
        finally:
            await api.aclose()
    return asyncio.run(go())


def _observe(cluster: K8sCluster, tool: type[Any], query: str) -> Any:
    return _with_api(cluster, lambda api: tool(api).observe_query(query))


def test_pods_events_owners_and_describe_come_from_the_real_controllers(k8s_cluster: K8sCluster,
                                                                       namespace: str) -> None:
    create_deployment(k8s_cluster, namespace, "web", 2)
    pod = live_pods(k8s_cluster, namespace, "web")[0]
    name = pod.metadata.name
    replica_set = pod.metadata.owner_references[0].name

    pods = _observe(k8s_cluster, Pods, f"namespace={namespace} selector=app=web")
    assert pods.evidence.status.value == "success", pods.evidence
    assert pods.values == {"": 2.0, "restarts": 0.0, "not_ready": 0.0}
    assert f"2 pod(s) in {namespace}, 0 not ready, 0 restart(s):" in pods.evidence.summary
    assert f"- {name}: phase=Running ready=true restarts=0" in pods.evidence.summary
    assert f"GET /api/v1/namespaces/{namespace}/pods" in pods.evidence.query

    events = wait_for(lambda: (o := _observe(k8s_cluster, Events, f"namespace={namespace} name=web"))
                      and o.values.get("total", 0) >= 1 and o, 30, "the deployment controller's events")
    assert "ScalingReplicaSet" in events.evidence.summary and events.values[""] == 0.0  # no warnings
    assert f"Scaled up replica set {replica_set}" in events.evidence.summary

    owners = _observe(k8s_cluster, Owners, f"namespace={namespace} pod={name}")
    assert owners.evidence.summary == f"Pod/{name} → ReplicaSet/{replica_set} → Deployment/web"
    assert owners.values[""] == 3.0

    described = _observe(k8s_cluster, Describe, f"namespace={namespace} pod={name}")
    summary = described.evidence.summary
    assert summary.startswith(f"{name}: phase=Running ready=true restarts=0"), summary
    assert f"owners: Pod/{name} → ReplicaSet/{replica_set} → Deployment/web" in summary
    assert "Scheduled" in summary  # the scheduler's event on the pod
    assert described.values["ready"] == 1.0

    missing = _observe(k8s_cluster, Pods, f"namespace={namespace} name=ghost-0")
    assert missing.evidence.status.value == "no_data" and "not found" in missing.evidence.summary


def test_logs_are_read_through_the_api_server_from_the_node(k8s_cluster: K8sCluster, namespace: str) -> None:
    create_deployment(k8s_cluster, namespace, "web", 1)
    name = live_pods(k8s_cluster, namespace, "web")[0].metadata.name
    logs = _observe(k8s_cluster, Logs, f"namespace={namespace} pod={name} tail=50 grep=cannot")
    assert logs.evidence.status.value == "success", logs.evidence
    assert logs.values[""] == 2.0
    assert "x2: cannot parse rules file /etc/rules/a.yaml: line 3" in logs.evidence.summary
    assert '"limitBytes":"262144"' in logs.evidence.query


def test_a_stuck_rollout_shows_as_warning_events(k8s_cluster: K8sCluster, namespace: str) -> None:
    """A quota refuses the new pods: the ReplicaSet's FailedCreate warnings are what the evidence shows."""
    from kubernetes import client

    create_deployment(k8s_cluster, namespace, "web", 1)
    with k8s_cluster.sync_client() as api:
        client.CoreV1Api(api).create_namespaced_resource_quota(namespace, client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="pods"), spec=client.V1ResourceQuotaSpec(hard={"pods": "1"})))
        wait_for(lambda: (q := client.CoreV1Api(api).read_namespaced_resource_quota("pods", namespace).status)
                 and q.used and q.used.get("pods") == "1", 30, "the quota to count the pod")
        client.AppsV1Api(api).patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 2}})
        replica_set = live_pods(k8s_cluster, namespace, "web")[0].metadata.owner_references[0].name
    events = wait_for(lambda: (o := _observe(k8s_cluster, Events, f"namespace={namespace} name={replica_set}"))
                      and o.values.get("", 0) >= 1 and o, 30, "FailedCreate warnings")
    assert "FailedCreate" in events.evidence.summary and "exceeded quota" in events.evidence.summary


def test_diagnostics_collect_summarises_a_real_workload(k8s_cluster: K8sCluster, namespace: str) -> None:
    create_deployment(k8s_cluster, namespace, "web", 2)
    outcome = run(admin_api(k8s_cluster), "diagnostics.collect", {"namespace": namespace, "workload": "web"},
                  risk=Risk.READ)
    assert outcome.ok, outcome.output
    assert f"workload {namespace}/web: 2 pod(s)" in outcome.output
    assert "phase=Running restarts=0" in outcome.output
    assert "ScalingReplicaSet" in outcome.output or "Scheduled" in outcome.output
    assert "cannot parse rules file" in outcome.output  # the log tail, served by kwok through the API server
