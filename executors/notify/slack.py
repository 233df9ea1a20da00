"""Slack: Block Kit message builders (pure) and a sender for chat.postMessage, chat.update and response_url,
and for approval links sent privately (conversations.open + chat.postMessage into the approver's DM).

Buttons carry ``value = "<tenant>|<action id>"`` and ``action_id``
``rcaflow_approve`` / ``rcaflow_reject``; the ``actions`` block of one action
has ``block_id = "rcaflow:<action id>"`` so a decision can remove exactly its
buttons. Every untrusted string goes through :func:`slack_escape`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from executors.notify.base import MessageRef
from executors.notify.errors import NotifyError, RateLimitedError
from executors.notify.text import DECISION_STATES, clip, params_line, slack_escape, utc
from schemas.records import ActionEvent, ActionState, ApprovalDecision, Decision, RcaResult, Risk

logger = logging.getLogger(__name__)

APPROVE = "rcaflow_approve"
REJECT = "rcaflow_reject"
#: The "Details" link button: Slack reports its clicks too; they decide nothing.
OPEN = "rcaflow_open"
BLOCK_PREFIX = "rcaflow:"
#: Slack's documented hosts for interaction response URLs; anything else is refused (no SSRF via payloads).
RESPONSE_HOSTS = frozenset({"hooks.slack.com"})
_SECTION_LIMIT = 2900

Block = dict[str, Any]


def button_value(action: ActionEvent) -> str:
    return f"{action.tenant}|{action.action_id}"


def _header(rca: RcaResult) -> str:
    event = rca.incident.event
    where = event.labels.get("cluster") or event.labels.get("namespace") or rca.tenant
    return clip(f"{event.alert} on {where} ({event.severity})", 150)


def _action_section(action: ActionEvent) -> Block:
    mode = "dry run" if action.dry_run else "real run"
    lines = [
        f"*{slack_escape(action.name, 100)}* — `{slack_escape(action.tool)}.{slack_escape(action.operation)}`"
        f" · risk *{action.risk.value}* · {mode}",
        f"`{slack_escape(params_line(action), 600)}`",
    ]
    if action.reason:
        lines.append(slack_escape(action.reason, 400))
    if action.state is ActionState.AWAITING_APPROVAL and action.expires_at is not None:
        lines.append(f"Waiting for approval until {utc(action.expires_at)}")
    elif action.state is not ActionState.AWAITING_APPROVAL:
        result = f": {slack_escape(action.result, 300)}" if action.result else ""
        when = f" at {utc(action.at)}" if action.state in DECISION_STATES else ""
        lines.append(f"*{action.outcome}*{when}{result}")
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip("\n".join(lines), _SECTION_LIMIT)}}


def _buttons(action: ActionEvent, link: str | None) -> Block:
    approve: Block = {
        "type": "button", "action_id": APPROVE, "style": "primary", "value": button_value(action),
        "text": {"type": "plain_text", "text": "Approve"},
    }
    if action.risk is Risk.HIGH:
        approve["confirm"] = {
            "title": {"type": "plain_text", "text": "High-risk action"},
            "text": {"type": "mrkdwn", "text": clip(f"Run *{slack_escape(action.name, 100)}* "
                                                    f"with `{slack_escape(params_line(action), 300)}`?", 300)},
            "confirm": {"type": "plain_text", "text": "Approve"},
            "deny": {"type": "plain_text", "text": "Cancel"},
        }
    elements: list[Block] = [approve, {
        "type": "button", "action_id": REJECT, "style": "danger", "value": button_value(action),
        "text": {"type": "plain_text", "text": "Reject"},
    }]
    if link:
        elements.append({"type": "button", "action_id": OPEN, "url": link,
                         "text": {"type": "plain_text", "text": "Details"}})
    return {"type": "actions", "block_id": f"{BLOCK_PREFIX}{action.action_id}"[:255], "elements": elements}


def first_response(
    rca: RcaResult, actions: Sequence[ActionEvent], *, channel: str, links: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The chat.postMessage body: diagnosis, evidence, and per action its state or approve/reject buttons.

    ``links`` maps action ids to signed approval-link URLs (shown as a "Details" button).
    """
    links = links or {}
    summary = [f"*Diagnosis:* {slack_escape(rca.diagnosis, 1000)}"]
    if rca.cause:
        summary.append(f"*Likely cause:* {slack_escape(rca.cause, 800)}")
    summary.append(f"*Confidence:* {rca.confidence:.2f} ({rca.engine.value})")
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": _header(rca)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": clip("\n".join(summary), _SECTION_LIMIT)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(
            f"tenant `{slack_escape(rca.tenant, 100)}` · incident `{slack_escape(rca.incident_id, 100)}` · "
            f"class `{slack_escape(rca.alert_class, 100)}` · seen {rca.incident.count}×", 2000)}]},
    ]
    evidence = [f"• `{slack_escape(e.tool)}.{slack_escape(e.operation)}` {e.status.value}: "
                f"{slack_escape(e.summary or e.error or '', 200)}" for e in rca.evidence[:5]]
    if evidence:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": clip("*Evidence*\n" + "\n".join(evidence), _SECTION_LIMIT)}})
    if actions:
        blocks.append({"type": "divider"})
    for action in actions:
        blocks.append(_action_section(action))
        if action.state is ActionState.AWAITING_APPROVAL:
            blocks.append(_buttons(action, links.get(action.action_id)))
    fallback = slack_escape(f"[{rca.tenant}] {rca.alert_class}: {rca.diagnosis}", 300)
    return {"channel": channel, "text": fallback, "blocks": blocks, "unfurl_links": False}


