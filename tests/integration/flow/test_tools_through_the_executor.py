"""One execution path (issue 11 item 3): a write asked for through /tools is run by the executor, once.

Two API replicas (the real ``build_api``) and a real executor (not a dry run) on the test broker,
acting on a stand-in Kubernetes API that counts its writes. Both replicas are asked to run the
same approved action at the same time: the pod is deleted once and both answer with the outcome
the executor wrote.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from executors import ConfirmPolicy, ToolRegistry
from policies.decision_signature import DecisionKeys
from policies.loader import load_policies
from policies.tenant_scope import TenantScope, scopes_of
from producers.publisher import KafkaPublisher
from schemas.codec import make_codec
from schemas.records import ActionEvent, ActionState, Risk
from schemas.topics import ACTIONS
from streams.api.app import TenantAuth
from streams.api.process import build_api
from streams.executor.service import ExecutorService
from streams.executor.verify import ActionVerifier
from streams.settings import ApiSettings, KafkaSettings, Settings, TenantSettings
from streams.wiring.runtime import build_stages
from streams.wiring.topics_admin import ensure_topics
from tests.unit.executors.exec_helpers import k8s_api
from tests.unit.executors.k8s_standin import K8sStandIn

NS = "insight-system"
TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
KEYS = DecisionKeys.from_text("tools-through-the-executor-decision-key-0123456789")


def _approved(tenant: str, action_id: str) -> ActionEvent:
    """What the worker writes when slack:U1 approves restarting the Prometheus pod: signed with the decision key."""
    action = ActionEvent(
        tenant=tenant, action_id=action_id, incident_id="inc-1", alert_class="prometheus_remote_write_behind",
        name="restart_prometheus_pod", tool="k8s", operation="delete_pod",
        params={"namespace": NS, "pod": "prometheus-0"}, risk=Risk.HIGH, state=ActionState.APPROVED,
        dry_run=False, approver="slack:U1", at=datetime.now(UTC), expires_at=datetime.now(UTC) + timedelta(hours=1))
    return KEYS.sign(action, decided_at=datetime.now(UTC), valid_for=timedelta(hours=1))


def _replica(settings: Settings, bootstrap: str) -> TestClient:
    app = build_api(settings, bootstrap, build_stages(settings), TenantAuth({"acme": SecretStr(TOKEN)}, "default"),
                    registry=CollectorRegistry())
    return TestClient(app)


def _until_known(client: TestClient, action_id: str) -> None:
    deadline = time.monotonic() + 60
    while client.get(f"/tools/actions/{action_id}", headers=AUTH).status_code != 200:
        assert time.monotonic() < deadline, "the replica's view never saw the approved action"
        time.sleep(0.2)


class Executor:
    """The real executor consumer in a thread of its own, acting on ``cluster``."""

    def __init__(self, bootstrap: str, prefix: str, cluster: K8sStandIn) -> None:
        self._args = (bootstrap, prefix, cluster)
        self._service: ExecutorService | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="executor")

    async def _main(self) -> None:
        bootstrap, prefix, cluster = self._args
        codec = make_codec(None)
        publisher = KafkaPublisher(bootstrap, codec, prefix)
        api = k8s_api(cluster.app())
        verifier = ActionVerifier(KEYS, load_policies(), approvers={"acme": {"slack:U1"}},
                                  scopes=scopes_of([TenantScope(tenant="acme", namespaces=(NS,))]),
                                  registry=CollectorRegistry())
        self._service = ExecutorService(bootstrap=bootstrap, codec=codec, publisher=publisher,
                                        registry=ToolRegistry({"k8s": api}), topic_prefix=prefix, dry_run=False,
                                        confirm=ConfirmPolicy(within_s=1.0, every_s=0.05), verifier=verifier,
                                        stop_grace_s=1.0)
        self._loop = asyncio.get_running_loop()
        try:
            await self._service.run()
        finally:
            await publisher.close()
            await api.aclose()

    def __enter__(self) -> Executor:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        deadline = time.monotonic() + 30
        while self._loop is None or self._service is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        self._loop.call_soon_threadsafe(self._service.stop)
        self._thread.join(30)


def test_two_replicas_asked_to_run_one_approved_action_run_it_once_in_the_executor(
    broker: object, topic_prefix: str
) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix)
    tenant = "acme"
    action_id = f"act-{uuid.uuid4().hex[:8]}"
    cluster = K8sStandIn()
    cluster.add_pod(NS, "prometheus-0")
    settings = Settings(
        kafka_bootstrap_servers=bootstrap, kafka=KafkaSettings(topic_prefix=topic_prefix),
        tenants={tenant: TenantSettings(token=SecretStr(TOKEN), namespaces=[NS])},
        api=ApiSettings(tools_wait_s=60.0),
    )
    publisher = KafkaPublisher(bootstrap, make_codec(None), topic_prefix)
    publisher.publish_sync(ACTIONS, f"{tenant}:{action_id}", _approved(tenant, action_id))
    request = {"operation": "delete_pod", "params": {"namespace": NS, "pod": "prometheus-0"}, "action_id": action_id}

    with _replica(settings, bootstrap) as first, _replica(settings, bootstrap) as second:
        _until_known(first, action_id)
        _until_known(second, action_id)
        with ThreadPoolExecutor(2) as pool:
            # Both asked before any executor runs: each hands the action over and waits for the outcome.
            answers = [pool.submit(client.post, "/tools/k8s", json=request, headers=AUTH)
                       for client in (first, second)]
            time.sleep(1.0)  # give a wrong in-process run every chance to happen before the executor exists
            assert cluster.writes == []
            with Executor(bootstrap, topic_prefix, cluster):
                responses: list[httpx.Response] = [answer.result(timeout=90) for answer in answers]
        # The same request again, after the run: the outcome, not a second run.
        again = first.post("/tools/k8s", json=request, headers=AUTH)

    publisher.close_sync()
    for response in (*responses, again):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["state"] == "succeeded" and body["ran_by"] == "executor" and body["dry_run"] is False
    deletes = [w for w in cluster.writes if w[0] == "DELETE"]
    assert len(deletes) == 1, cluster.writes
    assert (NS, "prometheus-0") not in cluster.pods


def test_a_write_the_executor_has_not_finished_is_202_with_where_to_follow_it(
    broker: object, topic_prefix: str
) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix)
    action_id = f"act-{uuid.uuid4().hex[:8]}"
    cluster = K8sStandIn()
    cluster.add_pod(NS, "prometheus-0")
    settings = Settings(
        kafka_bootstrap_servers=bootstrap, kafka=KafkaSettings(topic_prefix=topic_prefix),
        tenants={"acme": TenantSettings(token=SecretStr(TOKEN), namespaces=[NS])},
        api=ApiSettings(tools_wait_s=1.0),
    )
    publisher = KafkaPublisher(bootstrap, make_codec(None), topic_prefix)
    publisher.publish_sync(ACTIONS, f"acme:{action_id}", _approved("acme", action_id))
    request = {"operation": "delete_pod", "params": {"namespace": NS, "pod": "prometheus-0"}, "action_id": action_id}
    with _replica(settings, bootstrap) as client:
        _until_known(client, action_id)
        # No executor yet: the API does not run it itself, it answers where to follow it.
        pending = client.post("/tools/k8s", json=request, headers=AUTH)
        assert pending.status_code == 202, pending.text
        follow = pending.json()["follow"]
        assert follow == f"/tools/actions/{action_id}" and pending.json()["state"] == "approved"
        assert cluster.writes == []
        with Executor(bootstrap, topic_prefix, cluster):
            deadline = time.monotonic() + 60
            while client.get(follow, headers=AUTH).json()["state"] != "succeeded":
                assert time.monotonic() < deadline, "the executor's outcome never showed at the follow address"
                time.sleep(0.2)
    publisher.close_sync()
    assert len([w for w in cluster.writes if w[0] == "DELETE"]) == 1
