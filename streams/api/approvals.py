"""HTTP callbacks that turn a click or a reply into an ``ApprovalDecision`` on the approvals topic.

Order of checks, everywhere: who sent it (signature, freshness) → what it is
about (the action, its tenant) → may this person decide for that tenant →
is the action still waiting → claim it (single use) → publish → tell the
channel. A refusal at any step publishes nothing, answers a clear 4xx with a
``reason``, and hands a :class:`Rejection` to ``on_rejection`` for the audit.

Every credential (Slack request, DingTalk callback, link nonce) is spent once across replicas:
its digest travels on the decision (``claim_id``) and the approvals topic is the shared memory
(:mod:`streams.api.claims`). Every decision is signed with the approval key before it is published
(:class:`policies.decision_signature.ApprovalKeys`): the worker applies nothing else, so writing to the
approvals topic is not enough to approve.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
from fastapi import APIRouter, BackgroundTasks, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import SecretStr

from executors.approvals import SignatureError, SignatureFailure, verify_slack_signature
from executors.approvals.dingtalk_event import TOLERANCE_MS, DingTalkCallbackKeys, open_callback, seal_reply
from executors.notify import NotifyError
from executors.notify import slack as slack_messages
from policies import PolicySet
from policies.decision_signature import ApprovalKeys
from producers.publisher import Publisher, PublishError
from schemas.records import ActionEvent, ActionState, ApprovalDecision, Decision, Risk
from schemas.topics import APPROVALS
from streams.api.actions_view import PendingActions
from streams.api.claims import ClaimStore, InMemoryClaims, claim_digest, decision_key, request_key
from streams.api.errors import RefusedError
from streams.notify.links import ANONYMOUS, LINK_IDENTITY, ApprovalLink, ApprovalLinkSigner
from streams.settings import ApprovalSettings
from streams.stages.approval import Rejection, RejectionReason, is_expired

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
RETRY_AFTER_S = "5"
_SLACK_USER = re.compile(r"^[A-Z0-9]{2,32}$")
_DINGTALK_USER = re.compile(r"^[A-Za-z0-9_$-]{1,64}$")
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


def _never(_action: ActionEvent) -> bool:
    return False


@dataclass(frozen=True)
class ApprovalsConfig:
    """What the approval endpoints need; built from Settings by the composition root.

    ``approvers`` maps a tenant to the identities that may decide its actions:
    ``slack:<user id>``, ``dingtalk:<staff id>``, ``link:<identity>`` (the identity a
    per-approver link was sent to, or the value of ``link_identity_header``, set by an
    authenticating proxy in front of the API). A link that names nobody decides only actions
    for which ``anonymous_approval`` (the policy's ``anonymous_approval: true``) says yes.
    DingTalk decisions come only through the encrypted event callback (``dingtalk_callback``).
    A channel without its secret is not mounted. ``approval_keys`` signs every decision this API publishes
    (the worker's copy of the key verifies it).
    """

    approvers: Mapping[str, frozenset[str]]
    approval_keys: ApprovalKeys
    slack_signing_secret: SecretStr | None = None
    dingtalk_callback: DingTalkCallbackKeys | None = None
    link_signer: ApprovalLinkSigner | None = None
    link_identity_header: str | None = None
    anonymous_approval: Callable[[ActionEvent], bool] = _never
    slack_response_hosts: frozenset[str] = slack_messages.RESPONSE_HOSTS
    #: Slack wants an answer within 3 s: the publish gets 2 s, then the click is refused with 503.
    publish_timeout_s: float = 2.0
    #: How long a decision stays claimed for actions without ``expires_at``.
    decision_memory: timedelta = timedelta(days=1)


def approvals_config(settings: ApprovalSettings, policies: PolicySet, keys: ApprovalKeys) -> ApprovalsConfig:
    """The router's configuration from the ``approvals`` settings, the policy (for ``anonymous_approval``) and the
    approval keys (``security.approval_key``)."""
    callback = None
    if settings.dingtalk_callback_token and settings.dingtalk_aes_key and settings.dingtalk_owner_key:
        callback = DingTalkCallbackKeys(token=settings.dingtalk_callback_token, aes_key=settings.dingtalk_aes_key,
                                        owner_key=settings.dingtalk_owner_key)
    signer = (ApprovalLinkSigner(settings.link_secret, ttl=timedelta(minutes=settings.link_ttl_minutes))
              if settings.link_secret else None)

    def anonymous_approval(action: ActionEvent) -> bool:
        # The action's risk as decided (an etcd/Prometheus restart is always high) wins over the flag.
        return action.risk is not Risk.HIGH and policies.allows_anonymous_approval(action.alert_class, action.name)

    return ApprovalsConfig(
        approvers={tenant: frozenset(ids) for tenant, ids in settings.approvers.items()}, approval_keys=keys,
        slack_signing_secret=settings.slack_signing_secret, dingtalk_callback=callback, link_signer=signer,
        link_identity_header=settings.link_identity_header, anonymous_approval=anonymous_approval,
    )


def claims_memory(settings: ApprovalSettings) -> timedelta:
    """How long the shared claims remember a spent credential: longer than any of them stays valid."""
    return max(timedelta(days=2), timedelta(minutes=settings.link_ttl_minutes) + timedelta(hours=1))


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

    def once(self, claim_id: str, *, expires_at: datetime, channel: str, tenant: str | None = None,
             action_id: str | None = None, approver: str | None = None) -> None:
        """Refuse a credential spent before, on this replica or (via the approvals topic) on any other."""
        if not self.claims.claim(request_key(claim_id), expires_at=expires_at, now=self.clock()):
            raise self.refuse(RejectionReason.REPLAYED, f"{channel}: this request was already used", channel,
                              tenant=tenant, action_id=action_id, approver=approver)

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
        if action.state is ActionState.WITHDRAWN:
            raise self.refuse(RejectionReason.WITHDRAWN,
                              f"action {action.action_id} was withdrawn because its incident resolved: "
                              f"{action.result or 'withdrawn'}",
                              channel, tenant=action.tenant, action_id=action.action_id, approver=approver)
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
                     reason: str = "", *, claim_id: str = "") -> ApprovalDecision:
        """Claim the action's single decision, publish it, and give the claims back if the broker fails."""
        now = self.clock()
        key = decision_key(action.tenant, action.action_id)
        until = action.expires_at or now + self.config.decision_memory
        if not self.claims.claim(key, expires_at=max(until, now + timedelta(minutes=5)), now=now):
            raise self.refuse(RejectionReason.ALREADY_DECIDED, f"action {action.action_id} was already decided",
                              channel, tenant=action.tenant, action_id=action.action_id, approver=approver)
        # Signed: the worker applies only decisions the API verified, not whatever lands on the topic.
        record = self.config.approval_keys.sign(ApprovalDecision(
            tenant=action.tenant, action_id=action.action_id, decision=decision, approver=approver,
            channel=channel, decided_at=now, reason=reason, claim_id=claim_id))
        try:
            async with asyncio.timeout(self.config.publish_timeout_s):
                await self.publisher.publish(APPROVALS, f"{action.tenant}:{action.action_id}", record)
        except (PublishError, TimeoutError) as exc:
            for k in (key, *([request_key(claim_id)] if claim_id else [])):
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


#: The shared steps, for the API's own decision route (``streams.api.incidents_routes``: POST /actions/{id}/approve).
ApprovalSteps = _Approvals


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


def _details(action: ActionEvent, link: ApprovalLink) -> dict[str, Any]:
    expires = [t for t in (action.expires_at, link.expires_at) if t is not None]
    return {
        "tenant": action.tenant, "action_id": action.action_id, "incident_id": action.incident_id,
        "alert_class": action.alert_class, "name": action.name, "tool": action.tool,
        "operation": action.operation, "params": dict(sorted(action.params.items())), "risk": action.risk.value,
        "state": action.outcome, "dry_run": action.dry_run, "reason": action.reason,
        "expires_at": min(expires).isoformat() if expires else None,
        "for": f"link:{link.approver}" if link.approver else "anyone holding the link",
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
    request signatures and link nonces single-use; pass a :class:`~streams.api.claims.SharedClaims`
    fed by an :class:`~streams.api.claims.ApprovalsFeed` when there are several replicas (the default
    remembers only what this replica saw).
    """
    core = _Approvals(config, pending, publisher, claims or InMemoryClaims(), http, on_rejection, clock)
    router = APIRouter(prefix="/approvals", tags=["approvals"])

    if config.slack_signing_secret is not None:
        _slack_route(router, core, config.slack_signing_secret)
    if config.dingtalk_callback is not None:
        _dingtalk_route(router, core, config.dingtalk_callback)
    if config.link_signer is not None:
        _link_routes(router, core, config.link_signer)
    return router


def _slack_route(router: APIRouter, core: _Approvals, secret: SecretStr) -> None:
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
            claim_id = claim_digest("slack", timestamp, signature)
            core.once(claim_id, channel="slack", expires_at=datetime.fromtimestamp(int(timestamp) + 600, UTC))
            approver = f"slack:{click.user}"
            action = core.action(click.action_id, "slack", tenant=click.tenant, approver=approver)
            core.check_approver(action, approver, "slack")
            core.check_open(action, "slack", approver)
            record = await core.decide(action, click.decision, approver, "slack", claim_id=claim_id)
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


def _first(request: Request, *names: str) -> str | None:
    for name in names:
        value = request.query_params.get(name)
        if value is not None:
            return value
    return None


def _dingtalk_route(router: APIRouter, core: _Approvals, keys: DingTalkCallbackKeys) -> None:
    @router.post("/dingtalk")
    async def dingtalk(request: Request) -> Response:
        """DingTalk encrypted event callback carrying "approve <action id> [reason]" (or 批准/同意/拒绝/驳回).

        Only this channel is accepted: the robot's timestamp ``sign`` authenticates no payload.
        """
        try:
            body = await _body(request)
            try:
                envelope = json.loads(body)
            except ValueError:
                envelope = None
            encrypt = envelope.get("encrypt") if isinstance(envelope, dict) else None
            timestamp = _first(request, "timestamp", "timeStamp")
            nonce = _first(request, "nonce")
            try:
                plain = open_callback(keys, msg_signature=_first(request, "msg_signature", "signature"),
                                      timestamp=timestamp, nonce=nonce,
                                      encrypt=encrypt if isinstance(encrypt, str) else None,
                                      now_ms=int(core.clock().timestamp() * 1000))
            except SignatureError as exc:
                raise core.signature_refusal(exc, "dingtalk") from exc
            assert timestamp is not None and nonce is not None and isinstance(encrypt, str)
            try:
                event = json.loads(plain)
            except ValueError:
                event = None
            if isinstance(event, dict) and event.get("EventType") == "check_url":
                return JSONResponse(seal_reply(keys, "success", timestamp=str(int(core.clock().timestamp() * 1000))))
            text = event.get("text") if isinstance(event, dict) else None
            content = text.get("content") if isinstance(text, dict) else None
            staff = str(event.get("senderStaffId", "")) if isinstance(event, dict) else ""
            match = _DINGTALK_COMMAND.match(content) if isinstance(content, str) else None
            if match is None or not _DINGTALK_USER.fullmatch(staff):
                raise core.refuse(RejectionReason.MALFORMED,
                                  'dingtalk: expected "approve <action id> [reason]" from a known staff member',
                                  "dingtalk")
            approver = f"dingtalk:{staff}"
            claim_id = claim_digest("dingtalk", timestamp, nonce, encrypt)
            # Kept past the freshness window: after it the callback is refused as stale before this is asked.
            core.once(claim_id, channel="dingtalk", approver=approver,
                      expires_at=datetime.fromtimestamp(int(timestamp) / 1000, UTC)
                      + timedelta(milliseconds=2 * TOLERANCE_MS))
            action = core.action(match.group(2), "dingtalk", tenant=None, approver=approver)
            core.check_approver(action, approver, "dingtalk")
            core.check_open(action, "dingtalk", approver)
            await core.decide(action, _WORDS[match.group(1).lower()], approver, "dingtalk",
                              _clean_reason(match.group(3)), claim_id=claim_id)
        except RefusedError as refused:
            return await core.answer(refused)
        return JSONResponse(seal_reply(keys, "success", timestamp=str(int(core.clock().timestamp() * 1000))))


def _link_routes(router: APIRouter, core: _Approvals, signer: ApprovalLinkSigner) -> None:
    config = core.config

    def read(token: str) -> ApprovalLink:
        try:
            return signer.read(token, now=core.clock())
        except SignatureError as exc:
            raise core.signature_refusal(exc, "link") from exc

    def approver_of(link: ApprovalLink, request: Request) -> str | None:
        """Who decides: the SSO proxy's identity header, else the identity the link was sent to; None: nobody."""
        if not config.link_identity_header:
            return f"link:{link.approver}" if link.approver else None
        identity = request.headers.get(config.link_identity_header, "")
        if not LINK_IDENTITY.fullmatch(identity):
            raise core.refuse(RejectionReason.UNKNOWN_APPROVER, "link: the request carries no approver identity",
                              "link", tenant=link.tenant, action_id=link.action_id)
        if link.approver and identity != link.approver:
            raise core.refuse(RejectionReason.UNKNOWN_APPROVER,
                              f"link: this link was sent to link:{link.approver}, not to link:{identity}",
                              "link", tenant=link.tenant, action_id=link.action_id, approver=f"link:{identity}")
        return f"link:{identity}"

    @router.get("/link/{token}")
    async def show_link(token: str, request: Request) -> Response:
        """What the link would decide; never consumes it and never audits (link previews GET too)."""
        try:
            link = read(token)
            action = core.action(link.action_id, "link", tenant=link.tenant, approver=None)
        except RefusedError as refused:
            r = refused.rejection
            return JSONResponse({"detail": r.message, "reason": r.reason.value}, status_code=r.http_status)
        details = _details(action, link)
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
            link = read(token)
            approver = approver_of(link, request)
            action = core.action(link.action_id, "link", tenant=link.tenant, approver=approver)
            if approver is not None:
                core.check_approver(action, approver, "link")
            elif not config.anonymous_approval(action):
                raise core.refuse(RejectionReason.UNKNOWN_APPROVER,
                                  f"link: this link names no approver, and the policy of {action.name} does not "
                                  "allow anonymous approval; use the link sent to you, or sign in",
                                  "link", tenant=action.tenant, action_id=action.action_id)
            decider = approver or ANONYMOUS
            core.check_open(action, "link", decider)
            claim_id = claim_digest("link", link.nonce)
            core.once(claim_id, channel="link", expires_at=link.expires_at, tenant=action.tenant,
                      action_id=action.action_id, approver=decider)
            record = await core.decide(action, Decision(choice), decider, "link",
                                       _clean_reason(fields.get("reason")), claim_id=claim_id)
        except RefusedError as refused:
            return await core.answer(refused)
        result = {"ok": True, "action_id": action.action_id, "decision": record.decision.value,
                  "approver": record.approver}
        if _wants_json(request):
            return JSONResponse(result, headers=_PAGE_HEADERS)
        verb = "Approved" if record.decision is Decision.APPROVE else "Rejected"
        return HTMLResponse(_page(f"{verb}: {action.name}", {"action_id": action.action_id,
                                                              "tenant": action.tenant,
                                                              "by": record.approver}, form=False),
                            headers=_PAGE_HEADERS)
