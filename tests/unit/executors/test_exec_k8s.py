"""k8s tools against the local API stand-in: what an operator would see in the cluster and in the outcome."""

from __future__ import annotations

import asyncio
import socket
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from executors import ExecutionOutcome, ToolRegistry, execute
from executors.errors import ToolNotConfiguredError
from executors.tools.k8s_api import K8sApi, K8sConfig
from schemas.records import ActionState, Risk
from tests.support.loopback import serve
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


CONFLICT = ('Operation cannot be fulfilled on deployments.apps "vmalert": '
            "the object has been modified; please apply your changes to the latest version")


def test_a_conflict_that_persists_through_every_retry_is_left_to_the_consumer(cluster: K8sStandIn) -> None:
    """Stand-in only: the real API shows one conflict and its retry (tests/integration/k8s_real), not five in a row."""
    for _ in range(5):  # client-go's RetryOnConflict tries 5 times
        cluster.fail_next("PATCH", 409, CONFLICT)
    outcome = run(cluster, "k8s.rollout_restart", RESTART)
    assert outcome.state is ActionState.FAILED
    assert outcome.error_type == "ConflictError" and outcome.retriable
    assert "object has been modified" in outcome.output
    assert [w[0] for w in cluster.writes] == ["PATCH"] * 5


def _run_with(api: K8sApi, name: str = "k8s.rollout_restart", params: dict[str, str] = RESTART) -> ExecutionOutcome:
    async def go() -> ExecutionOutcome:
        try:
            return await execute(action(name, params), registry=ToolRegistry({"k8s": api}), dry_run=False, now=NOW)
        finally:
            await api.aclose()
    return asyncio.run(go())


def test_unreachable_cluster_is_retriable() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome = _run_with(K8sApi.from_config(K8sConfig(server=f"https://127.0.0.1:{port}")))
    assert outcome.state is ActionState.FAILED
    assert outcome.error_type == "UnavailableError" and outcome.retriable
    assert f"cannot reach https://127.0.0.1:{port}" in outcome.output


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


def test_a_redirect_is_not_followed_and_not_retried() -> None:
    """aiohttp follows redirects by default; one could leave the allow-list, so the client refuses them."""
    followed: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        followed.append(scope["path"])
        await send({"type": "http.response.start", "status": 302,
                    "headers": [(b"location", b"http://elsewhere.test/"), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    with serve(app, "k8s-redirects") as url:
        outcome = _run_with(K8sApi.from_config(K8sConfig(server=url, token=SecretStr("t"))))
    assert outcome.state is ActionState.FAILED and outcome.error_type == "UpstreamError" and not outcome.retriable
    assert "redirect, which is not followed" in outcome.output
    assert len(followed) == 1


def test_without_the_official_client_the_failure_says_which_extra_to_install(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [m for m in sys.modules if m == "kubernetes" or m.startswith("kubernetes.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    outcome = _run_with(K8sApi.from_kubeconfig(str(tmp_path / "kubeconfig")))
    assert outcome.error_type == ToolNotConfiguredError.__name__ and not outcome.retriable
    assert "pip install 'rcaflow[kubernetes]'" in outcome.output


def test_a_missing_kubeconfig_is_a_configuration_error(tmp_path: Path) -> None:
    outcome = _run_with(K8sApi.from_kubeconfig(str(tmp_path / "absent")))
    assert outcome.error_type == ToolNotConfiguredError.__name__ and not outcome.retriable
    assert "cannot load Kubernetes config" in outcome.output
