"""deploy/kubernetes applied to a real API server: kustomize builds the example overlay, the server accepts all of
it (dry run, then for real) with Pod Security "restricted" enforced on the namespace and Prometheus Operator's
real CRDs installed (tests/support/k8s/crds), kwok makes every role's pods Ready (one IMAP producer per mailbox
included), the disruption controller counts the budgets, a producer's rollout never runs two pods of one mailbox,
and the API server itself says what the executor's ServiceAccount may do (SelfSubjectAccessReview with its own
token): what the policy's operations need, in the bound namespace only, and nothing else."""

from __future__ import annotations

import copy
import threading
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
CRDS = ROOT / "tests" / "support" / "k8s" / "crds"
TARGET = "insight-system"  # the namespace the example overlay binds
NS = "rcaflow"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted",
              "pod-security.kubernetes.io/enforce-version": "latest"}
#: Secrets the operator creates (never in the manifests); the mailboxes' are rcaflow-mailbox-<mailbox>.
OPERATOR_SECRETS = {"rcaflow-secrets"}

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


def _of(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _mailbox_deployments(docs: list[dict[str, Any]]) -> dict[str, str]:
    """mailbox -> Deployment name."""
    return {d["spec"]["template"]["metadata"]["labels"]["rcaflow.io/mailbox"]: d["metadata"]["name"]
            for d in _of(docs, "Deployment")
            if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "ingest-imap"}


@pytest.fixture(scope="module")
def applied(k8s_cluster: K8sCluster) -> dict[str, Any]:
    """The example overlay, built by kustomize and applied with server-side apply (a dry run first), after
    Prometheus Operator's CRDs and with the rcaflow namespace labelled to enforce "restricted"."""
    from kubernetes import client

    built = k8s_cluster.kubectl("kustomize", str(OVERLAY))
    docs = [d for d in yaml.safe_load_all(built) if d]
    for crd in sorted(CRDS.glob("*.yaml")):
        k8s_cluster.kubectl("apply", "--server-side", "--field-manager=rcaflow-test", "-f", str(crd))
    k8s_cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                        "crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com")
    # The worker's state volume: a PersistentVolume the claim can bind to (no provisioner here).
    with k8s_cluster.sync_client() as api:
        client.CoreV1Api(api).create_persistent_volume(client.V1PersistentVolume(
            metadata=client.V1ObjectMeta(name="rcaflow-worker-data"),
            spec=client.V1PersistentVolumeSpec(capacity={"storage": "1Gi"}, access_modes=["ReadWriteOnce"],
                                               host_path=client.V1HostPathVolumeSource(path="/tmp/rcaflow-pv"))))
    namespaces = yaml.safe_dump_all(_of(docs, "Namespace"))
    k8s_cluster.kubectl("apply", "--server-side", "--field-manager=rcaflow-deploy", "-f", "-", stdin=namespaces)
    # Whatever the manifest says, this namespace enforces "restricted" for the tests below.
    k8s_cluster.kubectl("label", "--overwrite", "namespace", NS, *(f"{k}={v}" for k, v in RESTRICTED.items()))
    dry = k8s_cluster.kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=rcaflow-deploy",
                              "-f", "-", stdin=built)
    real = k8s_cluster.kubectl("apply", "--server-side", "--field-manager=rcaflow-deploy", "-f", "-", stdin=built)
    return {"docs": docs, "dry": dry, "real": real}


def test_the_overlay_is_accepted_by_the_server_and_every_role_becomes_ready(
        k8s_cluster: K8sCluster, applied: dict[str, Any]) -> None:
    from kubernetes import client

    docs = applied["docs"]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {("Deployment", "rcaflow-api"), ("StatefulSet", "rcaflow-worker"), ("Deployment", "rcaflow-executor"),
            ("ClusterRole", "rcaflow-executor"), ("RoleBinding", "rcaflow-executor"),
            ("ServiceMonitor", "rcaflow"), ("PrometheusRule", "rcaflow")} <= kinds
    mailboxes = _mailbox_deployments(docs)
    assert len(mailboxes) >= 2
    # Every object, the custom resources and network policies included, passed the server's validation.
    assert applied["dry"].count("serverside-applied (server dry run)") == len(docs)
    with k8s_cluster.sync_client() as api:
        apps = client.AppsV1Api(api)

        def ready() -> bool:
            api_ = apps.read_namespaced_deployment("rcaflow-api", NS).status
            executor = apps.read_namespaced_deployment("rcaflow-executor", NS).status
            worker = apps.read_namespaced_stateful_set("rcaflow-worker", NS).status
            ingest = [apps.read_namespaced_deployment(name, NS).status for name in mailboxes.values()]
            return (api_.available_replicas == 2 and executor.available_replicas == 1
                    and worker.ready_replicas == 1 and all(s.available_replicas == 1 for s in ingest))

        wait_for(ready, 90, "api, worker, executor and every mailbox's producer Ready under Pod Security "
                            "'restricted'")
        pods = client.CoreV1Api(api).list_namespaced_pod(NS).items
    by_component: dict[str, list[Any]] = {}
    for pod in pods:
        by_component.setdefault(pod.metadata.labels["app.kubernetes.io/component"], []).append(pod)
    assert by_component["executor"][0].spec.service_account_name == "rcaflow-executor"
    assert {p.metadata.labels["rcaflow.io/mailbox"] for p in by_component["ingest-imap"]} == set(mailboxes)
    for pod in by_component["ingest-imap"]:  # a mail reader gets no Kubernetes API token
        assert not any(v.projected for v in pod.spec.volumes or [])
    for pod in pods:
        assert pod.spec.security_context.seccomp_profile.type == "RuntimeDefault"


