"""The approval endpoints as Slack, DingTalk and a browser see them: signed requests in, decisions out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus, urlencode

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from executors.approvals import LinkSigner, dingtalk_sign, slack_signature
from executors.notify import slack as slack_messages
from schemas.records import ActionEvent, ActionState, ApprovalDecision, Decision
from streams.api.actions_view import InMemoryPendingActions
from streams.api.approvals import ApprovalsConfig, build_approvals_router
from streams.notify.links import approval_links
from streams.stages.approval import Rejection
from tests.unit.streams.approval_helpers import NOW, MemoryPublisher, action, rca

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DINGTALK_SECRET = "SEC-dingtalk-app-secret"
LINK_SECRET = SecretStr("a-link-signing-secret-of-at-least-32-bytes")
RESPONSE_URL = "https://hooks.slack.com/actions/T1/1/abc"


@dataclass
class SlackResponseStandIn:
    """hooks.slack.com response_url: records what rcaflow posted back to the clicked message."""

    posts: list[dict[str, Any]] = field(default_factory=list)

    async def respond(self, request: Request) -> Response:
        self.posts.append(json.loads(await request.body()))
        return JSONResponse({"ok": True})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/actions/{rest:path}", self.respond, methods=["POST"])])


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Env:
    client: TestClient
    publisher: MemoryPublisher
    pending: InMemoryPendingActions
    slack: SlackResponseStandIn
    rejections: list[Rejection]
    clock: Clock
    signer: LinkSigner

    def decisions(self) -> list[ApprovalDecision]:
        return [r for _, _, r in self.publisher.published if isinstance(r, ApprovalDecision)]


def make_env(identity_header: str | None = None) -> Iterator[Env]:
    publisher, pending, slack, clock = MemoryPublisher(), InMemoryPendingActions(), SlackResponseStandIn(), Clock()
    rejections: list[Rejection] = []

    async def record(rejection: Rejection) -> None:
        rejections.append(rejection)

    signer = LinkSigner(LINK_SECRET)
    config = ApprovalsConfig(
        approvers={"acme": frozenset({"slack:U1", "slack:U2", "dingtalk:staff1", "link:alice@acme.example"}),
                   "other": frozenset({"slack:U9"})},
        slack_signing_secret=SecretStr(SLACK_SECRET),
        dingtalk_app_secret=SecretStr(DINGTALK_SECRET),
        link_signer=signer,
        link_identity_header=identity_header,
    )
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=slack.app()))
    app = FastAPI()
    app.include_router(build_approvals_router(config=config, pending=pending, publisher=publisher, http=http,
                                              on_rejection=record, clock=clock))
    pending.see(action())
    pending.see(action("act-other", tenant="other"))
    with TestClient(app) as client:
        yield Env(client, publisher, pending, slack, rejections, clock, signer)


@pytest.fixture
def env() -> Iterator[Env]:
    yield from make_env()


def click_body(*, user: str = "U1", value: str = "acme|act-1", action_id: str = slack_messages.APPROVE) -> bytes:
    message = slack_messages.first_response(rca(), [action()], channel="C1")
    payload = {
        "type": "block_actions", "user": {"id": user, "username": "alice", "team_id": "T1"},
        "team": {"id": "T1"}, "response_url": RESPONSE_URL,
        "actions": [{"type": "button", "action_id": action_id, "block_id": "rcaflow:act-1", "value": value}],
        "message": {"ts": "1700000000.000100", "blocks": message["blocks"]},
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def post_slack(env: Env, body: bytes, *, at: datetime | None = None, secret: str = SLACK_SECRET) -> httpx.Response:
    timestamp = str(int((at or env.clock.now).timestamp()))
    return env.client.post("/approvals/slack", content=body, headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": slack_signature(secret, timestamp, body),
    })


# --------------------------------------------------------------------------- Slack


def test_a_valid_click_publishes_the_decision_and_removes_the_buttons(env: Env) -> None:
    response = post_slack(env, click_body())
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True, "action_id": "act-1", "decision": "approve"}
    [(topic, key, record)] = env.publisher.published
    assert topic == "approvals" and key == "acme:act-1"
    assert record == ApprovalDecision(tenant="acme", action_id="act-1", decision=Decision.APPROVE,
                                      approver="slack:U1", channel="slack", decided_at=NOW)
    [update] = env.slack.posts
    assert update["replace_original"] is True
    assert not [b for b in update["blocks"] if b["type"] == "actions"]
    assert "Approved by <@U1>" in json.dumps(update)
    assert env.rejections == []


def test_reject_button_publishes_a_rejection_decision(env: Env) -> None:
    assert post_slack(env, click_body(action_id=slack_messages.REJECT)).status_code == 200
    assert [d.decision for d in env.decisions()] == [Decision.REJECT]


def test_a_replayed_request_outside_the_window_is_refused_and_publishes_nothing(env: Env) -> None:
    response = post_slack(env, click_body(), at=NOW - timedelta(minutes=6))
    assert response.status_code == 401
    assert response.json()["reason"] == "stale"
    assert env.publisher.published == [] and env.slack.posts == []
    [rejection] = env.rejections
    assert rejection.tenant is None and rejection.channel == "slack"


def test_a_bad_signature_is_401(env: Env) -> None:
    response = post_slack(env, click_body(), secret="not-the-secret")
    assert response.status_code == 401 and response.json()["reason"] == "bad_signature"
    assert env.publisher.published == []


def test_the_same_request_twice_is_a_replay(env: Env) -> None:
    body = click_body()
    assert post_slack(env, body).status_code == 200
    again = post_slack(env, body)
    assert again.status_code == 409 and again.json()["reason"] == "replayed"
    assert len(env.publisher.published) == 1


def test_a_second_click_changes_nothing(env: Env) -> None:
    assert post_slack(env, click_body(user="U1")).status_code == 200
    env.clock.now += timedelta(seconds=3)
    second = post_slack(env, click_body(user="U2", action_id=slack_messages.REJECT))
    assert second.status_code == 409 and second.json()["reason"] == "already_decided"
    assert [d.decision for d in env.decisions()] == [Decision.APPROVE]
    # Once the worker recorded the approval, the view says so too.
    env.pending.see(action(state=ActionState.APPROVED))
    env.clock.now += timedelta(seconds=3)
    third = post_slack(env, click_body(user="U2"))
    assert third.status_code == 409 and "is approved" in third.json()["detail"]
    assert len(env.decisions()) == 1


def test_an_approver_of_another_tenant_cannot_decide(env: Env) -> None:
    response = post_slack(env, click_body(user="U9"))
    assert response.status_code == 403 and response.json()["reason"] == "wrong_tenant"
    assert env.publisher.published == []
    [rejection] = env.rejections
    assert rejection.tenant == "acme" and rejection.approver == "slack:U9"


def test_a_button_naming_another_tenant_is_refused(env: Env) -> None:
    response = post_slack(env, click_body(user="U9", value="other|act-1"))
    assert response.status_code == 403 and response.json()["reason"] == "wrong_tenant"
    assert env.publisher.published == []


def test_an_unknown_approver_is_refused_and_told_why(env: Env) -> None:
    response = post_slack(env, click_body(user="U404"))
    assert response.status_code == 403 and response.json()["reason"] == "unknown_approver"
    assert "slack:U404 is not an approver of tenant 'acme'" in response.json()["detail"]
    assert env.publisher.published == []
    [note] = env.slack.posts
    assert note["response_type"] == "ephemeral" and note["replace_original"] is False


def test_an_expired_action_cannot_be_approved(env: Env) -> None:
    env.clock.now = NOW + timedelta(minutes=31)
    response = post_slack(env, click_body())
    assert response.status_code == 410 and response.json()["reason"] == "expired"
    assert env.publisher.published == []


def test_an_unknown_action_is_404(env: Env) -> None:
    response = post_slack(env, click_body(value="acme|act-404"))
    assert response.status_code == 404 and response.json()["reason"] == "unknown_action"


def test_a_payload_that_is_not_our_button_is_400(env: Env) -> None:
    response = post_slack(env, click_body(action_id="somebody_elses_button"))
    assert response.status_code == 400 and response.json()["reason"] == "malformed"


def test_broker_down_is_503_and_the_click_can_be_repeated(env: Env) -> None:
    env.publisher.fail_next = 1
    first = post_slack(env, click_body())
    assert first.status_code == 503 and first.headers["retry-after"]
    env.clock.now += timedelta(seconds=2)
    assert post_slack(env, click_body()).status_code == 200
    assert len(env.decisions()) == 1


def test_a_response_url_outside_slack_is_not_called(env: Env) -> None:
    body = click_body().replace(b"hooks.slack.com", b"evil.example")
    assert post_slack(env, body).status_code == 200
    assert env.slack.posts == []


# --------------------------------------------------------------------------- links


def link(env: Env, tenant: str = "acme", action_id: str = "act-1") -> str:
    return f"/approvals/link/{env.signer.issue(tenant, action_id, now=env.clock.now)}"


def test_link_page_shows_what_will_run_without_using_the_link(env: Env) -> None:
    url = link(env)
    details = env.client.get(url, headers={"Accept": "application/json"})
    assert details.status_code == 200
    body = details.json()
    assert body["tenant"] == "acme" and body["name"] == "restart etcd member" and body["risk"] == "high"
    assert body["params"] == {"kind": "statefulset", "name": "etcd", "namespace": "kube-system"}
    assert body["expires_at"] == (NOW + timedelta(minutes=30)).isoformat() and body["open"] is True
    assert details.headers["cache-control"] == "no-store"
    page = env.client.get(url)
    assert page.headers["content-type"].startswith("text/html") and 'value="approve"' in page.text
    assert env.publisher.published == []
    assert env.client.post(url, data={"decision": "approve"}).status_code == 200  # still usable


def test_link_page_escapes_untrusted_text(env: Env) -> None:
    env.pending.see(action("act-x", params={"namespace": "<script>alert(1)</script>"}))
    page = env.client.get(link(env, action_id="act-x"))
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text


def test_link_post_decides_once(env: Env) -> None:
    url = link(env)
    response = env.client.post(url, json={"decision": "reject", "reason": "maintenance window"},
                               headers={"Accept": "application/json"})
    assert response.status_code == 200 and response.json()["decision"] == "reject"
    [decision] = env.decisions()
    assert decision.channel == "link" and decision.reason == "maintenance window"
    assert decision.approver.startswith("link:")
    again = env.client.post(url, json={"decision": "approve"})
    assert again.status_code == 409
    assert len(env.decisions()) == 1


def test_an_expired_link_is_refused(env: Env) -> None:
    url = link(env)
    env.clock.now += timedelta(minutes=31)
    response = env.client.post(url, data={"decision": "approve"})
    assert response.status_code == 410 and response.json()["reason"] == "expired"
    assert env.publisher.published == [] and len(env.rejections) == 1


def test_a_link_of_another_tenant_cannot_decide_this_tenants_action(env: Env) -> None:
    response = env.client.post(link(env, tenant="other"), data={"decision": "approve"})
    assert response.status_code == 403 and response.json()["reason"] == "wrong_tenant"
    assert env.publisher.published == []


def test_a_forged_link_is_401(env: Env) -> None:
    forged = LinkSigner(SecretStr("another-secret-that-is-32-bytes-long!")).issue("acme", "act-1", now=NOW)
    response = env.client.post(f"/approvals/link/{forged}", data={"decision": "approve"})
    assert response.status_code == 401 and env.publisher.published == []


def test_approval_links_cover_only_waiting_actions(env: Env) -> None:
    actions = [action(), action("act-2", state=ActionState.APPROVED)]
    links = approval_links(env.signer, "https://rcaflow.example/", actions, NOW)
    assert list(links) == ["act-1"]
    assert links["act-1"].startswith("https://rcaflow.example/approvals/link/v1.")


def test_with_an_identity_header_only_listed_approvers_decide() -> None:
    for env in make_env(identity_header="X-Forwarded-Email"):
        url = link(env)
        nobody = env.client.post(url, data={"decision": "approve"})
        assert nobody.status_code == 403 and nobody.json()["reason"] == "unknown_approver"
        mallory = env.client.post(url, data={"decision": "approve"}, headers={"X-Forwarded-Email": "mallory@x.io"})
        assert mallory.status_code == 403
        alice = env.client.post(url, data={"decision": "approve"},
                                headers={"X-Forwarded-Email": "alice@acme.example"})
        assert alice.status_code == 200
        assert [d.approver for d in env.decisions()] == ["link:alice@acme.example"]


# --------------------------------------------------------------------------- DingTalk


def post_dingtalk(env: Env, content: str, *, staff: str = "staff1", secret: str = DINGTALK_SECRET,
                  at: datetime | None = None) -> httpx.Response:
    ts = int((at or env.clock.now).timestamp() * 1000)
    body = {"msgtype": "text", "text": {"content": content}, "senderStaffId": staff, "senderNick": "Alice",
            "conversationId": "cid1"}
    return env.client.post("/approvals/dingtalk", json=body,
                           headers={"timestamp": str(ts), "sign": unquote_plus(dingtalk_sign(secret, ts))})


def test_a_dingtalk_reply_publishes_the_decision(env: Env) -> None:
    response = post_dingtalk(env, " 批准 act-1 看过监控了")
    assert response.status_code == 200, response.text
    assert response.json()["msgtype"] == "text"
    [decision] = env.decisions()
    assert (decision.decision, decision.approver, decision.channel, decision.reason) == (
        Decision.APPROVE, "dingtalk:staff1", "dingtalk", "看过监控了")


def test_a_dingtalk_reply_with_a_bad_sign_is_401(env: Env) -> None:
    response = post_dingtalk(env, "approve act-1", secret="wrong")
    assert response.status_code == 401 and env.publisher.published == []


def test_a_dingtalk_reply_from_a_stranger_is_refused(env: Env) -> None:
    response = post_dingtalk(env, "reject act-1", staff="stranger")
    assert response.status_code == 403 and response.json()["reason"] == "unknown_approver"


def test_a_dingtalk_message_that_is_not_a_command_is_400(env: Env) -> None:
    response = post_dingtalk(env, "hello robot")
    assert response.status_code == 400 and env.publisher.published == []


def test_only_configured_channels_are_mounted() -> None:
    app = FastAPI()
    app.include_router(build_approvals_router(config=ApprovalsConfig(approvers={}), pending=InMemoryPendingActions(),
                                              publisher=MemoryPublisher()))
    with TestClient(app) as client:
        assert client.post("/approvals/slack", content=b"").status_code == 404


def test_the_pending_view_never_moves_an_action_back_to_waiting() -> None:
    pending = InMemoryPendingActions()
    pending.see(action(state=ActionState.APPROVED))
    pending.see(action())  # an older record re-read after a restart
    got = pending.get("act-1")
    assert isinstance(got, ActionEvent) and got.state is ActionState.APPROVED


def test_a_click_on_the_details_link_button_is_acknowledged_and_decides_nothing(env: Env) -> None:
    response = post_slack(env, click_body(action_id=slack_messages.OPEN))
    assert response.status_code == 200
    assert env.publisher.published == [] and env.rejections == [] and env.slack.posts == []
