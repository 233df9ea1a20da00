"""One API replica's approval endpoints with stand-ins for Slack's response_url and DingTalk, for the router tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from executors.approvals import slack_signature
from executors.approvals.dingtalk_event import DingTalkCallbackKeys
from executors.notify import slack as slack_messages
from schemas.records import ApprovalDecision
from streams.api.actions_view import InMemoryPendingActions
from streams.api.approvals import ApprovalsConfig, build_approvals_router
from streams.api.claims import SharedClaims
from streams.notify.links import ApprovalLinkSigner
from streams.stages.approval import Rejection
from tests.support.approval_keys import APPROVAL_KEYS
from tests.support.dingtalk import DingTalkStandIn, new_aes_key
from tests.unit.streams.approval_helpers import NOW, MemoryPublisher, action, rca

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
LINK_SECRET = SecretStr("a-link-signing-secret-of-at-least-32-bytes")
DINGTALK = DingTalkStandIn(token="callback-token-1", aes_key=new_aes_key(), owner_key="dingappkey0001")
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
    signer: ApprovalLinkSigner
    claims: SharedClaims

    def decisions(self) -> list[ApprovalDecision]:
        return [r for _, _, r in self.publisher.published if isinstance(r, ApprovalDecision)]


def make_env(identity_header: str | None = None, *, anonymous: frozenset[str] = frozenset(),
             publisher: MemoryPublisher | None = None) -> Iterator[Env]:
    """One API replica; ``anonymous``: action names the policy marks ``anonymous_approval: true``."""
    publisher = publisher or MemoryPublisher()
    pending, slack, clock = InMemoryPendingActions(), SlackResponseStandIn(), Clock()
    rejections: list[Rejection] = []

    async def record(rejection: Rejection) -> None:
        rejections.append(rejection)

    signer = ApprovalLinkSigner(LINK_SECRET)
    config = ApprovalsConfig(
        approvers={"acme": frozenset({"slack:U1", "slack:U2", "dingtalk:staff1", "link:alice@acme.example",
                                      "link:carol@acme.example"}),
                   "other": frozenset({"slack:U9", "dingtalk:staff9", "link:mallory@other.example"})},
        approval_keys=APPROVAL_KEYS,
        slack_signing_secret=SecretStr(SLACK_SECRET),
        dingtalk_callback=DingTalkCallbackKeys(token=SecretStr(DINGTALK.token), aes_key=SecretStr(DINGTALK.aes_key),
                                               owner_key=DINGTALK.owner_key),
        link_signer=signer,
        link_identity_header=identity_header,
        anonymous_approval=lambda a: a.name in anonymous,
    )
    claims = SharedClaims(keys=APPROVAL_KEYS)  # as `rcaflow api` builds it: only signed decisions count
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=slack.app()))
    app = FastAPI()
    app.include_router(build_approvals_router(config=config, pending=pending, publisher=publisher, claims=claims,
                                              http=http, on_rejection=record, clock=clock))
    pending.see(action())
    pending.see(action("act-other", tenant="other"))
    with TestClient(app) as client:
        yield Env(client, publisher, pending, slack, rejections, clock, signer, claims)


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




def link(env: Env, tenant: str = "acme", action_id: str = "act-1", *, approver: str | None = "alice@acme.example",
         nonce: str | None = None) -> str:
    """A link as the notification sends it: by default the one addressed to alice."""
    return f"/approvals/link/{env.signer.issue(tenant, action_id, now=env.clock.now, approver=approver, nonce=nonce)}"