def test_restricted_admission_accepts_every_pod_and_refuses_one_without_seccomp(
        k8s_cluster: K8sCluster, applied: dict[str, Any]) -> None:
    """Each workload's pod, created as a bare Pod in the enforcing namespace (server dry run): the PodSecurity
    admission plugin is what judges it. A copy without the seccomp profile is refused, so the check has teeth."""
    workloads = [d for d in applied["docs"] if d["kind"] in ("Deployment", "StatefulSet")]
    assert len(workloads) >= 5

    def as_pod(workload: dict[str, Any]) -> dict[str, Any]:
        template = copy.deepcopy(workload["spec"]["template"])
        spec = template["spec"]
        spec["volumes"] = [v for v in spec.get("volumes", []) if "persistentVolumeClaim" not in v]
        claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
        spec["volumes"] += [{"name": c, "emptyDir": {}} for c in claims]
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"admission-{workload['metadata']['name']}", "namespace": NS,
                             "labels": template["metadata"]["labels"]}, "spec": spec}

    refused = {}
    for workload in workloads:
        try:
            k8s_cluster.kubectl("create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(as_pod(workload)))
        except AssertionError as exc:
            refused[workload["metadata"]["name"]] = str(exc)
    assert refused == {}

    loose = as_pod(workloads[0])
    del loose["spec"]["securityContext"]["seccompProfile"]
    with pytest.raises(AssertionError, match=r'violates PodSecurity "restricted:latest".*seccompProfile'):
        k8s_cluster.kubectl("create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(loose))


def test_disruption_budgets_let_a_drain_take_one_pod_of_each_role(
        k8s_cluster: K8sCluster, applied: dict[str, Any]) -> None:
    """The real disruption controller's count once every pod is Ready: api keeps one of its two; a single
    worker or executor may be moved."""
    from kubernetes import client

    names = [d["metadata"]["name"] for d in _of(applied["docs"], "PodDisruptionBudget")]
    assert sorted(names) == ["rcaflow-api", "rcaflow-executor", "rcaflow-worker"]
    expected = {"rcaflow-api": (2, 1, 1), "rcaflow-worker": (1, 0, 1), "rcaflow-executor": (1, 0, 1)}

    def counted() -> dict[str, tuple[int, int, int]]:
        with k8s_cluster.sync_client() as api:
            policy = client.PolicyV1Api(api)
            out = {}
            for name in names:
                s = policy.read_namespaced_pod_disruption_budget(name, NS).status
                out[name] = (s.current_healthy, s.desired_healthy, s.disruptions_allowed)
            return out

    wait_for(lambda: counted() == expected, 90, f"the disruption budgets at {expected}")


def test_a_mailbox_producers_rollout_never_runs_two_pods_at_once(
        k8s_cluster: K8sCluster, applied: dict[str, Any]) -> None:
    """Restart one producer (pod-template annotation, as `kubectl rollout restart`) while watching its pods: with
    strategy Recreate the new pod is created only after the old one is gone, so two IDLE sessions never overlap."""
    from kubernetes import client, watch

    mailbox, name = sorted(_mailbox_deployments(applied["docs"]).items())[0]
    selector = f"app.kubernetes.io/component=ingest-imap,rcaflow.io/mailbox={mailbox}"
    with k8s_cluster.sync_client() as api:
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        wait_for(lambda: apps.read_namespaced_deployment(name, NS).status.available_replicas == 1, 90,
                 f"{name} available")
        start = core.list_namespaced_pod(NS, label_selector=selector)
        present = {p.metadata.name for p in start.items}
        assert len(present) == 1
        old_pod = next(iter(present))
        most = len(present)
        stop, seen_new = threading.Event(), threading.Event()
        failures: list[BaseException] = []

        def follow() -> None:
            """Every pod event from the listing on, with a client of the thread's own, until told to stop."""
            nonlocal most
            version = start.metadata.resource_version
            try:
                with k8s_cluster.sync_client() as own:
                    pods = client.CoreV1Api(own)
                    while not stop.is_set():
                        for event in watch.Watch().stream(pods.list_namespaced_pod, NS, label_selector=selector,
                                                          resource_version=version, timeout_seconds=2):
                            pod = event["object"]
                            version = pod.metadata.resource_version
                            if event["type"] == "DELETED":
                                present.discard(pod.metadata.name)
                            else:
                                present.add(pod.metadata.name)
                                if pod.metadata.name != old_pod:
                                    seen_new.set()
                            most = max(most, len(present))
            except Exception as exc:  # noqa: BLE001 - handed to the test's thread below
                failures.append(exc)

        thread = threading.Thread(target=follow, daemon=True)
        thread.start()
        apps.patch_namespaced_deployment(name, NS, {"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": "rcaflow-test-recreate"}}}}})

        def rolled_out() -> bool:
            assert not failures, failures
            d = apps.read_namespaced_deployment(name, NS)
            s = d.status
            return bool(seen_new.is_set() and (s.observed_generation or 0) >= d.metadata.generation
                        and s.updated_replicas == 1 and s.available_replicas == 1 and (s.replicas or 0) == 1
                        and old_pod not in present)

        try:
            wait_for(rolled_out, 90, f"{name} rolled out to a new pod")
        finally:
            stop.set()
            thread.join(timeout=15)
    assert failures == []
    assert most == 1, f"{most} pods of mailbox {mailbox} existed at once during the rollout"


