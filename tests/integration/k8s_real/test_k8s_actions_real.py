"""The executor's k8s actions against a real API server, controllers, scheduler and kwok's kubelets.

What an on-call person would check in the cluster after each action: the replica count and ready pods after a
scale, a new ReplicaSet revision that rolls out after a restart (and a failed one that is undone), the pod's
annotations, a deleted pod's replacement, a refused call that names the permission it lacked.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from executors import ConfirmPolicy, ToolRegistry, execute
from executors.audit import AuditChain
from executors.errors import ConflictError
from executors.execute import audit_outcome
from executors.tools.k8s import ACTION_ANNOTATION, RESTARTED_AT
from executors.tools.k8s_api import K8sApi, K8sConfig
from schemas.records import ActionState, Risk
from tests.integration.k8s_real.conftest import (
    CONVERGE,
    action,
    admin_api,
    create_deployment,
    create_statefulset,
    deployment_ready,
    live_pods,
    read,
    run,
    wait_for,
)
from tests.support.k8s.cluster import K8sCluster


def _revision(cluster: K8sCluster, namespace: str, name: str) -> str:
    return str(read(cluster, "deployment", namespace, name).metadata.annotations["deployment.kubernetes.io/revision"])


def test_scale_deployment_and_statefulset_through_the_scale_subresource(k8s_cluster: K8sCluster,
                                                                        namespace: str) -> None:
    create_deployment(k8s_cluster, namespace, "web", 1)
    create_statefulset(k8s_cluster, namespace, "db", 1)
    api = admin_api(k8s_cluster)
    web = {"namespace": namespace, "kind": "deployment", "name": "web", "replicas": "3"}

    preview = run(api, "k8s.scale", web, dry_run=True)
    assert preview.ok and preview.output.startswith("server-side dry run accepted: would scale deployment")
    assert read(k8s_cluster, "deployment", namespace, "web").spec.replicas == 1

    scaled = run(api, "k8s.scale", web, confirm=CONVERGE)
    assert scaled.ok, scaled.output
    assert f"scale deployment {namespace}/web from 1 to 3 replicas" in scaled.output
    assert f"confirmed: deployment {namespace}/web has 3 ready replicas" in scaled.output
    assert len(live_pods(k8s_cluster, namespace, "web")) == 3
    managers = {(m.manager, m.subresource) for m in read(k8s_cluster, "deployment", namespace, "web")
                .metadata.managed_fields}
    assert ("rcaflow", "scale") in managers  # our field manager, on the scale subresource

    db = {"namespace": namespace, "kind": "statefulset", "name": "db", "replicas": "2"}
    grown = run(api, "k8s.scale", db, confirm=CONVERGE)
    assert grown.ok and "confirmed: statefulset" in grown.output, grown.output
    assert sorted(p.metadata.name for p in live_pods(k8s_cluster, namespace, "db")) == ["db-0", "db-1"]
    assert grown.rollback is not None and grown.rollback.params["replicas"] == "1"
    assert grown.audit_detail()["rollback"] == f"k8s.scale kind=statefulset name=db namespace={namespace} replicas=1"
    back = run(api, grown.rollback.name, grown.rollback.params, action_id="act-2", confirm=CONVERGE)
    assert back.ok, back.output
    wait_for(lambda: [p.metadata.name for p in live_pods(k8s_cluster, namespace, "db")] == ["db-0"], 30,
             "db-1 to go")
    again = run(api, "k8s.scale", {**db, "replicas": "1"}, action_id="act-3")
    assert again.ok and "already has 1 replicas; nothing to do" in again.output


def test_restart_rolls_out_and_two_restarts_in_one_second_are_two_rollouts(k8s_cluster: K8sCluster,
                                                                           namespace: str) -> None:
    create_deployment(k8s_cluster, namespace, "web", 2)
    api = admin_api(k8s_cluster)
    target = {"namespace": namespace, "kind": "deployment", "name": "web"}
    before = {p.metadata.name for p in live_pods(k8s_cluster, namespace, "web")}
    now = datetime.now(UTC).replace(microsecond=0)

    first = run(api, "k8s.rollout_restart", target, confirm=CONVERGE, now=now)
    assert first.ok, first.output
    assert f"confirmed: deployment {namespace}/web successfully rolled out" in first.output
    assert _revision(k8s_cluster, namespace, "web") == "2"
    after = {p.metadata.name for p in live_pods(k8s_cluster, namespace, "web")}
    assert len(after) == 2 and not after & before  # every pod was replaced
    annotations = read(k8s_cluster, "deployment", namespace, "web").spec.template.metadata.annotations
    assert annotations[RESTARTED_AT] == now.strftime("%Y-%m-%dT%H:%M:%SZ") and annotations[ACTION_ANNOTATION] == "act-1"

    # Same second, another action: restartedAt alone would be the same patch (a no-op); the action id differs.
    second = run(api, "k8s.rollout_restart", target, confirm=CONVERGE, now=now, action_id="act-2")
    assert second.ok and "successfully rolled out" in second.output, second.output
    assert _revision(k8s_cluster, namespace, "web") == "3"

    redelivered = run(api, "k8s.rollout_restart", target, confirm=CONVERGE, now=now, action_id="act-2")
    assert redelivered.ok and "already restarted by action act-2" in redelivered.output
    assert _revision(k8s_cluster, namespace, "web") == "3"


def test_statefulset_restart_waits_for_the_rolling_update(k8s_cluster: K8sCluster, namespace: str) -> None:
    create_statefulset(k8s_cluster, namespace, "db", 2)
    before = read(k8s_cluster, "statefulset", namespace, "db").status.update_revision
    outcome = run(admin_api(k8s_cluster), "k8s.rollout_restart",
                  {"namespace": namespace, "kind": "statefulset", "name": "db"}, confirm=CONVERGE)
    assert outcome.ok, outcome.output
    assert f"confirmed: statefulset {namespace}/db rolling update complete, 2 pods ready" in outcome.output
    status = read(k8s_cluster, "statefulset", namespace, "db").status
    assert status.update_revision != before and status.current_revision == status.update_revision


def test_a_rollout_that_cannot_progress_fails_and_its_undo_restores_the_old_revision(
        k8s_cluster: K8sCluster, namespace: str) -> None:
    """A quota leaves no room for the surge pod: the new ReplicaSet never gets a pod, the deployment controller
    reports ProgressDeadlineExceeded, the restart fails with its undo as the rollback, and the undo rolls back."""
    from kubernetes import client

    create_deployment(k8s_cluster, namespace, "web", 1, progress_deadline_s=2)
    with k8s_cluster.sync_client() as api:
        client.CoreV1Api(api).create_namespaced_resource_quota(namespace, client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="pods"), spec=client.V1ResourceQuotaSpec(hard={"pods": "1"})))
    wait_for(lambda: _quota_counted(k8s_cluster, namespace), 30, "the quota to count the running pod")
    api = admin_api(k8s_cluster)
    target = {"namespace": namespace, "kind": "deployment", "name": "web"}
    old = {p.metadata.name for p in live_pods(k8s_cluster, namespace, "web")}

    failed = run(api, "k8s.rollout_restart", target, confirm=ConfirmPolicy(within_s=60, every_s=0.25))
    assert failed.state is ActionState.FAILED and failed.error_type == "NotConfirmedError", failed.output
    assert f"deployment {namespace}/web exceeded its progress deadline" in failed.output
    assert not failed.retriable
    assert failed.rollback is not None and failed.rollback.name == "k8s.undo_restart"
    assert failed.rollback.params["restarted_at"] == "" and failed.rollback.params["previous_action"] == ""

    undone = run(api, failed.rollback.name, failed.rollback.params, action_id="act-1-rollback", confirm=CONVERGE)
    assert undone.ok, undone.output
    assert f"confirmed: deployment {namespace}/web successfully rolled out" in undone.output
    template = read(k8s_cluster, "deployment", namespace, "web").spec.template.metadata
    assert RESTARTED_AT not in (template.annotations or {})
    assert {p.metadata.name for p in live_pods(k8s_cluster, namespace, "web")} == old  # the old pod kept serving
    with k8s_cluster.sync_client() as sync:
        sets = client.AppsV1Api(sync).list_namespaced_replica_set(namespace, label_selector="app=web").items
    assert sorted(r.spec.replicas for r in sets) == [0, 1]  # the stuck ReplicaSet is scaled away


def _quota_counted(cluster: K8sCluster, namespace: str) -> bool:
    from kubernetes import client

    with cluster.sync_client() as api:
        quota = client.CoreV1Api(api).read_namespaced_resource_quota("pods", namespace)
    return bool(quota.status and quota.status.used and quota.status.used.get("pods") == "1")


def test_annotate_a_pod_and_take_the_annotation_off_again(k8s_cluster: K8sCluster, namespace: str) -> None:
    create_deployment(k8s_cluster, namespace, "web", 1)
    pod = live_pods(k8s_cluster, namespace, "web")[0].metadata.name
    api = admin_api(k8s_cluster)
    key = "insight.io/log-ignore"

    set_it = run(api, "k8s.annotate_pod", {"namespace": namespace, "pod": pod, "key": key, "value": "true"})
    assert set_it.ok, set_it.output
    assert _annotations(k8s_cluster, namespace, pod)[key] == "true"
    assert set_it.rollback is not None and set_it.rollback.name == "k8s.remove_pod_annotation"

    changed = run(api, "k8s.annotate_pod", {"namespace": namespace, "pod": pod, "key": key, "value": "false"},
                  action_id="act-1b")
    assert changed.ok and _annotations(k8s_cluster, namespace, pod)[key] == "false"
    assert changed.rollback is not None and changed.rollback.name == "k8s.annotate_pod"
    assert changed.rollback.params["value"] == "true"  # a set key's undo puts its old value back

    removed = run(api, set_it.rollback.name, set_it.rollback.params, action_id="act-2")
    assert removed.ok and f"remove annotation {key}" in removed.output, removed.output
    assert key not in _annotations(k8s_cluster, namespace, pod)
    nothing = run(api, set_it.rollback.name, set_it.rollback.params, action_id="act-3")
    assert nothing.ok and "nothing to do" in nothing.output


def _annotations(cluster: K8sCluster, namespace: str, pod: str) -> dict[str, str]:
    from kubernetes import client

    with cluster.sync_client() as api:
        return dict(client.CoreV1Api(api).read_namespaced_pod(pod, namespace).metadata.annotations or {})


def test_delete_a_pod_and_its_controller_replaces_it(k8s_cluster: K8sCluster, namespace: str) -> None:
    create_deployment(k8s_cluster, namespace, "web", 2)
    victim = live_pods(k8s_cluster, namespace, "web")[0]
    api = admin_api(k8s_cluster)
    params = {"namespace": namespace, "pod": victim.metadata.name}

    preview = run(api, "k8s.delete_pod", params, dry_run=True)
    assert preview.ok and "server-side dry run accepted" in preview.output
    assert victim.metadata.name in {p.metadata.name for p in live_pods(k8s_cluster, namespace, "web")}

    deleted = run(api, "k8s.delete_pod", params)
    assert deleted.ok and f"(uid {victim.metadata.uid})" in deleted.output, deleted.output
    wait_for(lambda: (names := {p.metadata.name for p in live_pods(k8s_cluster, namespace, "web")})
             and victim.metadata.name not in names and len(names) == 2, 60, "a replacement pod")
    wait_for(lambda: deployment_ready(k8s_cluster, namespace, "web", 2), 60, "web ready again")

    gone = run(api, "k8s.delete_pod", params, action_id="act-2")
    assert gone.state is ActionState.FAILED and gone.error_type == "NotFoundError" and not gone.retriable
    assert f'pods "{victim.metadata.name}" not found' in gone.output


def test_rbac_denial_names_the_missing_permission_and_is_not_retried(k8s_cluster: K8sCluster,
                                                                     namespace: str) -> None:
    """A ServiceAccount that may read deployments and their scale, but not patch it."""
    from kubernetes import client

    create_deployment(k8s_cluster, namespace, "web", 1)
    with k8s_cluster.sync_client() as api:
        client.CoreV1Api(api).create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader")))
        rbac = client.RbacAuthorizationV1Api(api)
        rbac.create_namespaced_role(namespace, client.V1Role(
            metadata=client.V1ObjectMeta(name="read-scale"),
            rules=[client.V1PolicyRule(api_groups=["apps"], resources=["deployments", "deployments/scale"],
                                       verbs=["get", "list", "watch"])]))
        rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="reader-reads"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="read-scale"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)]))
    token = k8s_cluster.service_account_token(namespace, "reader")
    reader = K8sConfig(server=k8s_cluster.server, token=SecretStr(token), ca_file=str(k8s_cluster.ca_file))
    params = {"namespace": namespace, "kind": "deployment", "name": "web", "replicas": "2"}

    for dry_run in (True, False):  # the server's dry run is authorised like the real call
        outcome = run(lambda: K8sApi.from_config(reader), "k8s.scale", params, dry_run=dry_run)
        assert outcome.state is ActionState.FAILED, outcome.output
        assert outcome.error_type == "ForbiddenError" and not outcome.retriable
        assert f'User "system:serviceaccount:{namespace}:reader" cannot patch resource "deployments/scale"' \
               in outcome.output
        assert f'missing permission: patch deployments/scale in API group "apps" in namespace {namespace}' \
               in outcome.output
        assert token not in outcome.output
    assert read(k8s_cluster, "deployment", namespace, "web").spec.replicas == 1
    detail = audit_outcome(AuditChain("acme"), action("k8s.scale", params), outcome).detail
    assert detail["error_type"] == "ForbiddenError" and detail["retriable"] == "false"

    # A user with no rights at all fails on the first read, and says so.
    nobody = K8sConfig(server=k8s_cluster.server, token=SecretStr(k8s_cluster.nobody_token),
                       ca_file=str(k8s_cluster.ca_file))
    refused = run(lambda: K8sApi.from_config(nobody), "k8s.scale", params)
    assert refused.error_type == "ForbiddenError"
    assert f'missing permission: get deployments/scale in API group "apps" in namespace {namespace}' \
           in refused.output


class RacingApi(K8sApi):
    """Another writer changes the deployment between rcaflow's read and its patch, once."""

    def __init__(self, cluster: K8sCluster, namespace: str) -> None:
        K8sApi.__init__(self, K8sApi.from_kubeconfig(str(cluster.kubeconfig)).source)
        self.cluster, self.namespace, self.raced = cluster, namespace, False
        self.patches: list[str] = []  # the outcome of each PATCH rcaflow sent

    async def get_workload(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        got = await super().get_workload(namespace, kind, name)
        if not self.raced:
            self.raced = True
            await asyncio.to_thread(self._other_writer, name)
        return got

    async def patch_workload(self, namespace: str, kind: str, name: str, patch: dict[str, Any], *,
                             dry_run: bool) -> dict[str, Any]:
        try:
            answer = await super().patch_workload(namespace, kind, name, patch, dry_run=dry_run)
        except ConflictError as exc:
            self.patches.append(f"{type(exc).__name__}: {exc.message}")
            raise
        self.patches.append("ok")
        return answer

    def _other_writer(self, name: str) -> None:
        from kubernetes import client

        with self.cluster.sync_client() as api:
            client.AppsV1Api(api).patch_namespaced_deployment(
                name, self.namespace, {"metadata": {"labels": {"touched-by": "someone-else"}}})


def test_a_conflict_is_retried_on_a_fresh_read(k8s_cluster: K8sCluster, namespace: str) -> None:
    create_deployment(k8s_cluster, namespace, "web", 1)
    racing = RacingApi(k8s_cluster, namespace)

    async def go() -> Any:
        try:
            return await execute(action("k8s.rollout_restart", {"namespace": namespace, "kind": "deployment",
                                                                 "name": "web"}),
                                 registry=ToolRegistry({"k8s": racing}), dry_run=False, confirm=CONVERGE)
        finally:
            await racing.aclose()

    outcome = asyncio.run(go())
    assert outcome.ok, outcome.output
    # The first patch carried the resourceVersion read before the other write: the API server's 409. Then a
    # fresh read, a new decision and a patch that lands.
    assert len(racing.patches) == 2 and racing.patches[1] == "ok", racing.patches
    assert racing.patches[0].startswith("ConflictError: k8s PATCH") and "409 Conflict" in racing.patches[0]
    assert "the object has been modified" in racing.patches[0]
    deployment = read(k8s_cluster, "deployment", namespace, "web")
    assert deployment.metadata.labels["touched-by"] == "someone-else"  # the other writer's change is kept
    assert deployment.spec.template.metadata.annotations[ACTION_ANNOTATION] == "act-1"


def test_a_kubeconfig_exec_plugin_token_is_renewed(k8s_cluster: K8sCluster, namespace: str, tmp_path: Path) -> None:
    """EKS/GKE-style credentials: an exec plugin whose token expires is run again; a refused one is renewed once."""
    import sys

    create_deployment(k8s_cluster, namespace, "web", 1)
    calls, tokens = tmp_path / "calls", tmp_path / "tokens"
    # 1st: a token the server refuses (401), valid for an hour by its own account; then the admin token,
    # announced as expiring within the renewal skew, so it is renewed before each request.
    tokens.write_text(f"revoked-token\n{k8s_cluster.admin_token}\n{k8s_cluster.admin_token}\n")
    plugin = tmp_path / "credential-plugin.py"
    plugin.write_text(
        "import json, pathlib, sys, datetime as dt\n"
        f"calls = pathlib.Path({str(calls)!r}); tokens = pathlib.Path({str(tokens)!r}).read_text().split()\n"
        "n = len(calls.read_text().split()) if calls.exists() else 0\n"
        "calls.write_text((calls.read_text() if calls.exists() else '') + 'x\\n')\n"
        "left = dt.timedelta(seconds=3600 if n == 0 else 30)\n"
        "expiry = (dt.datetime.now(dt.timezone.utc) + left).strftime('%Y-%m-%dT%H:%M:%SZ')\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential',\n"
        "                  'status': {'token': tokens[min(n, len(tokens) - 1)], 'expirationTimestamp': expiry}}))\n")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(k8s_cluster.kubeconfig.read_text().replace(
        f"token: {k8s_cluster.admin_token}",
        "exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: " + sys.executable
        + f"\n      args: [{str(plugin)!r}]\n      interactiveMode: Never"))
    assert "exec:" in kubeconfig.read_text()

    outcome = run(lambda: K8sApi.from_kubeconfig(str(kubeconfig)), "k8s.scale",
                  {"namespace": namespace, "kind": "deployment", "name": "web", "replicas": "2"})
    assert outcome.ok, outcome.output
    # load: revoked -> GET scale: 401 -> renewed at once -> GET again (expiring: renewed first) -> PATCH (again)
    assert len(calls.read_text().split()) == 4
    assert read(k8s_cluster, "deployment", namespace, "web").spec.replicas == 2


def test_the_outbound_allow_list_applies_to_the_real_cluster(k8s_cluster: K8sCluster, namespace: str) -> None:
    from streams.settings import ExecutorSettings, HttpSettings, Settings
    from streams.wiring.tools import build_tool_registry

    create_deployment(k8s_cluster, namespace, "web", 1)
    params = {"namespace": namespace, "kind": "deployment", "name": "web", "replicas": "2"}

    def scale(allowed: list[str]) -> Any:
        settings = Settings(executor=ExecutorSettings(kubeconfig=k8s_cluster.kubeconfig, dry_run=False),
                            http=HttpSettings(allowed_hosts=allowed))

        async def go() -> Any:
            registry = build_tool_registry(settings)
            try:
                return await execute(action("k8s.scale", params), registry=registry, dry_run=False)
            finally:
                await registry.aclose()
        return asyncio.run(go())

    refused = scale(["*.internal"])
    assert refused.state is ActionState.FAILED and not refused.retriable
    assert "'127.0.0.1' is not in http.allowed_hosts" in refused.output
    assert read(k8s_cluster, "deployment", namespace, "web").spec.replicas == 1
    allowed = scale(["127.0.0.1"])
    assert allowed.ok, allowed.output
    assert read(k8s_cluster, "deployment", namespace, "web").spec.replicas == 2


def test_in_cluster_config_acts_as_the_pods_service_account(k8s_cluster: K8sCluster, namespace: str,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a pod sees: KUBERNETES_SERVICE_HOST/PORT and the mounted token and CA, authorised by a RoleBinding."""
    from kubernetes import client
    from kubernetes.aio.config import incluster_config

    create_deployment(k8s_cluster, namespace, "web", 1)
    with k8s_cluster.sync_client() as api:
        client.CoreV1Api(api).create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="rcaflow-executor")))
        client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(namespace, client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="executor-edits"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="edit"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="rcaflow-executor", namespace=namespace)]))
    mount = tmp_path / "serviceaccount"
    mount.mkdir()
    (mount / "token").write_text(k8s_cluster.service_account_token(namespace, "rcaflow-executor"))
    (mount / "ca.crt").write_bytes(k8s_cluster.ca_file.read_bytes())
    host, port = k8s_cluster.server.removeprefix("https://").rsplit(":", 1)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(mount / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(mount / "ca.crt"))

    outcome = run(K8sApi.in_cluster, "k8s.rollout_restart",
                  {"namespace": namespace, "kind": "deployment", "name": "web"}, confirm=CONVERGE, risk=Risk.HIGH)
    assert outcome.ok and "successfully rolled out" in outcome.output, outcome.output
    managers = {m.manager for m in read(k8s_cluster, "deployment", namespace, "web").metadata.managed_fields}
    assert "rcaflow" in managers


def test_explicit_settings_with_a_rotating_token_file(k8s_cluster: K8sCluster, namespace: str,
                                                      tmp_path: Path) -> None:
    """``executor.cluster`` (server, CA, token_file): a token rotated on disk is read again when the old one is
    refused, as a projected ServiceAccount token is."""
    from streams.settings import ExecutorSettings, KubernetesClusterSettings, Settings
    from streams.wiring.tools import build_tool_registry

    create_deployment(k8s_cluster, namespace, "web", 1)
    token_file = tmp_path / "token"
    token_file.write_text("an-expired-token\n")
    settings = Settings(executor=ExecutorSettings(dry_run=False, cluster=KubernetesClusterSettings(
        server=k8s_cluster.server, ca_file=k8s_cluster.ca_file, token_file=token_file)))

    async def go() -> Any:
        registry = build_tool_registry(settings)
        try:
            api = registry.get("k8s.scale").api  # type: ignore[attr-defined]
            await api.client()  # connected with the expired token
            token_file.write_text(k8s_cluster.admin_token + "\n")  # the kubelet rotated it
            return await execute(action("k8s.scale", {"namespace": namespace, "kind": "deployment", "name": "web",
                                                      "replicas": "2"}), registry=registry, dry_run=False)
        finally:
            await registry.aclose()

    outcome = asyncio.run(go())
    assert outcome.ok, outcome.output
    assert read(k8s_cluster, "deployment", namespace, "web").spec.replicas == 2
