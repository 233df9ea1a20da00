"""The k8s_real tests: the executor's actions and the evidence tools against a real Kubernetes API.

One control plane per session (tests/support/k8s); each test gets a namespace of its own and builds
its own objects with the official sync client, then drives rcaflow's tools through ``execute``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from executors import ConfirmPolicy, ExecutionOutcome, ToolRegistry, execute
from executors.tools.k8s_api import K8sApi
from schemas.records import ActionEvent, ActionState, Risk
from tests.support.k8s.cluster import K8sCluster
from tests.support.k8s.fixtures import k8s_cluster  # noqa: F401 (fixture)

T = TypeVar("T")
#: kwok makes pods Ready at once; a rollout of a few pods completes within seconds.
CONVERGE = ConfirmPolicy(within_s=90.0, every_s=0.25)


@pytest.fixture
def namespace(k8s_cluster: K8sCluster) -> Iterator[str]:  # noqa: F811 (the fixture above)
    """A namespace of the test's own, deleted afterwards (not waited for)."""
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:8]}"
    with k8s_cluster.sync_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        wait_for(lambda: _has_default_sa(core, name), 30, f"the default ServiceAccount of {name}")
    yield name
    with k8s_cluster.sync_client() as api:
        client.CoreV1Api(api).delete_namespace(name)


def _has_default_sa(core: Any, namespace: str) -> bool:
    from kubernetes.client.rest import ApiException

    try:
        core.read_namespaced_service_account("default", namespace)
        return True
    except ApiException:
        return False


def wait_for(probe: Callable[[], T], timeout_s: float, what: str, every_s: float = 0.2) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what} (last: {result!r})")
        time.sleep(every_s)


def action(name: str, params: dict[str, str], *, action_id: str = "act-1", risk: Risk = Risk.LOW,
           state: ActionState = ActionState.APPROVED) -> ActionEvent:
    tool, _, operation = name.partition(".")
    return ActionEvent(tenant="acme", action_id=action_id, incident_id="inc-1", alert_class="k8s_real",
                       name=f"test {name}", tool=tool, operation=operation, params=params, risk=risk,
                       state=state, at=datetime.now(UTC))


def run(api_factory: Callable[[], K8sApi], name: str, params: dict[str, str], *, dry_run: bool = False,
        confirm: ConfirmPolicy | None = None, action_id: str = "act-1", now: datetime | None = None,
        risk: Risk = Risk.LOW) -> ExecutionOutcome:
    """One action through ``execute`` with a fresh client (one event loop per call, like one executor task)."""

    async def go() -> ExecutionOutcome:
        api = api_factory()
        try:
            return await execute(action(name, params, action_id=action_id, risk=risk),
                                 registry=ToolRegistry({"k8s": api}), dry_run=dry_run, now=now, confirm=confirm)
        finally:
            await api.aclose()

    return asyncio.run(go())


def admin_api(cluster: K8sCluster) -> Callable[[], K8sApi]:
    """rcaflow's client as the executor would build it from a kubeconfig."""
    return lambda: K8sApi.from_kubeconfig(str(cluster.kubeconfig))


def labels(name: str) -> dict[str, str]:
    return {"app": name}


def pod_template(name: str) -> Any:
    from kubernetes import client

    return client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=labels(name)),
        spec=client.V1PodSpec(containers=[client.V1Container(name="main", image="registry.invalid/app:1")],
                              termination_grace_period_seconds=0))


def create_deployment(cluster: K8sCluster, namespace: str, name: str, replicas: int, *,
                      progress_deadline_s: int | None = None) -> None:
    from kubernetes import client

    with cluster.sync_client() as api:
        client.AppsV1Api(api).create_namespaced_deployment(namespace, client.V1Deployment(
            metadata=client.V1ObjectMeta(name=name, labels=labels(name)),
            spec=client.V1DeploymentSpec(replicas=replicas, selector=client.V1LabelSelector(match_labels=labels(name)),
                                         template=pod_template(name), progress_deadline_seconds=progress_deadline_s)))
    wait_for(lambda: deployment_ready(cluster, namespace, name, replicas), 60, f"deployment {name} ready")


def create_statefulset(cluster: K8sCluster, namespace: str, name: str, replicas: int) -> None:
    from kubernetes import client

    with cluster.sync_client() as api:
        client.AppsV1Api(api).create_namespaced_stateful_set(namespace, client.V1StatefulSet(
            metadata=client.V1ObjectMeta(name=name, labels=labels(name)),
            spec=client.V1StatefulSetSpec(replicas=replicas, service_name=name,
                                          selector=client.V1LabelSelector(match_labels=labels(name)),
                                          template=pod_template(name))))
    wait_for(lambda: read(cluster, "statefulset", namespace, name).status.ready_replicas == replicas, 60,
             f"statefulset {name} ready")


def read(cluster: K8sCluster, kind: str, namespace: str, name: str) -> Any:
    from kubernetes import client

    with cluster.sync_client() as api:
        apps = client.AppsV1Api(api)
        return (apps.read_namespaced_deployment(name, namespace) if kind == "deployment"
                else apps.read_namespaced_stateful_set(name, namespace))


def deployment_ready(cluster: K8sCluster, namespace: str, name: str, replicas: int) -> bool:
    d = read(cluster, "deployment", namespace, name)
    s = d.status
    return bool((s.observed_generation or 0) >= d.metadata.generation and (s.available_replicas or 0) == replicas
                and (s.updated_replicas or 0) == replicas and (s.replicas or 0) == replicas)


def live_pods(cluster: K8sCluster, namespace: str, app: str) -> list[Any]:
    from kubernetes import client

    with cluster.sync_client() as api:
        pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return [p for p in pods if p.metadata.deletion_timestamp is None]