def update(rca: RcaResult, actions: Sequence[ActionEvent], *, ref: MessageRef) -> dict[str, Any]:
    """The chat.update body: the same message rebuilt from the actions' current states (no buttons left
    for decided ones)."""
    message = first_response(rca, actions, channel=ref.conversation or "")
    message.pop("unfurl_links")
    return {**message, "ts": ref.ts}


def thread_reply(rca: RcaResult, actions: Sequence[ActionEvent], *, parent: MessageRef,
                 links: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The chat.postMessage body of a group member's message: its first response, in the group's thread, with a
    line saying why it belongs there."""
    message = first_response(rca, actions, channel=parent.conversation or "", links=links)
    why = rca.incident.group_reason or "related to this group"
    message["blocks"].insert(1, {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(
        f"Related: {slack_escape(why, 300)} · root candidate `{slack_escape(rca.incident.root_candidate or '', 100)}`",
        2000)}]})
    return {**message, "thread_ts": parent.ts}


def private_link(rca: RcaResult, action: ActionEvent, url: str, *, channel: str) -> dict[str, Any]:
    """The chat.postMessage body of one approver's own approval link (sent into their direct messages only:
    the link decides in their name)."""
    lines = [
        f"*Your approval is asked for:* {slack_escape(action.name, 100)} — "
        f"`{slack_escape(action.tool)}.{slack_escape(action.operation)}` · risk *{action.risk.value}*",
        f"`{slack_escape(params_line(action), 600)}`",
        f"{slack_escape(_header(rca), 150)} · incident `{slack_escape(rca.incident_id, 100)}`",
    ]
    if action.expires_at is not None:
        lines.append(f"Waiting for approval until {utc(action.expires_at)}")
    lines.append("This link decides in your name: do not forward it.")
    return {
        "channel": channel, "unfurl_links": False,
        "text": clip(f"Approval asked: {slack_escape(action.name, 100)}", 300),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": clip("\n".join(lines), _SECTION_LIMIT)}},
                   {"type": "actions", "elements": [{"type": "button", "action_id": OPEN, "url": url,
                                                     "text": {"type": "plain_text", "text": "Review and decide"}}]}],
    }


def decided_text(action: ActionEvent, decision: ApprovalDecision) -> str:
    verb = "Approved" if decision.decision is Decision.APPROVE else "Rejected"
    who = decision.approver.removeprefix("slack:")
    actor = f"<@{who}>" if decision.approver.startswith("slack:") and who.isalnum() else slack_escape(who, 100)
    return f"{verb} by {actor} at {utc(decision.decided_at)}: *{slack_escape(action.name, 100)}*"


def mark_decided(
    original_blocks: Sequence[Mapping[str, Any]], action: ActionEvent, decision: ApprovalDecision
) -> dict[str, Any]:
    """The response_url body that replaces the clicked message: its buttons for ``action`` become a
    one-line outcome; everything else stays as it was."""
    note: Block = {"type": "context", "elements": [{"type": "mrkdwn", "text": decided_text(action, decision)}]}
    block_id = f"{BLOCK_PREFIX}{action.action_id}"[:255]
    blocks: list[Any] = []
    replaced = False
    for block in original_blocks:
        if block.get("type") == "actions" and block.get("block_id") == block_id:
            blocks.append(note)
            replaced = True
        else:
            blocks.append(dict(block))
    if not replaced:
        blocks.append(note)
    return {"replace_original": True, "text": decided_text(action, decision), "blocks": blocks}


def ephemeral(text: str) -> dict[str, Any]:
    """A response_url body only the clicking user sees (e.g. why their click was refused)."""
    return {"response_type": "ephemeral", "replace_original": False, "text": slack_escape(text, 300)}


def check_response_url(url: str, allowed_hosts: frozenset[str] = RESPONSE_HOSTS) -> str:
    """``url`` if it is https on an allowed host (or http on loopback for tests); else NotifyError."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    local = parts.scheme == "http" and host in ("127.0.0.1", "localhost") and host in allowed_hosts
    if not (parts.scheme == "https" or local) or host not in allowed_hosts or parts.username or parts.password:
        raise NotifyError(f"response_url host {host!r} is not an allowed Slack host")
    return url


