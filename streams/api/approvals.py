"""HTTP callbacks that turn a click or a reply into an ``ApprovalDecision`` on the approvals topic.

Order of checks, everywhere: who sent it (signature, freshness) → what it is
about (the action, its tenant) → may this person decide for that tenant →
is the action still waiting → claim it (single use) → publish → tell the
channel. A refusal at any step publishes nothing, answers a clear 4xx with a
``reason``, and hands a :class:`Rejection` to ``on_rejection`` for the audit.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
from fastapi import APIRouter, BackgroundTasks, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import SecretStr

from executors.approvals import (
    LinkClaims,
    LinkSigner,
    SignatureError,
    SignatureFailure,
    verify_dingtalk_callback,
    verify_slack_signature,
)
from executors.notify import NotifyError
from executors.notify import slack as slack_messages
from producers.publisher import Publisher, PublishError
from schemas.records import ActionEvent, ActionState, ApprovalDecision, Decision
from schemas.topics import APPROVALS
from streams.api.actions_view import PendingActions
from streams.api.claims import ClaimStore, InMemoryClaims
from streams.api.errors import RefusedError
from streams.stages.approval import Rejection, RejectionReason, is_expired

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
RETRY_AFTER_S = "5"
_SLACK_USER = re.compile(r"^[A-Z0-9]{2,32}$")
_DINGTALK_USER = re.compile(r"^[A-Za-z0-9_$-]{1,64}$")
_IDENTITY = re.compile(r"^[A-Za-z0-9._@+-]{1,128}$")
_ACTION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DINGTALK_COMMAND = re.compile(
    r"^\s*(approve|reject|批准|同意|拒绝|驳回)\s+([A-Za-z0-9._:-]{1,200})(?:\s+(.*))?$", re.IGNORECASE | re.DOTALL
)
_WORDS = {"approve": Decision.APPROVE, "批准": Decision.APPROVE, "同意": Decision.APPROVE,
          "reject": Decision.REJECT, "拒绝": Decision.REJECT, "驳回": Decision.REJECT}
_SIGNATURE_REASONS = {
    SignatureFailure.STALE: RejectionReason.STALE,
    SignatureFailure.EXPIRED: RejectionReason.EXPIRED,
    SignatureFailure.REPLAYED: RejectionReason.REPLAYED,
    SignatureFailure.WRONG_TENANT: RejectionReason.WRONG_TENANT,
}
#: The confirm page carries a live credential in its URL: no caching, no referrer, no scripts.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class ApprovalsConfig:
    """What the approval endpoints need; built from Settings by the composition root.

    ``approvers`` maps a tenant to the identities that may decide its actions:
    ``slack:<user id>``, ``dingtalk:<staff id>``, ``link:<identity>`` (the value of
    ``link_identity_header``, set by an authenticating proxy in front of the API).
    Without ``link_identity_header`` a link is a bearer credential: whoever holds it decides.
    A channel without its secret is not mounted.
    """

    approvers: Mapping[str, frozenset[str]]
    slack_signing_secret: SecretStr | None = None
    dingtalk_app_secret: SecretStr | None = None
    link_signer: LinkSigner | None = None
    link_identity_header: str | None = None
    slack_response_hosts: frozenset[str] = slack_messages.RESPONSE_HOSTS
    #: Slack wants an answer within 3 s: the publish gets 2 s, then the click is refused with 503.
    publish_timeout_s: float = 2.0
    #: How long a decision stays claimed for actions without ``expires_at``.
    decision_memory: timedelta = timedelta(days=1)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Approvals:
    """The shared steps; the route functions only parse their channel's request."""

    def __init__(
        self,
        config: ApprovalsConfig,
        pending: PendingActions,
        publisher: Publisher,
        claims: ClaimStore,
        http: httpx.AsyncClient | None,
        on_rejection: Callable[[Rejection], Awaitable[None]] | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.config = config
        self.pending = pending
        self.publisher = publisher
        self.claims = claims
        self.http = http
        self.on_rejection = on_rejection
        self.clock = clock

    def refuse(self, reason: RejectionReason, message: str, channel: str, *, tenant: str | None = None,
               action_id: str | None = None, approver: str | None = None) -> RefusedError:
        return RefusedError(Rejection(reason=reason, message=message, channel=channel, at=self.clock(),
                                 tenant=tenant, action_id=action_id, approver=approver))

    def signature_refusal(self, exc: SignatureError, channel: str) -> RefusedError:
        reason = _SIGNATURE_REASONS.get(exc.reason, RejectionReason.BAD_SIGNATURE)
        return self.refuse(reason, f"{channel}: {exc.message}", channel)

    async def answer(self, refused: RefusedError) -> JSONResponse:
        rejection = refused.rejection
        logger.warning("approval refused (%s via %s): %s", rejection.reason.value, rejection.channel,
                       rejection.message, extra={"tenant": rejection.tenant, "action_id": rejection.action_id})
        if self.on_rejection is not None:
            await self.on_rejection(rejection)
        return JSONResponse({"detail": rejection.message, "reason": rejection.reason.value},
                            status_code=rejection.http_status)

    def once(self, key: str, *, expires_at: datetime, channel: str) -> None:
        """Refuse a request seen before (same signature inside its freshness window)."""
        if not self.claims.claim(key, expires_at=expires_at, now=self.clock()):
            raise self.refuse(RejectionReason.REPLAYED, f"{channel}: this request was already received", channel)

    def action(self, action_id: str, channel: str, *, tenant: str | None, approver: str | None) -> ActionEvent:
        action = self.pending.get(action_id)
        if action is None:
            raise self.refuse(RejectionReason.UNKNOWN_ACTION, f"no pending action {action_id!r}", channel,
                              action_id=action_id, approver=approver)
        if tenant is not None and tenant != action.tenant:
            raise self.refuse(RejectionReason.WRONG_TENANT,
                              f"action {action_id} belongs to another tenant than the one named in the request",
                              channel, tenant=action.tenant, action_id=action_id, approver=approver)
        return action

    def check_approver(self, action: ActionEvent, approver: str, channel: str) -> None:
        if approver in self.config.approvers.get(action.tenant, frozenset()):
            return
        others = any(approver in people for t, people in self.config.approvers.items() if t != action.tenant)
        reason = RejectionReason.WRONG_TENANT if others else RejectionReason.UNKNOWN_APPROVER
        text = (f"{approver} approves for another tenant, not for {action.tenant!r}" if others
                else f"{approver} is not an approver of tenant {action.tenant!r}")
        raise self.refuse(reason, text, channel, tenant=action.tenant, action_id=action.action_id,
                          approver=approver)

    def check_open(self, action: ActionEvent, channel: str, approver: str | None) -> None:
        now = self.clock()
        if action.state is not ActionState.AWAITING_APPROVAL:
            raise self.refuse(RejectionReason.ALREADY_DECIDED,
                              f"action {action.action_id} is {action.state.value}, not awaiting approval",
                              channel, tenant=action.tenant, action_id=action.action_id, approver=approver)
        if is_expired(action, now):
            assert action.expires_at is not None
            raise self.refuse(RejectionReason.EXPIRED,
                              f"the approval window of action {action.action_id} closed at "
                              f"{action.expires_at.isoformat()}",
                              channel, tenant=action.tenant, action_id=action.action_id, approver=approver)

    async def decide(self, action: ActionEvent, decision: Decision, approver: str, channel: str,
                     reason: str = "", *, release: Sequence[str] = ()) -> ApprovalDecision:
        """Claim the action's single decision, publish it, and give the claim back if the broker fails."""
        now = self.clock()
        key = f"decision|{action.tenant}|{action.action_id}"
        until = action.expires_at or now + self.config.decision_memory
        if not self.claims.claim(key, expires_at=max(until, now + timedelta(minutes=5)), now=now):
            raise self.refuse(RejectionReason.ALREADY_DECIDED, f"action {action.action_id} was already decided",
                              channel, tenant=action.tenant, action_id=action.action_id, approver=approver)
        record = ApprovalDecision(tenant=action.tenant, action_id=action.action_id, decision=decision,
                                  approver=approver, channel=channel, decided_at=now, reason=reason)
        try:
            async with asyncio.timeout(self.config.publish_timeout_s):
                await self.publisher.publish(APPROVALS, f"{action.tenant}:{action.action_id}", record)
        except (PublishError, TimeoutError) as exc:
            for k in (key, *release):
                self.claims.release(k)
            logger.warning("approval of %s not published: %s", action.action_id, exc)
            raise HTTPException(503, "broker unavailable; the decision was not recorded, try again",
                                headers={"Retry-After": RETRY_AFTER_S}) from exc
        logger.info("approval decided: %s %s by %s via %s", action.action_id, decision.value, approver, channel,
                    extra={"tenant": action.tenant, "action_id": action.action_id})
        return record

    async def slack_respond(self, response_url: str | None, body: Mapping[str, Any]) -> None:
        """Best effort, after the HTTP answer: the decision is already on the topic."""
        if not response_url or self.http is None:
            return
        try:
            await slack_messages.respond(self.http, response_url, body, allowed_hosts=self.config.slack_response_hosts)
        except NotifyError as exc:
            logger.warning("slack response_url update failed: %s", exc)


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise HTTPException(413, f"request body over {MAX_BODY_BYTES} bytes")
    return body


def _form(body: bytes) -> dict[str, str]:
    try:
        parsed = parse_qs(body.decode("utf-8"), max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v[0] for k, v in parsed.items() if v}


def _clean_reason(text: object) -> str:
    return _CONTROL.sub(" ", text)[:500].strip() if isinstance(text, str) else ""


@dataclass(frozen=True)
class _SlackClick:
    decision: Decision
    tenant: str
    action_id: str
    user: str
    response_url: str | None
    blocks: list[dict[str, Any]]


def _parse_slack(body: bytes) -> _SlackClick | str | None:
    """The block_actions fields we use; ``"open"`` for our Details link button (nothing to decide);
    None when this is not a click on one of our buttons."""
    try:
        payload = json.loads(_form(body).get("payload", ""))
    except ValueError:
        return None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        return None
    clicked = payload.get("actions")
    user = payload.get("user")
    if not (isinstance(clicked, list) and clicked and isinstance(clicked[0], dict) and isinstance(user, dict)):
        return None
    first = clicked[0]
    if first.get("action_id") == slack_messages.OPEN:
        return "open"
    decision = {slack_messages.APPROVE: Decision.APPROVE, slack_messages.REJECT: Decision.REJECT}.get(
        first.get("action_id", ""))
    tenant, _, action_id = str(first.get("value", "")).partition("|")
    user_id = str(user.get("id", ""))
    if decision is None or not tenant or not _ACTION_ID.fullmatch(action_id) or not _SLACK_USER.fullmatch(user_id):
        return None
    message = payload.get("message")
    blocks = message.get("blocks") if isinstance(message, dict) else None
    response_url = payload.get("response_url")
    return _SlackClick(decision, tenant, action_id, user_id,
                       response_url if isinstance(response_url, str) else None,
                       [b for b in blocks if isinstance(b, dict)] if isinstance(blocks, list) else [])


def _details(action: ActionEvent, claims: LinkClaims) -> dict[str, Any]:
    expires = [t for t in (action.expires_at, claims.expires_at) if t is not None]
    return {
        "tenant": action.tenant, "action_id": action.action_id, "incident_id": action.incident_id,
        "alert_class": action.alert_class, "name": action.name, "tool": action.tool,
        "operation": action.operation, "params": dict(sorted(action.params.items())), "risk": action.risk.value,
        "state": action.state.value, "dry_run": action.dry_run, "reason": action.reason,
        "expires_at": min(expires).isoformat() if expires else None,
    }


def _page(title: str, details: Mapping[str, Any], *, form: bool) -> str:
    def cell(value: Any) -> str:
        return html.escape(json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else str(value))

    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{cell(v)}</td></tr>" for k, v in details.items())
    buttons = (
        '<form method="post"><input type="hidden" name="decision" value="approve">'
        '<label>Reason <input name="reason" maxlength="500"></label> <button>Approve</button></form>'
        '<form method="post"><input type="hidden" name="decision" value="reject">'
        '<label>Reason <input name="reason" maxlength="500"></label> <button>Reject</button></form>'
        if form else ""
    )
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1><table>{rows}</table>{buttons}</body></html>")


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def build_approvals_router(
    *,
    config: ApprovalsConfig,
    pending: PendingActions,
    publisher: Publisher,
    claims: ClaimStore | None = None,
    http: httpx.AsyncClient | None = None,
    on_rejection: Callable[[Rejection], Awaitable[None]] | None = None,
    clock: Callable[[], datetime] = _utcnow,
) -> APIRouter:
    """Routes for the configured channels: POST /approvals/slack, POST /approvals/dingtalk,
    GET+POST /approvals/link/{token}.

    ``http`` posts Slack response_url updates (none without it). ``claims`` keeps decisions,
    request signatures and link nonces single-use; the default serves one replica only.
    """
    core = _Approvals(config, pending, publisher, claims or InMemoryClaims(), http, on_rejection, clock)
    router = APIRouter(prefix="/approvals", tags=["approvals"])

    if config.slack_signing_secret is not None:
        secret = config.slack_signing_secret

        @router.post("/slack")
        async def slack(request: Request, background: BackgroundTasks) -> Response:
            """Slack block_actions: verify, decide once, then replace the buttons via response_url."""
            click: _SlackClick | None = None
            try:
                body = await _body(request)
                timestamp = request.headers.get("x-slack-request-timestamp")
                signature = request.headers.get("x-slack-signature")
                try:
                    verify_slack_signature(signing_secret=secret, timestamp=timestamp, signature=signature,
                                           body=body, now=core.clock().timestamp())
                except SignatureError as exc:
                    raise core.signature_refusal(exc, "slack") from exc
                assert timestamp is not None and signature is not None
                parsed = _parse_slack(body)
                if parsed == "open":
                    return JSONResponse({"ok": True})
                if not isinstance(parsed, _SlackClick):
                    raise core.refuse(RejectionReason.MALFORMED, "slack: not a click on an rcaflow approval button",
                                      "slack")
                click = parsed
                core.once(f"slack-request:{signature}", channel="slack",
                          expires_at=datetime.fromtimestamp(int(timestamp) + 600, UTC))
                approver = f"slack:{click.user}"
                action = core.action(click.action_id, "slack", tenant=click.tenant, approver=approver)
                core.check_approver(action, approver, "slack")
                core.check_open(action, "slack", approver)
                record = await core.decide(action, click.decision, approver, "slack")
            except RefusedError as refused:
                if click is not None and refused.rejection.reason is not RejectionReason.REPLAYED:
                    background.add_task(core.slack_respond, click.response_url,
                                        slack_messages.ephemeral(f"Not recorded: {refused.rejection.message}"))
                response = await core.answer(refused)
                response.background = background
                return response
            background.add_task(core.slack_respond, click.response_url,
                                slack_messages.mark_decided(click.blocks, action, record))
            return JSONResponse({"ok": True, "action_id": action.action_id, "decision": record.decision.value},
                                background=background)

    if config.dingtalk_app_secret is not None:
        app_secret = config.dingtalk_app_secret

        @router.post("/dingtalk")
        async def dingtalk(request: Request) -> Response:
            """DingTalk robot callback: an @-reply "approve <action id> [reason]" (or 批准/同意/拒绝/驳回)."""
            try:
                body = await _body(request)
                timestamp, sign = request.headers.get("timestamp"), request.headers.get("sign")
                try:
                    verify_dingtalk_callback(app_secret=app_secret, timestamp=timestamp, sign=sign,
                                             now_ms=int(core.clock().timestamp() * 1000))
                except SignatureError as exc:
                    raise core.signature_refusal(exc, "dingtalk") from exc
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = None
                text = payload.get("text") if isinstance(payload, dict) else None
                content = text.get("content") if isinstance(text, dict) else None
                staff = str(payload.get("senderStaffId", "")) if isinstance(payload, dict) else ""
                match = _DINGTALK_COMMAND.match(content) if isinstance(content, str) else None
                if match is None or not _DINGTALK_USER.fullmatch(staff):
                    raise core.refuse(RejectionReason.MALFORMED,
                                      'dingtalk: expected "approve <action id> [reason]" from a known staff member',
                                      "dingtalk")
                core.once(f"dingtalk-request:{timestamp}:{sign}", channel="dingtalk",
                          expires_at=core.clock() + timedelta(hours=2))
                approver = f"dingtalk:{staff}"
                action = core.action(match.group(2), "dingtalk", tenant=None, approver=approver)
                core.check_approver(action, approver, "dingtalk")
                core.check_open(action, "dingtalk", approver)
                record = await core.decide(action, _WORDS[match.group(1).lower()], approver, "dingtalk",
                                           _clean_reason(match.group(3)))
            except RefusedError as refused:
                return await core.answer(refused)
            verb = "已批准 approved" if record.decision is Decision.APPROVE else "已拒绝 rejected"
            return JSONResponse({"msgtype": "text", "text": {"content": f"{verb}: {action.name} ({action.action_id})"}})

    if config.link_signer is not None:
        signer = config.link_signer

        def read(token: str) -> LinkClaims:
            try:
                return signer.read(token, now=core.clock())
            except SignatureError as exc:
                raise core.signature_refusal(exc, "link") from exc

        @router.get("/link/{token}")
        async def show_link(token: str, request: Request) -> Response:
            """What the link would decide; never consumes it and never audits (link previews GET too)."""
            try:
                claims = read(token)
                action = core.action(claims.action_id, "link", tenant=claims.tenant, approver=None)
            except RefusedError as refused:
                r = refused.rejection
                return JSONResponse({"detail": r.message, "reason": r.reason.value}, status_code=r.http_status)
            details = _details(action, claims)
            open_ = action.state is ActionState.AWAITING_APPROVAL and not is_expired(action, core.clock())
            if _wants_json(request):
                return JSONResponse({**details, "open": open_}, headers=_PAGE_HEADERS)
            title = f"Approve {action.name}?" if open_ else f"{action.name}: {action.state.value}"
            return HTMLResponse(_page(title, details, form=open_), headers=_PAGE_HEADERS)

        @router.post("/link/{token}")
        async def use_link(token: str, request: Request) -> Response:
            """Decide with the link (form or JSON ``{"decision": "approve"|"reject", "reason": ...}``)."""
            try:
                body = await _body(request)
                fields: Any
                if request.headers.get("content-type", "").startswith("application/json"):
                    try:
                        fields = json.loads(body)
                    except ValueError:
                        fields = None
                else:
                    fields = _form(body)
                choice = fields.get("decision") if isinstance(fields, dict) else None
                if choice not in ("approve", "reject"):
                    raise core.refuse(RejectionReason.MALFORMED, 'link: "decision" must be approve or reject', "link")
                claims = read(token)
                approver = f"link:{claims.nonce[:8]}"
                if config.link_identity_header:
                    identity = request.headers.get(config.link_identity_header, "")
                    if not _IDENTITY.fullmatch(identity):
                        raise core.refuse(RejectionReason.UNKNOWN_APPROVER,
                                          "link: the request carries no approver identity", "link",
                                          tenant=claims.tenant, action_id=claims.action_id)
                    approver = f"link:{identity}"
                action = core.action(claims.action_id, "link", tenant=claims.tenant, approver=approver)
                if config.link_identity_header:
                    core.check_approver(action, approver, "link")
                core.check_open(action, "link", approver)
                try:
                    signer.redeem(token, now=core.clock(), store=core.claims, tenant=action.tenant)
                except SignatureError as exc:
                    raise core.signature_refusal(exc, "link") from exc
                record = await core.decide(action, Decision(choice), approver, "link",
                                           _clean_reason(fields.get("reason")), release=(claims.nonce,))
            except RefusedError as refused:
                return await core.answer(refused)
            result = {"ok": True, "action_id": action.action_id, "decision": record.decision.value}
            if _wants_json(request):
                return JSONResponse(result, headers=_PAGE_HEADERS)
            verb = "Approved" if record.decision is Decision.APPROVE else "Rejected"
            return HTMLResponse(_page(f"{verb}: {action.name}", {"action_id": action.action_id,
                                                                  "tenant": action.tenant}, form=False),
                                headers=_PAGE_HEADERS)

    return router
