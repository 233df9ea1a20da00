"""The incident API as a script or the CLI sees it: per-tenant reads, paging, filters, and API approvals that
go through the chat channels' checks and publish a signed decision (records fed to the view directly)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import SecretStr

from schemas.records import (
    ActionEvent,
    ActionState,
    AlertEvent,
    AuditKind,
    AuditRecord,
    Decision,
    Engine,
    Evidence,
    Incident,
    IncidentState,
    ProposedAction,
    RcaResult,
    Risk,
)
from streams.api.actions_view import InMemoryPendingActions
from streams.api.app import TenantAuth, create_app
from streams.api.approvals import ApprovalsConfig, ApprovalSteps
from streams.api.claims import InMemoryClaims
from streams.api.console import build_console_router
from streams.api.incidents_routes import ApproverTokens, PendingApprovalsCollector, build_incidents_router
from streams.api.incidents_view import IncidentsView
from streams.settings import Settings
from streams.stages.approval import Rejection
from streams.stages.metrics import StageMetrics
from streams.wiring.runtime import build_stages
from tests.support.approval_keys import APPROVAL_KEYS, signed_decision
from tests.unit.streams.approval_helpers import MemoryPublisher

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
READ = {"Authorization": "Bearer acme-read"}
ALICE = {"Authorization": "Bearer alice-approves"}
MALLORY = {"Authorization": "Bearer mallory-not-listed"}
BOB_OTHER = {"Authorization": "Bearer bob-other-tenant"}
#: carol's token is the other tenant's; acme also lists an api:carol (names are per tenant, not global).
CAROL_OTHER = {"Authorization": "Bearer carol-of-the-other-tenant"}


def incident(tenant: str, n: int, *, cluster: str = "c1", alert_class: str = "etcd_latency",
             state: IncidentState = IncidentState.OPEN, count: int = 1) -> Incident:
    opened = NOW + timedelta(minutes=n)
    event = AlertEvent(tenant=tenant, event_id=f"ev-{tenant}-{n}-{count}", fingerprint=f"fp-{n}", alert="etcdHighFsync",
                       severity="P2", alert_class=alert_class, labels={"cluster": cluster, "namespace": "kube-system"},
                       received_at=opened, parser="test")
    return Incident(tenant=tenant, incident_id=f"inc-{tenant}-{n}", fingerprint=f"fp-{n}", alert_class=alert_class,
                    opened_at=opened, last_seen_at=opened + timedelta(seconds=count), count=count,
                    last_event_id=event.event_id, event=event, state=state,
                    resolved_at=opened + timedelta(hours=1) if state is IncidentState.RESOLVED else None)


def waiting(tenant: str, n: int, *, expires_at: datetime | None = None) -> ActionEvent:
    return ActionEvent(tenant=tenant, action_id=f"act-{tenant}-{n}", incident_id=f"inc-{tenant}-{n}",
                       alert_class="etcd_latency", name="restart etcd member", tool="k8s",
                       operation="rollout_restart", params={"namespace": "kube-system", "name": "etcd"},
                       risk=Risk.HIGH, state=ActionState.AWAITING_APPROVAL, at=NOW + timedelta(minutes=n, seconds=5),
                       expires_at=expires_at or NOW + timedelta(hours=2))


@dataclass
class Env:
    client: TestClient
    view: IncidentsView
    pending: InMemoryPendingActions
    publisher: MemoryPublisher
    registry: CollectorRegistry
    rejections: list[Rejection] = field(default_factory=list)
    now: datetime = NOW + timedelta(minutes=30)

    def feed(self, *records: object) -> None:
        for record in records:
            self.view.see(record)  # type: ignore[arg-type]
            if isinstance(record, ActionEvent):
                self.pending.see(record)


@pytest.fixture
def env() -> Iterator[Env]:
    registry = CollectorRegistry()
    stages = build_stages(Settings(), StageMetrics(registry))
    publisher = MemoryPublisher()
    view = IncidentsView(approval_keys=APPROVAL_KEYS)
    pending = InMemoryPendingActions()
    auth = TenantAuth({"acme": SecretStr("acme-read"), "other": SecretStr("other-read")}, "default")
    app = create_app(normalize=stages.normalize, publisher=publisher, auth=auth,
                     registry=registry)
    holder: list[Env] = []

    async def keep(rejection: Rejection) -> None:
        holder[0].rejections.append(rejection)

    config = ApprovalsConfig(approvers={"acme": frozenset({"api:alice", "slack:U1", "api:carol"}),
                                        "other": frozenset({"api:bob", "api:carol"})}, approval_keys=APPROVAL_KEYS)
    steps = ApprovalSteps(config, pending, publisher, InMemoryClaims(), None, keep, lambda: holder[0].now)
    tokens = ApproverTokens({"acme": {"alice": SecretStr("alice-approves"), "mallory": SecretStr("mallory-not-listed")},
                             "other": {"bob": SecretStr("bob-other-tenant"),
                                       "carol": SecretStr("carol-of-the-other-tenant")}})
    app.include_router(build_incidents_router(view=view, approver_tokens=tokens, steps=steps,
                                              clock=lambda: holder[0].now))
    registry.register(PendingApprovalsCollector(view, ["acme", "globex"]))  # type: ignore[arg-type]
    app.include_router(build_console_router())
    with TestClient(app) as client:
        holder.append(Env(client, view, pending, publisher, registry))
        yield holder[0]


def test_a_tenant_sees_only_its_incidents_and_another_tenants_id_is_404(env: Env) -> None:
    env.feed(incident("acme", 1), incident("other", 2))
    listed = env.client.get("/incidents", headers=READ)
    assert listed.status_code == 200, listed.text
    assert [i["incident_id"] for i in listed.json()["items"]] == ["inc-acme-1"]
    assert env.client.get("/incidents/inc-other-2", headers=READ).status_code == 404
    assert env.client.get("/incidents/inc-acme-1", headers=READ).status_code == 200
    # An approver token reads its own tenant too, never the other one.
    assert [i["incident_id"] for i in env.client.get("/incidents", headers=BOB_OTHER).json()["items"]] == [
        "inc-other-2"]
    assert env.client.get("/incidents").status_code == 401
    assert env.client.get("/incidents", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert env.client.get("/actions", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_paging_with_a_cursor_returns_every_incident_once_newest_first(env: Env) -> None:
    env.feed(*(incident("acme", n) for n in range(7)))
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = env.client.get("/incidents", headers=READ,
                              params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seen += [i["incident_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"inc-acme-{n}" for n in reversed(range(7))]
    assert env.client.get("/incidents", headers=READ, params={"cursor": "!!"}).status_code == 400


def test_filters_by_state_class_cluster_and_time(env: Env) -> None:
    env.feed(incident("acme", 1, cluster="a"), incident("acme", 2, cluster="b", alert_class="log_flood"),
             incident("acme", 3, state=IncidentState.RESOLVED))

    def ids(**params: str) -> list[str]:
        response = env.client.get("/incidents", headers=READ, params=params)
        assert response.status_code == 200, response.text
        return sorted(i["incident_id"] for i in response.json()["items"])

    assert ids(state="resolved") == ["inc-acme-3"]
    assert ids(state="open") == ["inc-acme-1", "inc-acme-2"]
    assert ids(**{"class": "log_flood"}) == ["inc-acme-2"]
    assert ids(cluster="a") == ["inc-acme-1"]
    assert ids(until=(NOW + timedelta(minutes=2)).isoformat()) == ["inc-acme-1", "inc-acme-2"]
    assert ids(since=(NOW + timedelta(minutes=3)).isoformat()) == ["inc-acme-3"]
    assert env.client.get("/incidents", headers=READ, params={"state": "bogus"}).status_code == 422


def test_the_incident_timeline_holds_alerts_evidence_diagnoses_actions_approvals_and_audit(env: Env) -> None:
    first = incident("acme", 1)
    action = waiting("acme", 1)
    rca = RcaResult(tenant="acme", incident_id=first.incident_id, alert_class="etcd_latency", engine=Engine.POLICY,
                    diagnosis="etcd fsync slow", evidence=[Evidence(
                        tool="prom", operation="query", query='histogram_quantile(0.99, rate(x[5m]))',
                        summary="0.8 s")],
                    actions=[ProposedAction(action_id=action.action_id, name=action.name, tool="k8s",
                                            operation="rollout_restart", risk=Risk.HIGH)],
                    produced_at=NOW + timedelta(minutes=1, seconds=2), incident=first)
    decision = signed_decision("acme", action.action_id, approver="api:alice", channel="api",
                               decided_at=NOW + timedelta(minutes=2))
    done = action.model_copy(update={"state": ActionState.SUCCEEDED, "at": NOW + timedelta(minutes=3),
                                     "approver": "api:alice", "result": "restarted", "dry_run": False})
    step = AuditRecord(tenant="acme", seq=7, at=NOW + timedelta(minutes=3), kind=AuditKind.EXECUTION,
                       actor="executor", subject_id=action.action_id, action="succeeded", prev_hash="a", hash="b")
    # Order across topics is not guaranteed: the audit step and the outcome come before the incident.
    env.feed(step, done, decision, action, rca, first, incident("acme", 1, count=2), first)
    body = env.client.get(f"/incidents/{first.incident_id}", headers=READ).json()
    assert [a["count"] for a in body["alerts"]] == [1, 2]
    assert body["diagnoses"][0]["evidence"][0]["query"] == 'histogram_quantile(0.99, rate(x[5m]))'
    [history] = body["actions"]
    assert history["state"] == "succeeded" and [h["state"] for h in history["history"]] == [
        "awaiting_approval", "succeeded"]
    [approval] = body["approvals"]
    assert (approval["approver"], approval["via"], approval["verified"]) == ("api:alice", "api", True)
    assert body["audit"][0]["seq"] == 7
    kinds = [e["kind"] for e in body["timeline"]]
    assert kinds == ["alert", "alert", "diagnosis", "action", "approval", "action", "audit"], kinds
    assert body["timeline"] == sorted(body["timeline"], key=lambda e: e["at"])


def test_actions_awaiting_approval_and_the_pending_gauge(env: Env) -> None:
    env.feed(incident("acme", 1), waiting("acme", 1), waiting("acme", 2), waiting("other", 3))
    env.feed(waiting("acme", 2).model_copy(update={"state": ActionState.REJECTED, "at": NOW + timedelta(hours=1)}))
    listed = env.client.get("/actions", headers=READ, params={"state": "awaiting_approval"}).json()
    assert [a["action_id"] for a in listed["items"]] == ["act-acme-1"]
    metrics = generate_latest(env.registry).decode()
    assert 'rcaflow_pending_approvals{tenant="acme"} 1.0' in metrics
    # A tenant that is not configured is counted under the bounded label; a configured one with none waiting is 0.
    assert 'rcaflow_pending_approvals{tenant="_other"} 1.0' in metrics
    assert 'rcaflow_pending_approvals{tenant="globex"} 0.0' in metrics
    assert 'tenant="other"' not in metrics


def test_an_older_waiting_record_read_late_does_not_reopen_a_decided_action(env: Env) -> None:
    env.feed(waiting("acme", 1).model_copy(update={"state": ActionState.APPROVED, "at": NOW + timedelta(minutes=5)}))
    # The worker re-sent its "awaiting" record after a restart, stamped later than the decision.
    env.feed(waiting("acme", 1).model_copy(update={"at": NOW + timedelta(minutes=9)}))
    assert env.client.get("/actions", headers=READ, params={"state": "awaiting_approval"}).json()["items"] == []
    assert 'rcaflow_pending_approvals{tenant="acme"} 0.0' in generate_latest(env.registry).decode()


def test_openapi_documents_the_incident_models(env: Env) -> None:
    schema = env.client.get("/openapi.json").json()
    for path in ("/incidents", "/incidents/{incident_id}", "/actions", "/actions/{action_id}/approve",
                 "/actions/{action_id}/reject"):
        assert path in schema["paths"], path
    models = schema["components"]["schemas"]
    for name in ("IncidentPage", "IncidentDetail", "TimelineEntry", "EvidenceEntry", "ApprovalEntry",
                 "ActionPage", "DecisionResponse"):
        assert name in models, name
    ok = schema["paths"]["/incidents/{incident_id}"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"]["$ref"].endswith("/IncidentDetail")


def test_an_api_approver_approves_with_a_signed_decision_via_api(env: Env) -> None:
    env.feed(waiting("acme", 1))
    response = env.client.post("/actions/act-acme-1/approve", headers=ALICE, json={"reason": "disk is fine"})
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True, "action_id": "act-acme-1", "decision": "approve",
                               "approver": "api:alice", "via": "api"}
    [(topic, key, record)] = env.publisher.published
    assert (topic, key) == ("approvals", "acme:act-acme-1")
    APPROVAL_KEYS.verify(record)  # type: ignore[arg-type]
    assert (record.channel, record.approver, record.decision, record.reason) == (  # type: ignore[attr-defined]
        "api", "api:alice", Decision.APPROVE, "disk is fine")
    again = env.client.post("/actions/act-acme-1/reject", headers=ALICE)
    assert again.status_code == 409 and again.json()["reason"] in ("already_decided", "replayed")
    assert len(env.publisher.published) == 1


@pytest.mark.parametrize(("headers", "status", "reason"), [
    (READ, 403, "unknown_approver"),              # a tenant's read token does not decide
    (MALLORY, 403, "unknown_approver"),           # an API token whose api:<name> is not in approvers
    (BOB_OTHER, 403, "wrong_tenant"),             # an approver of another tenant
    (CAROL_OTHER, 403, "wrong_tenant"),           # the other tenant's token, though acme lists the same name
    ({"Authorization": "Bearer forged"}, 401, "bad_signature"),
    ({}, 401, "bad_signature"),
])
def test_who_may_not_approve_is_refused_publishes_nothing_and_is_kept(
        env: Env, headers: dict[str, str], status: int, reason: str) -> None:
    env.feed(waiting("acme", 1))
    response = env.client.post("/actions/act-acme-1/approve", headers=headers)
    assert (response.status_code, response.json()["reason"]) == (status, reason), response.text
    assert env.publisher.published == []
    [rejection] = env.rejections
    assert rejection.channel == "api" and rejection.reason.value == reason


def test_an_expired_or_unknown_or_decided_action_is_refused(env: Env) -> None:
    env.feed(waiting("acme", 1, expires_at=NOW + timedelta(minutes=10)), waiting("acme", 2))
    env.feed(waiting("acme", 2).model_copy(update={"state": ActionState.APPROVED, "at": NOW + timedelta(minutes=20)}))
    expired = env.client.post("/actions/act-acme-1/approve", headers=ALICE)
    assert (expired.status_code, expired.json()["reason"]) == (410, "expired")
    decided = env.client.post("/actions/act-acme-2/approve", headers=ALICE)
    assert (decided.status_code, decided.json()["reason"]) == (409, "already_decided")
    unknown = env.client.post("/actions/act-nope/approve", headers=ALICE)
    assert (unknown.status_code, unknown.json()["reason"]) == (404, "unknown_action")
    assert env.publisher.published == []


def test_the_view_forgets_what_is_older_than_it_keeps() -> None:
    view = IncidentsView(keep=timedelta(hours=1), max_incidents=100)
    old = incident("acme", 0)
    view.see(old)
    view.see(waiting("acme", 0))
    # 600 newer incidents, two hours later: the prune that runs every few hundred records drops the old one.
    for n in range(600):
        view.see(incident("acme", 120 + n))
    assert view.incident("acme", old.incident_id) is None
    assert len(view) <= 100  # capped: the least recently active went first
    assert view.incident("acme", incident("acme", 719).incident_id) is not None
    assert all(a.incident_id != old.incident_id for a in view.latest_actions("acme"))


def test_whoami_says_whether_the_token_decides(env: Env) -> None:
    assert env.client.get("/whoami", headers=ALICE).json() == {"tenant": "acme", "approver": "api:alice"}
    assert env.client.get("/whoami", headers=READ).json() == {"tenant": "acme", "approver": None}
    assert env.client.get("/whoami").status_code == 401


def test_the_console_is_served_with_a_strict_policy_and_only_its_own_files(env: Env) -> None:
    page = env.client.get("/console")
    assert page.status_code == 200 and "/console/static/console.js" in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    script = env.client.get("/console/static/console.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert ".innerHTML" not in script.text  # API values (mail text, labels, LLM output) are written as text only
    for path in ("/console/static/index.html", "/console/static/..%2Fconsole.py", "/console/static/x.js"):
        assert env.client.get(path).status_code == 404, path


def test_a_dry_run_that_went_through_says_dry_run_never_succeeded(env: Env) -> None:
    action = waiting("acme", 1)
    dry = action.model_copy(update={"state": ActionState.SUCCEEDED, "at": NOW + timedelta(minutes=3),
                                    "result": "would restart etcd", "dry_run": True})
    failed = waiting("acme", 2).model_copy(update={"state": ActionState.FAILED, "at": NOW + timedelta(minutes=4),
                                                   "dry_run": True})
    env.feed(incident("acme", 1), incident("acme", 2), action, dry, waiting("acme", 2), failed)
    body = env.client.get("/incidents/inc-acme-1", headers=READ).json()
    [history] = body["actions"]
    assert history["state"] == "dry-run" and [h["state"] for h in history["history"]] == [
        "awaiting_approval", "dry-run"]
    assert [e["summary"] for e in body["timeline"] if e["kind"] == "action"][-1].endswith(
        ": dry-run - would restart etcd")
    assert "succeeded" not in str(body)
    listed = env.client.get("/actions", headers=READ, params={"state": "dry-run"}).json()["items"]
    assert [(a["action_id"], a["state"]) for a in listed] == [("act-acme-1", "dry-run")]
    assert env.client.get("/actions", headers=READ, params={"state": "succeeded"}).json()["items"] == []
    # A dry run that failed is "failed", flagged dry_run.
    [failing] = env.client.get("/actions", headers=READ, params={"state": "failed"}).json()["items"]
    assert (failing["action_id"], failing["dry_run"]) == ("act-acme-2", True)


def test_the_shown_states_are_the_life_cycle_and_dry_run() -> None:
    from schemas.records import DRY_RUN_OUTCOME
    from streams.api.incidents_models import ShownState

    assert {s.value for s in ShownState} == {s.value for s in ActionState} | {DRY_RUN_OUTCOME}
