"""k8s tools against the local API stand-in: what an operator would see in the cluster and in the outcome."""

from __future__ import annotations

import asyncio
import re
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from executors import ExecutionOutcome, ToolRegistry, execute
from executors.errors import ToolNotConfiguredError
from executors.tools.k8s import ACTION_ANNOTATION, RESTARTED_AT
from executors.tools.k8s_api import K8sApi, load_kubeconfig
from schemas.records import ActionState, Risk
from tests.unit.executors.exec_helpers import NOW, action, k8s_api
from tests.unit.executors.k8s_standin import K8sStandIn


@pytest.fixture
def cluster() -> K8sStandIn:
    standin = K8sStandIn()
    standin.add_workload("insight-system", "deployments", "vmalert", replicas=2)
    standin.add_workload("insight-system", "statefulsets", "vminsert", replicas=3)
    standin.add_workload("insight-system", "daemonsets", "fluent-bit")
    standin.add_pod("insight-system", "vminsert-0", annotations={"team": "sre"})
    standin.add_pod("insight-system", "vminsert-1", restarts=4, waiting="CrashLoopBackOff")
    standin.add_pod("insight-system", "other-0")
    return standin


def run(standin: K8sStandIn | None, name: str, params: dict[str, str], *, dry_run: bool = False,
        token: str = "admin-token", **kw: object) -> ExecutionOutcome:
    async def go() -> ExecutionOutcome:
        api = k8s_api(standin.app(), token) if standin else None
        registry = ToolRegistry({"k8s": api} if api else {})
        try:
            return await execute(action(name, params, **kw), registry=registry, dry_run=dry_run, now=NOW)
        finally:
            if api:
                await api.aclose()
    return asyncio.run(go())


RESTART = {"namespace": "insight-system", "kind": "deployment", "name": "vmalert"}


def test_rollout_restart_stamps_the_pod_template(cluster: K8sStandIn) -> None:
    outcome = run(cluster, "k8s.rollout_restart", RESTART)
    assert outcome.state is ActionState.SUCCEEDED and not outcome.dry_run
    deployment = cluster.workloads[("insight-system", "deployments", "vmalert")]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations[RESTARTED_AT] == "2026-11-25T10:00:00Z"
    assert annotations[ACTION_ANNOTATION] == "act-1"
    assert deployment["metadata"]["generation"] == 2
    assert "restart deployment insight-system/vmalert" in outcome.output


def test_rollout_restart_of_a_redelivered_action_restarts_only_once(cluster: K8sStandIn) -> None:
    first = run(cluster, "k8s.rollout_restart", RESTART)
    again = run(cluster, "k8s.rollout_restart", RESTART)
    assert first.ok and again.ok
    assert "already restarted by action act-1" in again.output
    assert [w[0] for w in cluster.writes] == ["PATCH"]
    assert cluster.workloads[("insight-system", "deployments", "vmalert")]["metadata"]["generation"] == 2


def test_dry_run_with_a_cluster_is_the_servers_dry_run_and_changes_nothing(cluster: K8sStandIn) -> None:
    outcome = run(cluster, "k8s.rollout_restart", RESTART, dry_run=True)
    assert outcome.ok and outcome.dry_run
    assert outcome.output.startswith("server-side dry run accepted")
    assert cluster.writes[0][2]["dryRun"] == "All"
    template = cluster.workloads[("insight-system", "deployments", "vmalert")]["spec"]["template"]
    assert RESTARTED_AT not in template["metadata"].get("annotations", {})


def test_dry_run_without_a_cluster_describes_and_real_run_says_not_configured() -> None:
    preview = run(None, "k8s.delete_pod", {"namespace": "insight-system", "pod": "vminsert-0"}, dry_run=True)
    assert preview.ok
    assert "no cluster configured" in preview.output
    assert "DELETE /api/v1/namespaces/insight-system/pods/vminsert-0" in preview.output
    real = run(None, "k8s.delete_pod", {"namespace": "insight-system", "pod": "vminsert-0"})
    assert real.state is ActionState.FAILED
    assert real.error_type == "ToolNotConfiguredError" and "no Kubernetes cluster" in real.output


def test_a_dry_run_still_validates_params() -> None:
    outcome = run(None, "k8s.delete_pod", {"namespace": "Insight_System", "pod": "x"}, dry_run=True)
    assert outcome.state is ActionState.FAILED
    assert outcome.error_type == "InvalidParamsError" and "namespace" in outcome.output