async def respond(
    client: httpx.AsyncClient,
    response_url: str,
    body: Mapping[str, Any],
    *,
    allowed_hosts: frozenset[str] = RESPONSE_HOSTS,
) -> None:
    """POST ``body`` to an interaction's response_url (valid 30 min, 5 uses; needs no token)."""
    url = check_response_url(response_url, allowed_hosts)
    try:
        response = await client.post(url, json=dict(body))
    except httpx.HTTPError as exc:
        raise NotifyError(f"Slack response_url unreachable: {type(exc).__name__}", retriable=True) from exc
    if response.status_code == 429:
        raise RateLimitedError("Slack response_url rate limited", retry_after=_retry_after(response))
    if not response.is_success:
        raise NotifyError(f"Slack response_url answered {response.status_code}: {clip(response.text, 200)}",
                          retriable=response.status_code >= 500)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None


class SlackChannel:
    """Sends through the Slack Web API with a bot token (``chat:write``); the client is injected."""

    name = "slack"

    def __init__(self, client: httpx.AsyncClient, *, token: SecretStr, channel: str,
                 api_base: str = "https://slack.com/api", approver_dms: Mapping[str, str] | None = None) -> None:
        self._client = client
        self._token = token
        self._channel = channel
        self._api = api_base.rstrip("/")
        #: Approver identity ("link:alice@acme.example") -> Slack user id their own links are sent to (``im:write``).
        self._dms = dict(approver_dms or {})

    def reaches(self, approver: str) -> bool:
        """Whether this bot can send ``approver`` a private message (a Slack user id is configured for them)."""
        return approver in self._dms

    async def send_privately(self, approver: str, rca: RcaResult, action: ActionEvent, url: str) -> None:
        """``approver``'s own approval link, into their direct messages (conversations.open, then
        chat.postMessage to the channel it answers); never into the shared channel."""
        user = self._dms.get(approver)
        if user is None:
            raise NotifyError(f"no Slack user configured for {clip(approver, 100)}")
        opened = await self._call("conversations.open", {"users": user})
        dm = opened.get("channel")
        dm_id = dm.get("id") if isinstance(dm, dict) else None
        if not isinstance(dm_id, str) or not dm_id:
            raise NotifyError("Slack conversations.open answered no channel id")
        await self._call("chat.postMessage", private_link(rca, action, url, channel=dm_id))
        logger.info("slack: sent %s their approval link privately", approver,
                    extra={"incident_id": rca.incident_id, "action_id": action.action_id})

    async def _call(self, method: str, body: Mapping[str, Any]) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}"}
        try:
            response = await self._client.post(f"{self._api}/{method}", json=dict(body), headers=headers)
        except httpx.HTTPError as exc:
            raise NotifyError(f"Slack {method} unreachable: {type(exc).__name__}", retriable=True) from exc
        if response.status_code == 429:
            raise RateLimitedError(f"Slack {method} rate limited", retry_after=_retry_after(response))
        if not response.is_success:
            raise NotifyError(f"Slack {method} answered HTTP {response.status_code}",
                              retriable=response.status_code >= 500)
        try:
            data = response.json()
        except ValueError as exc:
            raise NotifyError(f"Slack {method} answered non-JSON") from exc
        if not isinstance(data, dict) or not data.get("ok"):
            error = data.get("error", "unknown_error") if isinstance(data, dict) else "unknown_error"
            if error == "ratelimited":
                raise RateLimitedError(f"Slack {method}: ratelimited")
            raise NotifyError(f"Slack {method} failed: {clip(str(error), 100)}")
        return data

    async def notify_first_response(
        self, rca: RcaResult, actions: Sequence[ActionEvent], links: Mapping[str, str] | None = None
    ) -> MessageRef:
        data = await self._call("chat.postMessage", first_response(rca, actions, channel=self._channel,
                                                                   links=links))
        ref = MessageRef(channel=self.name, conversation=str(data.get("channel", self._channel)),
                         ts=str(data.get("ts", "")))
        logger.info("slack: posted first response", extra={"incident_id": rca.incident_id, "ts": ref.ts})
        return ref

    async def reply(self, parent: MessageRef, rca: RcaResult, actions: Sequence[ActionEvent],
                    links: Mapping[str, str] | None = None) -> MessageRef:
        """A later member of an incident group: its own first response, in the thread of the group's message."""
        if not parent.ts or not parent.conversation:
            raise NotifyError("a Slack thread reply needs the channel and ts of the group's message")
        data = await self._call("chat.postMessage", thread_reply(rca, actions, parent=parent, links=links))
        ref = MessageRef(channel=self.name, conversation=str(data.get("channel", parent.conversation)),
                         ts=str(data.get("ts", "")))
        logger.info("slack: replied in the group's thread", extra={"incident_id": rca.incident_id, "ts": ref.ts})
        return ref

    async def update(self, ref: MessageRef, rca: RcaResult, actions: Sequence[ActionEvent]) -> None:
        if not ref.ts or not ref.conversation:
            raise NotifyError("a Slack update needs the channel and ts of the posted message")
        await self._call("chat.update", update(rca, actions, ref=ref))
