"""After a real restart or scale the executor watches the rollout; a rollout that never finishes is a failure
with a recorded inverse, and running that inverse puts the workload back where it was."""

from __future__ import annotations

import asyncio

import pytest

from executors import ConfirmPolicy, ExecutionOutcome, ToolRegistry, execute
from executors.params import WorkloadKind
from executors.tools.k8s import ACTION_ANNOTATION, RESTARTED_AT
from executors.tools.k8s_rollout import rollout_check
from schemas.records import ActionState
from tests.unit.executors.exec_helpers import NOW, action, k8s_api
from tests.unit.executors.k8s_standin import K8sStandIn

QUICK = ConfirmPolicy(within_s=0.5, every_s=0.02)
NS = "insight-system"


@pytest.fixture
def cluster() -> K8sStandIn:
    standin = K8sStandIn()
    standin.add_workload(NS, "deployments", "vmalert", replicas=2)
    standin.add_workload(NS, "statefulsets", "prometheus", replicas=2)
    standin.add_workload(NS, "daemonsets", "fluent-bit", replicas=3)
    standin.add_workload(NS, "deployments", "vminsert", replicas=2)
    return standin


def run(standin: K8sStandIn, name: str, params: dict[str, str], *, confirm: ConfirmPolicy | None = QUICK,
        state: ActionState = ActionState.APPROVED, action_id: str = "act-1") -> ExecutionOutcome:
    async def go() -> ExecutionOutcome:
        api = k8s_api(standin.app())
        try:
            return await execute(action(name, params, state=state, action_id=action_id),
                                 registry=ToolRegistry({"k8s": api}), dry_run=False, now=NOW, confirm=confirm)
        finally:
            await api.aclose()
    return asyncio.run(go())


def restart(kind: str, name: str) -> dict[str, str]:
    return {"namespace": NS, "kind": kind, "name": name}


@pytest.mark.parametrize(("kind", "resource", "name", "waiting"), [
    ("deployment", "deployments", "vmalert", "1 out of 2 new replicas of deployment insight-system/vmalert"),
    ("statefulset", "statefulsets", "prometheus", "waiting for 1 pods of statefulset insight-system/prometheus"),
    ("daemonset", "daemonsets", "fluent-bit", "1 out of 3 new pods of daemonset insight-system/fluent-bit"),
])
def test_a_restart_whose_new_pods_never_get_ready_fails_and_can_be_undone(
    cluster: K8sStandIn, kind: str, resource: str, name: str, waiting: str
) -> None:
    before = cluster.template(NS, resource, name)
    cluster.break_rollouts(NS, resource, name)

    outcome = run(cluster, "k8s.rollout_restart", restart(kind, name))

    assert outcome.state is ActionState.FAILED and outcome.error_type == "NotConfirmedError"
    assert "not confirmed within 0.5 s" in outcome.output and waiting in outcome.output
    assert outcome.rollback is not None and outcome.rollback.name == "k8s.undo_restart"
    assert outcome.rollback.params == {**restart(kind, name), "restarted_at": "", "previous_action": ""}

    undo = run(cluster, "k8s.undo_restart", outcome.rollback.params, state=ActionState.RUNNING, action_id="rb-1")

    assert undo.ok, undo.output
    assert "confirmed:" in undo.output
    # The template is the one before the restart again, which is what makes the controller go back.
    assert cluster.template(NS, resource, name) == before


def test_undo_restores_the_previous_restart_stamp_not_just_removes_it(cluster: K8sStandIn) -> None:
    first = run(cluster, "k8s.rollout_restart", restart("deployment", "vmalert"), action_id="act-old")
    assert first.ok
    healthy = cluster.template(NS, "deployments", "vmalert")
    cluster.break_rollouts(NS, "deployments", "vmalert")

    second = run(cluster, "k8s.rollout_restart", restart("deployment", "vmalert"), action_id="act-new")
    assert second.state is ActionState.FAILED and second.rollback is not None
    assert second.rollback.params["previous_action"] == "act-old"
    assert second.rollback.params["restarted_at"] == healthy["metadata"]["annotations"][RESTARTED_AT]

    assert run(cluster, "k8s.undo_restart", second.rollback.params, state=ActionState.RUNNING).ok
    annotations = cluster.template(NS, "deployments", "vmalert")["metadata"]["annotations"]
    assert annotations[ACTION_ANNOTATION] == "act-old"