def test_delete_pod_removes_it(cluster: K8sStandIn) -> None:
    outcome = run(cluster, "k8s.delete_pod", {"namespace": "insight-system", "pod": "vminsert-0"})
    assert outcome.ok and "uid-vminsert-0" in outcome.output
    assert ("insight-system", "vminsert-0") not in cluster.pods


def test_missing_pod_fails_with_the_servers_reason_and_no_retry(cluster: K8sStandIn) -> None:
    outcome = run(cluster, "k8s.delete_pod", {"namespace": "insight-system", "pod": "ghost-0"})
    assert outcome.state is ActionState.FAILED
    assert outcome.error_type == "NotFoundError" and not outcome.retriable
    assert 'pods "ghost-0" not found' in outcome.output


def test_rbac_refusal_is_reported_and_not_retried(cluster: K8sStandIn) -> None:
    outcome = run(cluster, "k8s.delete_pod", {"namespace": "insight-system", "pod": "vminsert-0"},
                  token="viewer-token")
    assert outcome.state is ActionState.FAILED
    assert outcome.error_type == "ForbiddenError" and not outcome.retriable
    assert "403 Forbidden" in outcome.output and "cannot delete" in outcome.output
    assert ("insight-system", "vminsert-0") in cluster.pods
    assert "viewer-token" not in outcome.output


def test_conflict_is_retriable(cluster: K8sStandIn) -> None:
    cluster.fail_next("PATCH", 409, 'Operation cannot be fulfilled on deployments.apps "vmalert": '
                                    "the object has been modified; please apply your changes to the latest version")
    outcome = run(cluster, "k8s.rollout_restart", RESTART)
    assert outcome.state is ActionState.FAILED
    assert outcome.error_type == "ConflictError" and outcome.retriable
    assert "object has been modified" in outcome.output


def test_unreachable_cluster_is_retriable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async def go() -> ExecutionOutcome:
        api = K8sApi(httpx.AsyncClient(transport=httpx.MockTransport(refuse), base_url="https://k8s.test:6443"))
        registry = ToolRegistry({"k8s": api})
        return await execute(action("k8s.rollout_restart", RESTART), registry=registry, dry_run=False, now=NOW)

    outcome = asyncio.run(go())
    assert outcome.state is ActionState.FAILED
    assert outcome.error_type == "UnavailableError" and outcome.retriable
    assert "cannot reach https://k8s.test:6443" in outcome.output


def test_scale_remembers_the_previous_count_for_rollback(cluster: K8sStandIn) -> None:
    params = {"namespace": "insight-system", "kind": "statefulset", "name": "vminsert", "replicas": "5"}
    outcome = run(cluster, "k8s.scale", params)
    assert outcome.ok and "from 3 to 5 replicas" in outcome.output
    assert cluster.workloads[("insight-system", "statefulsets", "vminsert")]["spec"]["replicas"] == 5
    assert outcome.rollback is not None
    assert outcome.rollback.name == "k8s.scale"
    assert outcome.rollback.params == {**params, "replicas": "3"}
    assert outcome.audit_detail()["rollback"] == (
        "k8s.scale kind=statefulset name=vminsert namespace=insight-system replicas=3"
    )
    undo = run(cluster, "k8s.scale", outcome.rollback.params, action_id="act-2")
    assert undo.ok
    assert cluster.workloads[("insight-system", "statefulsets", "vminsert")]["spec"]["replicas"] == 3


def test_scale_to_the_current_count_does_nothing(cluster: K8sStandIn) -> None:
    outcome = run(cluster, "k8s.scale",
                  {"namespace": "insight-system", "kind": "deployment", "name": "vmalert", "replicas": "2"})
    assert outcome.ok and "nothing to do" in outcome.output
    assert cluster.writes == []


def test_scale_dry_run_asks_the_server_and_keeps_the_count(cluster: K8sStandIn) -> None:
    outcome = run(cluster, "k8s.scale",
                  {"namespace": "insight-system", "kind": "deployment", "name": "vmalert", "replicas": "0"},
                  dry_run=True)
    assert outcome.ok and "would scale deployment insight-system/vmalert from 2 to 0" in outcome.output
    assert cluster.workloads[("insight-system", "deployments", "vmalert")]["spec"]["replicas"] == 2


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"kind": "daemonset", "replicas": "2"}, "kind"),
        ({"kind": "deployment", "replicas": "1000"}, "replicas"),
        ({"kind": "deployment", "replicas": "-1"}, "replicas"),
        ({"kind": "deployment", "replicas": "two"}, "replicas"),
        ({"kind": "deployment", "replicas": "3.0"}, "replicas"),
        ({"kind": "deployment", "replicas": "+3"}, "replicas"),
    ],
)
def test_scale_refuses_out_of_bounds_params(cluster: K8sStandIn, params: dict[str, str], field: str) -> None:
    outcome = run(cluster, "k8s.scale", {"namespace": "insight-system", "name": "vmalert", **params})
    assert outcome.state is ActionState.FAILED and outcome.error_type == "InvalidParamsError"
    assert field in outcome.output
    assert cluster.writes == []