def test_every_reference_resolves_and_every_pod_is_fenced(applied: dict[str, Any]) -> None:
    """What the server does not check: config references point at objects in the build (Secrets at the ones the
    operator creates), every pod has a default-deny policy, egress to DNS and Kafka and nothing open to the
    world, ingress only on the api and metrics ports, and the ServiceMonitor finds a port on every Service."""
    docs = applied["docs"]
    config_maps = {d["metadata"]["name"] for d in _of(docs, "ConfigMap")}
    policies = _of(docs, "NetworkPolicy")
    services = _of(docs, "Service")
    for workload in [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["metadata"]["namespace"] == NS
        for container in workload["spec"]["template"]["spec"]["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps
                else:
                    secret = source["secretRef"]["name"]
                    mailbox = labels.get("rcaflow.io/mailbox")
                    assert secret in (OPERATOR_SECRETS | ({f"rcaflow-mailbox-{mailbox}"} if mailbox else set()))

        def selects(policy: dict[str, Any], labels: dict[str, str] = labels) -> bool:
            selector = policy["spec"]["podSelector"]
            return (all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
                    and all(labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", [])))

        mine = [p for p in policies if selects(p)]
        assert any(p["spec"]["policyTypes"] == ["Ingress", "Egress"] and not p["spec"].get("ingress")
                   and not p["spec"].get("egress") for p in mine), "no default deny"
        egress = [rule for p in mine for rule in p["spec"].get("egress", [])]
        ports = {(port.get("protocol", "TCP"), port["port"]) for rule in egress for port in rule.get("ports", [])}
        assert {("UDP", 53), ("TCP", 53), ("TCP", 9092)} <= ports
        for rule in egress:
            assert rule.get("to") and rule.get("ports"), "an egress rule open to any destination or port"
            for peer in rule["to"]:
                assert peer.get("ipBlock", {}).get("cidr") not in ("0.0.0.0/0", "::/0")
        ingress = [rule for p in mine for rule in p["spec"].get("ingress", [])]
        assert {port["port"] for rule in ingress for port in rule["ports"]} <= {"http", "metrics"}
    monitor = _of(docs, "ServiceMonitor")[0]
    endpoint_ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    for service in services:
        assert {p["name"] for p in service["spec"]["ports"]} & endpoint_ports, service["metadata"]["name"]


def test_the_executor_may_do_what_the_policy_needs_in_its_namespace_and_nothing_else(
        k8s_cluster: K8sCluster, applied: dict[str, Any]) -> None:
    del applied
    token = k8s_cluster.service_account_token(NS, "rcaflow-executor")
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
    token = k8s_cluster.service_account_token(NS, "rcaflow")
    reads = evidence_permissions()
    assert [p for p in sorted(reads) if not _allowed(k8s_cluster, token, p, TARGET)] == []
    writes = [Permission("", "pods", "patch"), Permission("", "pods", "delete"),
              Permission("apps", "deployments", "patch"), Permission("apps", "deployments/scale", "patch")]
    assert [p for p in writes if _allowed(k8s_cluster, token, p, TARGET)] == []