def test_a_scale_beyond_capacity_fails_and_the_rollback_scales_back(cluster: K8sStandIn) -> None:
    cluster.limit_capacity(NS, "deployments", "vminsert", ready=3)
    params = {"namespace": NS, "kind": "deployment", "name": "vminsert", "replicas": "6"}

    outcome = run(cluster, "k8s.scale", params)

    assert outcome.state is ActionState.FAILED and "3 of 6 replicas" in outcome.output
    assert outcome.rollback is not None and outcome.rollback.params["replicas"] == "2"
    undo = run(cluster, "k8s.scale", outcome.rollback.params, state=ActionState.RUNNING, action_id="rb-1")
    assert undo.ok and "has 2 ready replicas" in undo.output
    assert cluster.workloads[(NS, "deployments", "vminsert")]["spec"]["replicas"] == 2


def test_without_a_confirm_policy_the_accepted_patch_is_the_answer(cluster: K8sStandIn) -> None:
    cluster.break_rollouts(NS, "deployments", "vmalert")
    outcome = run(cluster, "k8s.rollout_restart", restart("deployment", "vmalert"), confirm=None)
    assert outcome.ok and "confirmed" not in outcome.output


def test_undo_of_something_already_undone_changes_nothing(cluster: K8sStandIn) -> None:
    params = {**restart("deployment", "vmalert"), "restarted_at": "", "previous_action": ""}
    outcome = run(cluster, "k8s.undo_restart", params, state=ActionState.RUNNING)
    assert outcome.ok and "nothing to undo" in outcome.output
    assert [w for w in cluster.writes if w[0] == "PATCH"] == []


@pytest.mark.parametrize("bad", ["yesterday", "2026-11-25 10:00:00", "$(reboot)"])
def test_undo_refuses_a_stamp_that_is_not_a_timestamp(cluster: K8sStandIn, bad: str) -> None:
    params = {**restart("deployment", "vmalert"), "restarted_at": bad, "previous_action": ""}
    outcome = run(cluster, "k8s.undo_restart", params, state=ActionState.RUNNING)
    assert outcome.state is ActionState.FAILED and outcome.error_type == "InvalidParamsError"
    assert "restarted_at" in outcome.output


def test_rollout_check_reads_status_like_kubectl() -> None:
    def deployment(**status: object) -> dict[str, object]:
        return {"metadata": {"name": "d", "namespace": "n", "generation": 3}, "spec": {"replicas": 2},
                "status": {"observedGeneration": 3, **status}}

    kind = WorkloadKind.DEPLOYMENT
    assert "spec update to be observed" in rollout_check(kind, {**deployment(), "status": {"observedGeneration": 2}}
                                                         ).detail
    old_pods = rollout_check(kind, deployment(updatedReplicas=2, replicas=3, availableReplicas=2))
    assert not old_pods.done and "1 old replicas" in old_pods.detail
    unavailable = rollout_check(kind, deployment(updatedReplicas=2, replicas=2, availableReplicas=1))
    assert not unavailable.done and "1 of 2 updated replicas" in unavailable.detail
    assert rollout_check(kind, deployment(updatedReplicas=2, replicas=2, availableReplicas=2)).done
    on_delete = {"metadata": {"generation": 1}, "spec": {"updateStrategy": {"type": "OnDelete"}},
                 "status": {"observedGeneration": 1}}
    assert rollout_check(WorkloadKind.STATEFULSET, on_delete).done
