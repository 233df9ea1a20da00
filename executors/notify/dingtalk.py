"""DingTalk custom robot: ActionCard/markdown builders (pure) and a signed, rate-limited sender.

Robots cannot edit a sent message, so an update is a new markdown message.
ActionCard buttons open signed approval links (``GET /approvals/link/{token}``
shows what will run; its form POSTs the decision). Every untrusted string
goes through :func:`md_escape`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
from pydantic import SecretStr

from executors.approvals.dingtalk import dingtalk_signed_url
from executors.notify.base import MessageRef
from executors.notify.errors import NotifyError, RateLimitedError
from executors.notify.limiter import RateLimiter
from executors.notify.text import DECISION_STATES, clip, md_escape, params_line, utc
from schemas.records import ActionEvent, ActionState, RcaResult

logger = logging.getLogger(__name__)

#: DingTalk's documented "sending too fast" error (more than 20 messages a minute per robot).
ERR_RATE_LIMITED = 130101
#: DingTalk's documented per-robot budget.
MESSAGES_PER_MINUTE = 20


def _title(rca: RcaResult) -> str:
    event = rca.incident.event
    where = event.labels.get("cluster") or rca.tenant
    return clip(f"{event.alert} @ {where} ({event.severity})", 60)


def _summary(rca: RcaResult) -> list[str]:
    lines = [f"### {md_escape(_title(rca), 80)}", "",
             f"**诊断 Diagnosis**: {md_escape(rca.diagnosis, 800)}"]
    if rca.cause:
        lines.append(f"**原因 Cause**: {md_escape(rca.cause, 600)}")
    lines.append(f"**置信度 Confidence**: {rca.confidence:.2f} ({rca.engine.value}) · "
                 f"tenant {md_escape(rca.tenant, 60)} · incident {md_escape(rca.incident_id, 80)}")
    return lines


def _action_lines(action: ActionEvent) -> list[str]:
    mode = "dry run" if action.dry_run else "real run"
    line = (f"- **{md_escape(action.name, 100)}** ({md_escape(action.tool)}.{md_escape(action.operation)}, "
            f"risk {action.risk.value}, {mode}): {md_escape(params_line(action), 300)}")
    if action.state is ActionState.AWAITING_APPROVAL:
        until = f" until {utc(action.expires_at)}" if action.expires_at else ""
        return [line, f"  - 待审批 awaiting approval{until}"]
    result = f": {md_escape(action.result, 300)}" if action.result else ""
    when = f" {utc(action.at)}" if action.state in DECISION_STATES else ""
    return [line, f"  - {action.outcome}{when}{result}"]


def first_response(
    rca: RcaResult, actions: Sequence[ActionEvent], links: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """An ActionCard with one "审批" button per action awaiting approval that has a link; else markdown."""
    links = links or {}
    lines = _summary(rca)
    if actions:
        lines += ["", "**动作 Actions**"]
        for action in actions:
            lines += _action_lines(action)
    text = "\n".join(lines)
    buttons = [
        {"title": clip(f"审批 Review: {action.name}", 40), "actionURL": links[action.action_id]}
        for action in actions
        if action.state is ActionState.AWAITING_APPROVAL and action.action_id in links
    ]
    if not buttons:
        return {"msgtype": "markdown", "markdown": {"title": _title(rca), "text": text}}
    return {"msgtype": "actionCard",
            "actionCard": {"title": _title(rca), "text": text, "btnOrientation": "1", "btns": buttons}}


def update(rca: RcaResult, actions: Sequence[ActionEvent]) -> dict[str, Any]:
    """A markdown follow-up with each action's current state (robots cannot edit the card)."""
    lines = [f"### {md_escape(_title(rca), 80)} — 更新 update"]
    for action in actions:
        lines += _action_lines(action)
    return {"msgtype": "markdown", "markdown": {"title": _title(rca), "text": "\n".join(lines)}}


class DingTalkChannel:
    """Posts to one custom robot webhook, signed with its secret, at most 20 messages a minute."""

    name = "dingtalk"

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        webhook_url: SecretStr,
        secret: SecretStr,
        limiter: RateLimiter | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._client = client
        self._webhook = webhook_url  # carries the access_token: a secret, never logged
        self._secret = secret
        self._limiter = limiter or RateLimiter(MESSAGES_PER_MINUTE, 60.0)
        self._clock_ms = clock_ms

    async def send(self, message: Mapping[str, Any]) -> None:
        await self._limiter.acquire()
        url = dingtalk_signed_url(self._webhook.get_secret_value(), self._secret, self._clock_ms())
        try:
            response = await self._client.post(url, json=dict(message))
        except httpx.HTTPError as exc:
            raise NotifyError(f"DingTalk robot unreachable: {type(exc).__name__}", retriable=True) from exc
        if not response.is_success:
            raise NotifyError(f"DingTalk robot answered HTTP {response.status_code}",
                              retriable=response.status_code >= 500 or response.status_code == 429)
        try:
            data = response.json()
        except ValueError as exc:
            raise NotifyError("DingTalk robot answered non-JSON") from exc
        code = data.get("errcode") if isinstance(data, dict) else None
        if code == ERR_RATE_LIMITED:
            raise RateLimitedError("DingTalk robot: sending too fast (errcode 130101)", retry_after=60.0)
        if code != 0:
            errmsg = data.get("errmsg", "") if isinstance(data, dict) else ""
            raise NotifyError(f"DingTalk robot refused the message: errcode {code}: {clip(str(errmsg), 100)}")

    async def notify_first_response(
        self, rca: RcaResult, actions: Sequence[ActionEvent], links: Mapping[str, str] | None = None
    ) -> MessageRef:
        await self.send(first_response(rca, actions, links))
        logger.info("dingtalk: posted first response", extra={"incident_id": rca.incident_id})
        return MessageRef(channel=self.name)

    async def update(self, ref: MessageRef, rca: RcaResult, actions: Sequence[ActionEvent]) -> None:
        await self.send(update(rca, actions))