def test_annotate_pod_sets_the_annotation_and_offers_the_old_value_as_rollback(cluster: K8sStandIn) -> None:
    outcome = run(cluster, "k8s.annotate_pod",
                  {"namespace": "insight-system", "pod": "vminsert-0", "key": "team", "value": "platform"})
    assert outcome.ok
    assert cluster.pods[("insight-system", "vminsert-0")]["metadata"]["annotations"]["team"] == "platform"
    assert outcome.rollback is not None and outcome.rollback.params["value"] == "sre"


def test_annotate_pod_with_a_new_key_records_its_removal_as_the_rollback(cluster: K8sStandIn) -> None:
    key = "insight.io/log-ignore"
    outcome = run(cluster, "k8s.annotate_pod",
                  {"namespace": "insight-system", "pod": "vminsert-1", "key": key, "value": "true"})
    assert outcome.ok and outcome.rollback is not None
    assert outcome.rollback.name == "k8s.remove_pod_annotation" and outcome.rollback.params["key"] == key
    assert f"{key}-" in outcome.output
    assert cluster.pods[("insight-system", "vminsert-1")]["metadata"]["annotations"][key] == "true"


def test_annotate_pod_refuses_kubernetes_owned_keys(cluster: K8sStandIn) -> None:
    outcome = run(cluster, "k8s.annotate_pod", {"namespace": "insight-system", "pod": "vminsert-0",
                                                "key": "kubectl.kubernetes.io/restartedAt", "value": "x"})
    assert outcome.state is ActionState.FAILED and "reserved" in outcome.output
    assert cluster.writes == []


def test_diagnostics_summarises_pods_events_and_logs(cluster: K8sStandIn) -> None:
    cluster.add_event("insight-system", "vminsert-1", "BackOff", "Back-off restarting failed container main")
    cluster.add_event("insight-system", "other-0", "Pulled", "not ours")
    cluster.logs[("insight-system", "vminsert-1")] = "\n".join(f"line {i}" for i in range(100))
    outcome = run(cluster, "diagnostics.collect", {"namespace": "insight-system", "workload": "vminsert"},
                  risk=Risk.READ)
    assert outcome.ok
    text = outcome.output
    assert "workload insight-system/vminsert: 2 pod(s)" in text
    assert "vminsert-1: phase=Running restarts=4 [main:CrashLoopBackOff]" in text
    assert "Back-off restarting failed container" in text and "not ours" not in text
    assert "line 99" in text and "line 79" not in text
    assert "other-0" not in text
    assert cluster.writes == []


def test_unapproved_action_does_not_run_but_can_be_previewed(cluster: K8sStandIn) -> None:
    real = run(cluster, "k8s.delete_pod", {"namespace": "insight-system", "pod": "vminsert-0"},
               state=ActionState.AWAITING_APPROVAL)
    assert real.state is ActionState.FAILED and real.error_type == "NotExecutableError"
    assert "awaiting_approval" in real.output
    preview = run(cluster, "k8s.delete_pod", {"namespace": "insight-system", "pod": "vminsert-0"},
                  state=ActionState.AWAITING_APPROVAL, dry_run=True)
    assert preview.ok
    assert ("insight-system", "vminsert-0") in cluster.pods


def test_action_declaring_less_risk_than_the_operation_is_refused(cluster: K8sStandIn) -> None:
    outcome = run(cluster, "k8s.delete_pod", {"namespace": "insight-system", "pod": "vminsert-0"}, risk=Risk.READ)
    assert outcome.state is ActionState.FAILED and "declares risk 'read'" in outcome.output
    assert ("insight-system", "vminsert-0") in cluster.pods


def test_expired_approval_is_refused(cluster: K8sStandIn) -> None:
    outcome = run(cluster, "k8s.delete_pod", {"namespace": "insight-system", "pod": "vminsert-0"},
                  expires_at=NOW - timedelta(seconds=1))
    assert outcome.state is ActionState.FAILED and "expired" in outcome.output


def test_reading_a_kubeconfig_without_the_sdk_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'rcaflow[kubernetes]'")):
        load_kubeconfig("/nonexistent/kubeconfig")


def test_a_missing_kubeconfig_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ToolNotConfiguredError, match="cannot load Kubernetes config"):
        load_kubeconfig(str(tmp_path / "absent"))
