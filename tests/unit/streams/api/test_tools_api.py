"""POST /tools/{family}: evidence within the tenant's scope, actions only with a matching approval (run by the
executor: tests/integration/flow/test_tools_through_the_executor.py)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from executors.evidence import build_evidence_tools
from executors.evidence.es import EsApi, EsConfig
from executors.evidence.netprobe import NetprobeConfig
from executors.evidence.prom import PromApi
from executors.registry import ToolRegistry
from policies.tenant_scope import TenantScope
from schemas.records import ActionEvent, ActionState, Risk
from streams.api.actions_view import InMemoryPendingActions
from streams.api.app import TenantAuth
from streams.api.tools import build_tools_router
from tests.unit.executors.evidence.helpers import NOW
from tests.unit.executors.evidence.standins import EsStandIn, K8sReadStandIn
from tests.unit.executors.exec_helpers import asgi_client, k8s_api

NS = "insight-system"
ACME = {"Authorization": "Bearer s3cret"}
OTHER = {"Authorization": "Bearer 0ther"}
RESTART = {"namespace": NS, "kind": "statefulset", "name": "vmstorage"}


def prom_handler(request: httpx.Request) -> httpx.Response:
    form = parse_qs(request.content.decode())
    if form["query"] == ["up{job=\"missing\"}"]:
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": []}})
    return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"pod": "vmstorage-0"}, "value": [1764064800, "600"]}]}})


@dataclass
class World:
    client: TestClient
    cluster: K8sReadStandIn
    es: EsStandIn
    pending: InMemoryPendingActions
    #: Connections the netprobe made (host, port) to the local listener.
    probed: list[str] = field(default_factory=list)


#: Both tenants unscoped (read anything, change nothing): the reads tests are about the tools, not scope.
UNSCOPED = {"acme": TenantScope("acme"), "other": TenantScope("other")}
#: Each tenant with namespaces of its own.
SCOPED = {"acme": TenantScope("acme", namespaces=(NS,)), "other": TenantScope("other", namespaces=("team-b-*",))}


def make_world(
    *, call_timeout_s: float = 10.0, scopes: dict[str, TenantScope] | None = None,
    netprobe: dict[str, str] | None = None,
) -> Iterator[World]:
    cluster = K8sReadStandIn()
    cluster.add_labelled_pod(NS, "vmstorage-0", {"app": "vmstorage"}, restarts=4, ready=False,
                             waiting="CrashLoopBackOff")
    cluster.add_workload(NS, "statefulsets", "vmstorage")
    es = EsStandIn(now=NOW)
    es.fail = (503, "cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/2/no master];")
    evidence = build_evidence_tools(
        prom=PromApi.create(httpx.AsyncClient(transport=httpx.MockTransport(prom_handler)), "http://prom.test:9090"),
        k8s=k8s_api(cluster.app(), "viewer-token"),
        es=EsApi.create(asgi_client(es.app(), "http://es.test:9200"), EsConfig(base_url="http://es.test:9200")),
        netprobe=NetprobeConfig(targets=netprobe or {}, timeout_s=2.0) if netprobe is not None else None,
    )
    pending = InMemoryPendingActions()
    world = World(client=None, cluster=cluster, es=es, pending=pending)  # type: ignore[arg-type]
    app = FastAPI()
    app.state.auth = TenantAuth({"acme": SecretStr("s3cret"), "other": SecretStr("0ther")}, "default")
    # No executor path: a write that passes every check must still never run in this process.
    app.include_router(build_tools_router(
        evidence=evidence, registry=ToolRegistry({"k8s": k8s_api(cluster.app(), "admin-token")}), pending=pending,
        scopes=UNSCOPED if scopes is None else scopes, netprobe_targets=(netprobe or {}).keys(),
        call_timeout_s=call_timeout_s, clock=lambda: NOW))
    with TestClient(app) as client:
        world.client = client
        yield world


@pytest.fixture
def world() -> Iterator[World]:
    yield from make_world()


def approved(action_id: str = "act-1", *, tenant: str = "acme", state: ActionState = ActionState.APPROVED,
             params: dict[str, str] | None = None) -> ActionEvent:
    return ActionEvent(tenant=tenant, action_id=action_id, incident_id="inc-1", alert_class="remote_storage_failures",
                       name="restart vmstorage", tool="k8s", operation="rollout_restart",
                       params=params or dict(RESTART), risk=Risk.LOW, state=state, at=NOW,
                       expires_at=NOW + timedelta(minutes=30))


def restart(world: World, action_id: str | None = "act-1", params: dict[str, str] | None = None,
            headers: dict[str, str] = ACME) -> httpx.Response:
    body: dict[str, Any] = {"operation": "rollout_restart", "params": params or dict(RESTART)}
    if action_id is not None:
        body["action_id"] = action_id
    return world.client.post("/tools/k8s", json=body, headers=headers)


# --------------------------------------------------------------------------- reads


def test_a_request_without_the_tenants_token_is_401(world: World) -> None:
    response = world.client.post("/tools/prom", json={"operation": "query", "params": {"query": "up"}})
    assert response.status_code == 401


def test_prom_query_answers_the_evidence_with_the_exact_request(world: World) -> None:
    query = 'max(prometheus_remote_storage_highest_timestamp_in_seconds{namespace="insight-system"})'
    response = world.client.post("/tools/prom", json={"operation": "query", "params": {"query": query}},
                                 headers=ACME)
    assert response.status_code == 200
    body = response.json()
    assert body["tool"] == "prom" and body["operation"] == "query" and body["status"] == "success"
    method, url, form = body["query"].split(" ", 2)
    assert (method, url) == ("POST", "http://prom.test:9090/api/v1/query")
    assert json.loads(form)["query"] == query
    assert body["values"][""] == 600.0 and "vmstorage-0" in body["summary"]
    assert body["error"] is None


def test_a_query_that_matches_nothing_is_no_data(world: World) -> None:
    response = world.client.post("/tools/prom", json={"operation": "query", "params": {"query": 'up{job="missing"}'}},
                                 headers=ACME)
    assert response.status_code == 200 and response.json()["status"] == "no_data"


def test_an_injected_promql_shape_is_422_naming_the_field(world: World) -> None:
    response = world.client.post("/tools/prom", headers=ACME,
                                 json={"operation": "query", "params": {"query": 'up{a="x"}) or vector(1) #'}})
    assert response.status_code == 422
    body = response.json()
    assert body["reason"] == "invalid_params" and body["errors"][0]["field"] == "params.query"


def test_k8s_pods_reads_the_cluster_and_a_hostile_namespace_never_reaches_it(world: World) -> None:
    ok = world.client.post("/tools/k8s", headers=ACME,
                           json={"operation": "pods", "params": {"namespace": NS, "selector": "app=vmstorage"}})
    assert ok.status_code == 200
    assert ok.json()["values"] == {"": 1.0, "restarts": 4.0, "not_ready": 1.0}
    assert "CrashLoopBackOff" in ok.json()["summary"]
    reads = len(world.cluster.reads)
    bad = world.client.post("/tools/k8s", headers=ACME,
                            json={"operation": "pods", "params": {"namespace": "../../secrets", "name": "x"}})
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["params.namespace"]
    assert "../../secrets" not in bad.text  # the refused value is not echoed
    assert len(world.cluster.reads) == reads


def test_integers_in_params_are_taken_as_their_text(world: World) -> None:
    response = world.client.post("/tools/k8s", headers=ACME, json={
        "operation": "logs", "params": {"namespace": NS, "pod": "vmstorage-0", "tail": 50}})
    assert response.status_code == 200
    assert world.cluster.reads[-1][1]["tailLines"] == "50"


def test_an_upstream_failure_is_an_error_record_with_the_upstreams_words(world: World) -> None:
    response = world.client.post("/tools/es", headers=ACME, json={
        "operation": "count",
        "params": {"query": 'kubernetes.pod_name:"vminsert-0" AND @timestamp:[now-5m TO now]'}})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "error" and "cluster_block_exception" in body["error"]
    assert body["query"].startswith("POST http://es.test:9200/")


def test_a_call_over_its_timeout_is_an_error_record() -> None:
    for world in make_world(call_timeout_s=0.05):
        world.cluster.hang_s = 2.0
        response = world.client.post("/tools/k8s", headers=ACME,
                                     json={"operation": "events", "params": {"namespace": NS, "name": "vmstorage-0"}})
        assert response.status_code == 200
        assert response.json()["status"] == "error" and "no answer within" in response.json()["error"]


@pytest.mark.parametrize(("path", "operation", "reason"), [
    ("/tools/k8s", "exec", "unknown_operation"),
    ("/tools/netprobe", "tcp", "not_configured"),
    ("/tools/shell", "run", "unknown_tool"),
])
def test_unknown_or_unconfigured_operations_are_404(world: World, path: str, operation: str, reason: str) -> None:
    response = world.client.post(path, json={"operation": operation, "params": {}}, headers=ACME)
    assert response.status_code == 404 and response.json()["reason"] == reason
    if reason == "unknown_operation":
        assert "pods" in response.json()["detail"] and "rollout_restart" in response.json()["detail"]


def test_a_malformed_body_is_422(world: World) -> None:
    response = world.client.post("/tools/k8s", json={"operation": "pods", "params": {"n": [1]}}, headers=ACME)
    assert response.status_code == 422
    response = world.client.post("/tools/k8s", json={"op": "pods"}, headers=ACME)
    assert response.status_code == 422


# --------------------------------------------------------------------------- writes


def test_a_write_without_an_approved_action_is_403_and_touches_nothing(world: World) -> None:
    response = restart(world, action_id=None)
    assert response.status_code == 403 and response.json()["reason"] == "approval_required"
    response = restart(world, action_id="act-unknown")
    assert response.status_code == 403 and response.json()["reason"] == "unknown_action"
    assert world.cluster.writes == []


@pytest.mark.parametrize("state", [ActionState.AWAITING_APPROVAL, ActionState.REJECTED, ActionState.EXPIRED])
def test_only_an_approved_action_can_run(world: World, state: ActionState) -> None:
    world.pending.see(approved(state=state))
    response = restart(world)
    assert response.status_code == 403 and response.json()["reason"] == "not_approved"
    assert state.value in response.json()["detail"]
    assert world.cluster.writes == []


def test_an_action_that_already_ran_answers_its_outcome_and_runs_nothing() -> None:
    for world in make_world(scopes=SCOPED):
        world.pending.see(approved(state=ActionState.SUCCEEDED).model_copy(
            update={"result": "restarted", "dry_run": False}))
        response = restart(world)
        assert response.status_code == 200, response.text
        assert response.json()["state"] == "succeeded" and response.json()["result"] == "restarted"
        assert world.cluster.writes == []
        followed = world.client.get("/tools/actions/act-1", headers=ACME)
        assert followed.status_code == 200 and followed.json()["state"] == "succeeded"
        assert world.client.get("/tools/actions/act-1", headers=OTHER).status_code == 404


def test_a_dry_run_that_already_ran_answers_dry_run_never_succeeded() -> None:
    for world in make_world(scopes=SCOPED):
        world.pending.see(approved(state=ActionState.SUCCEEDED).model_copy(
            update={"result": "would restart", "dry_run": True}))
        response = restart(world)
        assert response.status_code == 200, response.text
        assert (response.json()["state"], response.json()["dry_run"]) == ("dry-run", True)
        assert world.cluster.writes == []
        followed = world.client.get("/tools/actions/act-1", headers=ACME)
        assert followed.json()["state"] == "dry-run"


def test_another_tenants_approval_is_not_visible(world: World) -> None:
    world.pending.see(approved(tenant="other"))
    response = restart(world)
    assert response.status_code == 403 and response.json()["reason"] == "unknown_action"
    assert world.cluster.writes == []


def test_the_request_must_match_what_was_approved(world: World) -> None:
    world.pending.see(approved())
    response = restart(world, params={**RESTART, "name": "vminsert"})
    assert response.status_code == 403 and response.json()["reason"] == "mismatch"
    assert "name" in response.json()["detail"]
    other_op = world.client.post("/tools/k8s", headers=ACME, json={
        "operation": "delete_pod", "params": {"namespace": NS, "pod": "vmstorage-0"}, "action_id": "act-1"})
    assert other_op.status_code == 403 and other_op.json()["reason"] == "mismatch"
    assert world.cluster.writes == []


def test_invalid_write_params_are_422_naming_the_field(world: World) -> None:
    world.pending.see(approved())
    response = restart(world, params={**RESTART, "kind": "pod"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "params.kind"


def test_an_approved_write_never_runs_in_the_api_process() -> None:
    # Every check passes (approved, matching, in scope); without the executor path it is refused, not run here.
    for world in make_world(scopes=SCOPED):
        world.pending.see(approved())
        response = restart(world)
        assert response.status_code == 503 and response.json()["reason"] == "no_executor_path"
        assert world.cluster.writes == []


def test_a_write_after_the_approval_ran_out_is_403() -> None:
    for world in make_world(scopes=SCOPED):
        world.pending.see(approved().model_copy(update={"expires_at": NOW - timedelta(seconds=1)}))
        response = restart(world)
        assert response.status_code == 403 and response.json()["reason"] == "expired"
        assert world.cluster.writes == []


def test_read_risk_actions_need_no_approval(world: World) -> None:
    response = world.client.post("/tools/diagnostics", headers=ACME,
                                 json={"operation": "collect", "params": {"namespace": NS, "workload": "vmstorage"}})
    assert response.status_code == 200
    assert response.json()["state"] == "succeeded" and "vmstorage-0" in response.json()["output"]
    assert world.cluster.writes == []


def test_a_scoped_tenant_reads_only_its_namespaces_and_no_free_form_queries() -> None:
    for world in make_world(scopes=SCOPED):
        mine = world.client.post("/tools/k8s", headers=ACME, json={
            "operation": "pods", "params": {"namespace": NS, "selector": "app=vmstorage"}})
        assert mine.status_code == 200, mine.text
        reads = len(world.cluster.reads)
        theirs = world.client.post("/tools/k8s", headers=OTHER, json={
            "operation": "pods", "params": {"namespace": NS, "selector": "app=vmstorage"}})
        assert theirs.status_code == 403 and theirs.json()["reason"] == "out_of_scope"
        assert "insight-system" in theirs.json()["detail"] and "team-b-*" in theirs.json()["detail"]
        assert len(world.cluster.reads) == reads  # refused before anything was asked of the cluster
        promql = world.client.post("/tools/prom", headers=OTHER, json={"operation": "query", "params": {"query": "up"}})
        assert promql.status_code == 403 and promql.json()["reason"] == "out_of_scope"


def test_a_tenant_without_a_scope_reads_nothing() -> None:
    for world in make_world(scopes={"acme": TenantScope("acme", namespaces=(NS,))}):
        response = world.client.post("/tools/k8s", headers=OTHER, json={
            "operation": "pods", "params": {"namespace": NS, "selector": "app=vmstorage"}})
        assert response.status_code == 403 and "no scope configured" in response.json()["detail"]


def test_an_approved_write_outside_the_tenants_namespaces_is_403() -> None:
    for world in make_world(scopes={"acme": TenantScope("acme", namespaces=("team-a-*",))}):
        world.pending.see(approved())
        response = restart(world)
        assert response.status_code == 403 and response.json()["reason"] == "out_of_scope"
        assert "insight-system" in response.json()["detail"]
        assert world.cluster.writes == []


def test_an_unscoped_tenant_may_read_but_never_write(world: World) -> None:
    world.pending.see(approved())
    response = restart(world)
    assert response.status_code == 403 and "read-only" in response.json()["detail"]


def test_netprobe_reaches_named_targets_only_never_a_host_and_port() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        for world in make_world(netprobe={"vmselect": f"127.0.0.1:{port}"}):
            named = world.client.post("/tools/netprobe", headers=ACME,
                                      json={"operation": "tcp", "params": {"target": "vmselect"}})
            assert named.status_code == 200 and named.json()["values"][""] == 1.0, named.text
            listener.settimeout(5)
            listener.accept()[0].close()
            listener.settimeout(0.5)
            raw = world.client.post("/tools/netprobe", headers=ACME,
                                    json={"operation": "tcp", "params": {"target": f"127.0.0.1:{port}"}})
            assert raw.status_code == 403 and raw.json()["reason"] == "unknown_target"
            assert "vmselect" in raw.json()["detail"]
            with pytest.raises(TimeoutError):
                listener.accept()  # nothing connected for the refused request
