"""deploy/kubernetes applied to a real API server: kustomize builds it, the server accepts it (dry run, then for
real, Pod Security "restricted" enforced), kwok makes every role's pods Ready, and the API server itself says
what the executor's ServiceAccount may do (SelfSubjectAccessReview with its own token): what the policy's
operations need, in the bound namespace only, and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from executors.tools.k8s_api import Permission
from executors.tools.k8s_rbac import evidence_permissions, executor_permissions
from policies.loader import load_policies
from tests.integration.k8s_real.conftest import wait_for
from tests.support.k8s.cluster import K8sCluster

ROOT = Path(__file__).resolve().parents[3]
OVERLAY = ROOT / "deploy" / "kubernetes" / "overlays" / "example"
TARGET = "insight-system"  # the namespace the example overlay binds

#: Things an executor must never be able to do, even in a namespace it acts in.
NEVER = [Permission("apps", "deployments", "create"), Permission("apps", "deployments", "delete"),
         Permission("apps", "deployments", "update"), Permission("", "secrets", "get"),
         Permission("", "secrets", "list"), Permission("", "pods", "create"), Permission("", "pods/exec", "create"),
         Permission("", "configmaps", "patch"), Permission("rbac.authorization.k8s.io", "roles", "create"),
         Permission("apps", "replicasets", "patch")]


def _allowed(cluster: K8sCluster, token: str, p: Permission, namespace: str) -> bool:
    from kubernetes import client

    resource, _, subresource = p.resource.partition("/")
    with cluster.sync_client(token) as api:
        review = client.AuthorizationV1Api(api).create_self_subject_access_review(client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=client.V1ResourceAttributes(
                group=p.group, resource=resource, subresource=subresource or None,
                verb=p.verb, namespace=namespace))))
        return bool(review.status.allowed)


@pytest.fixture(scope="module")
def applied(k8s_cluster: K8sCluster) -> dict[str, Any]:
    """The example overlay, built by kustomize and applied with server-side apply (a dry run first)."""
    from kubernetes import client

    built = k8s_cluster.kubectl("kustomize", str(OVERLAY))
    docs = [d for d in yaml.safe_load_all(built) if d]
    # The worker's state volume: a PersistentVolume the claim can bind to (no provisioner here).
    with k8s_cluster.sync_client() as api:
        client.CoreV1Api(api).create_persistent_volume(client.V1PersistentVolume(
            metadata=client.V1ObjectMeta(name="rcaflow-worker-data"),
            spec=client.V1PersistentVolumeSpec(capacity={"storage": "1Gi"}, access_modes=["ReadWriteOnce"],
                                               host_path=client.V1HostPathVolumeSource(path="/tmp/rcaflow-pv"))))
    namespaces = yaml.safe_dump_all([d for d in docs if d["kind"] == "Namespace"])
    k8s_cluster.kubectl("apply", "--server-side", "--field-manager=rcaflow-deploy", "-f", "-", stdin=namespaces)
    dry = k8s_cluster.kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=rcaflow-deploy",
                              "-f", "-", stdin=built)
    real = k8s_cluster.kubectl("apply", "--server-side", "--field-manager=rcaflow-deploy", "-f", "-", stdin=built)
    return {"docs": docs, "dry": dry, "real": real}


def test_the_overlay_is_accepted_by_the_server_and_every_role_becomes_ready(
        k8s_cluster: K8sCluster, applied: dict[str, Any]) -> None:
    from kubernetes import client

    kinds = {(d["kind"], d["metadata"]["name"]) for d in applied["docs"]}
    assert {("Deployment", "rcaflow-api"), ("StatefulSet", "rcaflow-worker"), ("Deployment", "rcaflow-executor"),
            ("ClusterRole", "rcaflow-executor"), ("RoleBinding", "rcaflow-executor")} <= kinds
    assert "serverside-applied (server dry run)" in applied["dry"]
    with k8s_cluster.sync_client() as api:
        apps = client.AppsV1Api(api)

        def ready() -> bool:
            api_ = apps.read_namespaced_deployment("rcaflow-api", "rcaflow").status
            executor = apps.read_namespaced_deployment("rcaflow-executor", "rcaflow").status
            worker = apps.read_namespaced_stateful_set("rcaflow-worker", "rcaflow").status
            return (api_.available_replicas == 2 and executor.available_replicas == 1
                    and worker.ready_replicas == 1)

        wait_for(ready, 90, "api, worker and executor pods Ready under Pod Security 'restricted'")
        pods = client.CoreV1Api(api).list_namespaced_pod("rcaflow").items
    executor_pod = next(p for p in pods if p.metadata.labels["app.kubernetes.io/component"] == "executor")
    assert executor_pod.spec.service_account_name == "rcaflow-executor"
    for pod in pods:
        assert pod.spec.security_context.seccomp_profile.type == "RuntimeDefault"


def test_the_executor_may_do_what_the_policy_needs_in_its_namespace_and_nothing_else(
        k8s_cluster: K8sCluster, applied: dict[str, Any]) -> None:
    del applied
    token = k8s_cluster.service_account_token("rcaflow", "rcaflow-executor")
    needed = executor_permissions([(a.tool, a.operation) for c in load_policies().document.classes
                                   for a in c.actions])
    assert needed
    refused_needed = [p for p in sorted(needed) if not _allowed(k8s_cluster, token, p, TARGET)]
    assert refused_needed == []
    granted_elsewhere = [p for p in sorted(needed) if _allowed(k8s_cluster, token, p, "default")]
    assert granted_elsewhere == []  # only where an overlay bound it
    granted_never = [p for p in NEVER if _allowed(k8s_cluster, token, p, TARGET)]
    assert granted_never == []


def test_the_evidence_identity_only_reads(k8s_cluster: K8sCluster, applied: dict[str, Any]) -> None:
    del applied
    token = k8s_cluster.service_account_token("rcaflow", "rcaflow")
    reads = evidence_permissions()
    assert [p for p in sorted(reads) if not _allowed(k8s_cluster, token, p, TARGET)] == []
    writes = [Permission("", "pods", "patch"), Permission("", "pods", "delete"),
              Permission("apps", "deployments", "patch"), Permission("apps", "deployments/scale", "patch")]
    assert [p for p in writes if _allowed(k8s_cluster, token, p, TARGET)] == []
