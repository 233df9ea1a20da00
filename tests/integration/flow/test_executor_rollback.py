"""The executor on a real broker: a restart whose new pods never get ready is failed, rolled back by itself when
the policy says ``on_failure: undo``, and the actions topic tells the whole story; with ``keep`` it only reports."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from click.testing import CliRunner, Result
from pydantic import SecretStr

from executors import ConfirmPolicy, ToolRegistry
from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import ActionEvent, ActionState, Record, Risk
from schemas.topics import ACTIONS
from streams.commands.rollback import rollback
from streams.executor.rollbacks import rollback_id
from streams.executor.service import ExecutorService
from streams.executor.verify import ActionVerifier
from streams.settings import SecuritySettings, Settings
from streams.wiring.topics_admin import ensure_topics
from tests.integration.flow.conftest import DECISION_KEY, TEST_APPROVER, signed, verifier_for
from tests.integration.flow.helpers import TopicReader
from tests.unit.executors.exec_helpers import k8s_api
from tests.unit.executors.k8s_standin import K8sStandIn

NS = "insight-system"


def _restart(tenant: str, action_id: str, name: str, on_failure: str) -> ActionEvent:
    """Approved by a person and signed, as the worker writes it: a policy restart whose ``on_failure`` is
    ``undo`` (vmalert's deployment) or ``keep`` (Jenkins' statefulset)."""
    cls, action, kind = (("vmalert_config_reload_failure", "restart_vmalert", "deployment") if on_failure == "undo"
                         else ("jenkins_restart", "restart_controller", "statefulset"))
    return signed(ActionEvent(
        tenant=tenant, action_id=action_id, incident_id="inc-1", alert_class=cls, name=action, tool="k8s",
        operation="rollout_restart", params={"namespace": NS, "kind": kind, "name": name}, risk=Risk.HIGH,
        state=ActionState.APPROVED, dry_run=False, at=datetime.now(UTC), on_failure=on_failure,
        approver=TEST_APPROVER))


def _states(records: list[Record], action_id: str) -> list[ActionState]:
    return [r.state for r in records if isinstance(r, ActionEvent) and r.action_id == action_id]


def _last(records: list[Record], action_id: str) -> ActionEvent:
    return [r for r in records if isinstance(r, ActionEvent) and r.action_id == action_id][-1]


@asynccontextmanager
async def executor_on(bootstrap: str, codec: Codec, prefix: str, cluster: K8sStandIn, *, verifier: ActionVerifier,
                      confirm: ConfirmPolicy, stop_grace_s: float = 20.0) -> AsyncIterator[KafkaPublisher]:
    """A real (not dry-run) executor on ``prefix`` acting on the stand-in cluster; yields a publisher for actions."""
    api = k8s_api(cluster.app())
    publisher = KafkaPublisher(bootstrap, codec, prefix)
    service = ExecutorService(bootstrap=bootstrap, codec=codec, publisher=publisher,
                              registry=ToolRegistry({"k8s": api}), topic_prefix=prefix, dry_run=False,
                              confirm=confirm, stop_grace_s=stop_grace_s, verifier=verifier)
    running = asyncio.create_task(service.run())
    try:
        yield publisher
    finally:
        service.stop()
        await running
        publisher.close_sync()
        await api.aclose()


def test_failed_restart_is_rolled_back_only_when_the_policy_says_undo(
    broker: object, codec: Codec, topic_prefix: str
) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix, [ACTIONS])
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    cluster = K8sStandIn()
    for name in ("vmalert", "vmalert-ok"):
        cluster.add_workload(NS, "deployments", name, replicas=2)
    cluster.add_workload(NS, "statefulsets", "vmalert-b", replicas=2)
    healthy = cluster.template(NS, "deployments", "vmalert")
    cluster.break_rollouts(NS, "deployments", "vmalert")
    cluster.break_rollouts(NS, "statefulsets", "vmalert-b")
    verifier = verifier_for(tenant)
    undo, keep, fine = "act-undo", "act-keep", "act-fine"
    reader = TopicReader(bootstrap, codec, ACTIONS, topic_prefix)

    async def scenario() -> None:
        quick = ConfirmPolicy(within_s=1.0, every_s=0.05)
        async with executor_on(bootstrap, codec, topic_prefix, cluster, verifier=verifier, confirm=quick) as publisher:
            for action in (_restart(tenant, undo, "vmalert", "undo"), _restart(tenant, keep, "vmalert-b", "keep"),
                           _restart(tenant, fine, "vmalert-ok", "undo")):
                await publisher.publish(ACTIONS, f"{tenant}:{action.action_id}", action)

            def finished(rs: list[Record]) -> bool:
                return (ActionState.ROLLED_BACK in _states(rs, undo) and ActionState.FAILED in _states(rs, keep)
                        and ActionState.SUCCEEDED in _states(rs, fine))

            await asyncio.to_thread(reader.wait_for, finished, 60.0, "the three outcomes")
            await asyncio.to_thread(reader.poll, 1.0)  # anything wrong written after them shows up too

    asyncio.run(scenario())
    records = reader.records
    reader.close()

    rb = rollback_id(undo)
    assert _states(records, undo) == [ActionState.APPROVED, ActionState.RUNNING, ActionState.FAILED,
                                      ActionState.ROLLED_BACK]
    failed = [r for r in records if isinstance(r, ActionEvent) and r.action_id == undo][2]
    assert "new replicas" in (failed.result or "") and f"as action {rb}" in (failed.result or "")
    assert _states(records, rb) == [ActionState.RUNNING, ActionState.SUCCEEDED]
    rollback = _last(records, rb)
    assert rollback.rollback_of == undo and rollback.operation == "undo_restart" and not rollback.dry_run
    assert _last(records, undo).result and _last(records, undo).result.startswith(f"rolled back by {rb}")
    assert cluster.template(NS, "deployments", "vmalert") == healthy

    # on_failure: keep: reported, not touched again.
    assert _states(records, keep) == [ActionState.APPROVED, ActionState.RUNNING, ActionState.FAILED]
    assert _states(records, rollback_id(keep)) == []
    assert "annotations" in cluster.template(NS, "statefulsets", "vmalert-b")["metadata"]

    assert _states(records, fine) == [ActionState.APPROVED, ActionState.RUNNING, ActionState.SUCCEEDED]
    assert "confirmed:" in (_last(records, fine).result or "")


def test_an_action_cut_short_by_a_stop_is_recorded_as_interrupted(
    broker: object, codec: Codec, topic_prefix: str
) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix, [ACTIONS])
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    cluster = K8sStandIn()
    cluster.add_workload(NS, "deployments", "vmalert", replicas=2)
    cluster.break_rollouts(NS, "deployments", "vmalert")
    reader = TopicReader(bootstrap, codec, ACTIONS, topic_prefix)
    verifier = verifier_for(tenant)

    async def scenario() -> None:
        quick = ConfirmPolicy(within_s=600, every_s=0.05)
        async with executor_on(bootstrap, codec, topic_prefix, cluster, verifier=verifier, confirm=quick,
                               stop_grace_s=0.2) as publisher:
            action = _restart(tenant, "act-1", "vmalert", "undo")
            await publisher.publish(ACTIONS, f"{tenant}:act-1", action)
            await asyncio.to_thread(reader.wait_for, lambda rs: ActionState.RUNNING in _states(rs, "act-1"), 60.0,
                                    "the restart to start")

    asyncio.run(scenario())
    reader.wait_for(lambda rs: ActionState.FAILED in _states(rs, "act-1"), 30.0, "the interruption record")
    records = reader.records
    reader.close()
    assert _states(records, "act-1") == [ActionState.APPROVED, ActionState.RUNNING, ActionState.FAILED]
    assert (_last(records, "act-1").result or "").startswith("interrupted: the executor stopped")


def test_an_operator_rolls_back_a_scale_with_rcaflow_rollback(
    broker: object, codec: Codec, topic_prefix: str
) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix, [ACTIONS])
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    cluster = K8sStandIn()
    cluster.add_workload(NS, "deployments", "vminsert", replicas=2)
    scale = ActionEvent(tenant=tenant, action_id="act-scale", incident_id="inc-1", alert_class="vminsert_write_errors",
                        name="scale_vminsert", tool="k8s", operation="scale",
                        params={"namespace": NS, "kind": "deployment", "name": "vminsert", "replicas": "4"},
                        risk=Risk.HIGH, state=ActionState.APPROVED, dry_run=False, at=datetime.now(UTC),
                        on_failure="undo", approver=TEST_APPROVER)
    scale = signed(scale)
    rb = rollback_id("act-scale")
    reader = TopicReader(bootstrap, codec, ACTIONS, topic_prefix)
    cli = ["--bootstrap", bootstrap, "--prefix", topic_prefix, "--by", "alice", "--yes"]
    # The operator's configuration holds the decision key: the rollback is signed with it.
    operator = Settings(security=SecuritySettings(decision_key=SecretStr(DECISION_KEY)))
    verifier = verifier_for(tenant)

    async def scenario() -> tuple[Result, Result, Result]:
        quick = ConfirmPolicy(within_s=5.0, every_s=0.05)
        async with executor_on(bootstrap, codec, topic_prefix, cluster, verifier=verifier, confirm=quick) as publisher:
            too_early = await asyncio.to_thread(CliRunner().invoke, rollback, ["act-scale", *cli],
                                                obj=operator)
            await publisher.publish(ACTIONS, f"{tenant}:act-scale", scale)
            await asyncio.to_thread(reader.wait_for, lambda rs: ActionState.SUCCEEDED in _states(rs, "act-scale"),
                                    60.0, "the scale")
            requested = await asyncio.to_thread(CliRunner().invoke, rollback, ["act-scale", *cli],
                                                obj=operator)
            await asyncio.to_thread(reader.wait_for, lambda rs: ActionState.ROLLED_BACK in _states(rs, "act-scale"),
                                    60.0, "the rollback")
            again = await asyncio.to_thread(CliRunner().invoke, rollback, ["act-scale", *cli],
                                                obj=operator)
        return too_early, requested, again

    too_early, requested, again = asyncio.run(scenario())
    records = reader.records
    reader.close()
    assert too_early.exit_code == 1 and "no action act-scale" in too_early.output
    assert requested.exit_code == 0, requested.output
    assert "k8s.scale kind=deployment name=vminsert namespace=insight-system replicas=2" in requested.output
    assert _states(records, rb) == [ActionState.APPROVED, ActionState.RUNNING, ActionState.SUCCEEDED]
    approved = next(r for r in records if isinstance(r, ActionEvent) and r.action_id == rb)
    assert approved.reason == "rollback of act-scale (scale_vminsert) requested by alice"
    assert _states(records, "act-scale")[-1] is ActionState.ROLLED_BACK
    assert cluster.workloads[(NS, "deployments", "vminsert")]["spec"]["replicas"] == 2
    assert again.exit_code == 1 and "already being or has been rolled back" in again.output
