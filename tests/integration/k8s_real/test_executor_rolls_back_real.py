"""The executor process's own loop on a real broker and a real cluster: a signed, approved restart whose rollout
cannot progress is failed and, because vmalert's policy says ``on_failure: undo``, rolled back by the executor
itself; the actions topic tells the story and the cluster is back on its previous revision."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from executors import ConfirmPolicy, ToolRegistry
from executors.tools.k8s import RESTARTED_AT
from executors.tools.k8s_api import K8sApi
from producers.publisher import KafkaPublisher
from schemas.codec import Codec, make_codec
from schemas.records import ActionEvent, ActionState, Record, Risk
from schemas.topics import ACTIONS
from streams.executor.rollbacks import rollback_id
from streams.executor.service import ExecutorService
from streams.wiring.topics_admin import ensure_topics
from tests.integration.flow.conftest import TEST_APPROVER, signed, verifier_for
from tests.integration.flow.helpers import TopicReader
from tests.integration.k8s_real.conftest import create_deployment, live_pods, read, wait_for
from tests.support.k8s.cluster import K8sCluster


@pytest.fixture(scope="module")
def codec() -> Codec:
    return make_codec(None)


def _states(records: list[Record], action_id: str) -> list[ActionState]:
    return [r.state for r in records if isinstance(r, ActionEvent) and r.action_id == action_id]


def test_a_stuck_restart_is_rolled_back_by_the_executor_per_policy(
        broker: object, codec: Codec, topic_prefix: str, k8s_cluster: K8sCluster, namespace: str) -> None:
    from kubernetes import client

    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix, [ACTIONS])
    create_deployment(k8s_cluster, namespace, "vmalert", 1, progress_deadline_s=2)
    with k8s_cluster.sync_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_resource_quota(namespace, client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="pods"), spec=client.V1ResourceQuotaSpec(hard={"pods": "1"})))
        wait_for(lambda: (q := core.read_namespaced_resource_quota("pods", namespace).status)
                 and q.used and q.used.get("pods") == "1", 30, "the quota to count the pod")
    old_pods = {p.metadata.name for p in live_pods(k8s_cluster, namespace, "vmalert")}
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    act = "act-stuck"
    restart = signed(ActionEvent(
        tenant=tenant, action_id=act, incident_id="inc-1", alert_class="vmalert_config_reload_failure",
        name="restart_vmalert", tool="k8s", operation="rollout_restart",
        params={"namespace": namespace, "kind": "deployment", "name": "vmalert"}, risk=Risk.HIGH,
        state=ActionState.APPROVED, dry_run=False, at=datetime.now(UTC), on_failure="undo",
        approver=TEST_APPROVER))
    reader = TopicReader(bootstrap, codec, ACTIONS, topic_prefix)

    async def scenario() -> None:
        api = K8sApi.from_kubeconfig(str(k8s_cluster.kubeconfig))
        publisher = KafkaPublisher(bootstrap, codec, topic_prefix)
        service = ExecutorService(bootstrap=bootstrap, codec=codec, publisher=publisher,
                                  registry=ToolRegistry({"k8s": api}), topic_prefix=topic_prefix, dry_run=False,
                                  confirm=ConfirmPolicy(within_s=60, every_s=0.25), verifier=verifier_for(tenant))
        running = asyncio.create_task(service.run())
        try:
            await publisher.publish(ACTIONS, f"{tenant}:{act}", restart)
            await asyncio.to_thread(reader.wait_for, lambda rs: ActionState.ROLLED_BACK in _states(rs, act), 120.0,
                                    "the restart to be rolled back")
        finally:
            service.stop()
            await running
            publisher.close_sync()
            await api.aclose()

    asyncio.run(scenario())
    records = reader.records
    reader.close()

    assert _states(records, act) == [ActionState.APPROVED, ActionState.RUNNING, ActionState.FAILED,
                                     ActionState.ROLLED_BACK]
    failed = [r for r in records if isinstance(r, ActionEvent) and r.action_id == act][2]
    assert "exceeded its progress deadline" in (failed.result or "")
    rb = rollback_id(act)
    assert _states(records, rb) == [ActionState.RUNNING, ActionState.SUCCEEDED]
    done = [r for r in records if isinstance(r, ActionEvent) and r.action_id == rb][-1]
    assert done.operation == "undo_restart" and "successfully rolled out" in (done.result or "")
    template = read(k8s_cluster, "deployment", namespace, "vmalert").spec.template.metadata
    assert RESTARTED_AT not in (template.annotations or {})
    assert {p.metadata.name for p in live_pods(k8s_cluster, namespace, "vmalert")} == old_pods
