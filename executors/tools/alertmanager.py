"""alertmanager.silence and its inverse, alertmanager.expire_silence, through Alertmanager's v2 API.

Idempotent by action id: the silence comment carries ``[rcaflow action <id>]``
and an active or pending silence with that tag is reused instead of duplicated.
A real silence run records ``alertmanager.expire_silence`` with the silence's id
as its rollback. Expiring is idempotent too: Alertmanager 0.24+ answers 200 for
an already expired silence, older releases 500 "silence <id> already expired",
and both count as done. The inverse only expires silences carrying our tag, so
it can never lift a silence a human set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self
from urllib.parse import quote

import httpx

from executors.base import ActionSpec, Executor, P, Rollback, RunContext, ToolResult
from executors.errors import NotExecutableError, NotFoundError, ToolNotConfiguredError, UpstreamError
from executors.params import (
    AlertName,
    Comment,
    Duration,
    LabelValue,
    Namespace,
    ObjectName,
    Params,
    SilenceId,
    parse_duration,
)
from executors.tools._http import MAX_BODY, check
from schemas.records import Risk

#: Every silence we create carries this (plus the action id) in its comment; the inverse requires it.
TAG_PREFIX = "[rcaflow action "

#: Which Alertmanager label each silence parameter matches; DCE 5 and kube-prometheus differ on "workload".
DEFAULT_MATCHER_LABELS: Mapping[str, str] = {
    "alertname": "alertname",
    "cluster": "cluster",
    "namespace": "namespace",
    "workload": "workload",
}


class AlertmanagerApi:
    """An Alertmanager reachable through ``client`` (its ``base_url`` is the Alertmanager root)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        created_by: str = "rcaflow",
        matcher_labels: Mapping[str, str] = DEFAULT_MATCHER_LABELS,
    ) -> None:
        self.client = client
        self.created_by = created_by
        self.matcher_labels = dict(matcher_labels)

    async def find_silence(self, alertname: str, tag: str) -> str | None:
        """The id of an active/pending silence for ``alertname`` whose comment carries ``tag``."""
        response = check(
            await self.client.get("/api/v2/silences", params={"filter": f'alertname="{alertname}"'}),
            "GET /api/v2/silences",
        )
        for silence in response.json() or []:
            if not isinstance(silence, dict):
                continue
            state = (silence.get("status") or {}).get("state")
            if state in ("active", "pending") and tag in str(silence.get("comment", "")):
                return str(silence.get("id"))
        return None

    async def create_silence(self, body: dict[str, Any]) -> str:
        response = check(await self.client.post("/api/v2/silences", json=body), "POST /api/v2/silences")
        answer = response.json()
        silence_id = answer.get("silenceID") if isinstance(answer, dict) else None
        if not silence_id:
            raise UpstreamError("POST /api/v2/silences: answer has no silenceID")
        return str(silence_id)

    async def get_silence(self, silence_id: str) -> dict[str, Any]:
        """One silence (``gettableSilence``); an unknown id is :class:`NotFoundError`."""
        path = _silence_path(silence_id)
        what = f"GET {path}"
        answer = check(await self.client.get(path), what).json()
        if not isinstance(answer, dict):
            raise UpstreamError(f"{what}: answer is not a silence object")
        return answer

    async def expire_silence(self, silence_id: str) -> bool:
        """Expire one silence; True if this call expired it, False if Alertmanager said it already was.

        Alertmanager before 0.24 answered an already expired silence with 500
        "silence <id> already expired", and before 0.26 an unknown id with 500
        "silence not found" (now 404): both are read from the body so that
        neither looks like a retriable server failure.
        """
        path = _silence_path(silence_id)
        what = f"DELETE {path}"
        response = await self.client.delete(path)
        if response.status_code == 500:
            body = response.text[:MAX_BODY]
            if "already expired" in body:
                return False
            if "not found" in body:
                raise NotFoundError(f"{what}: 500 silence not found", status=404)
        check(response, what)
        return True


def _silence_path(silence_id: str) -> str:
    # Callers pass a validated SilenceId already; quoting is the second belt.
    return f"/api/v2/silence/{quote(silence_id, safe='')}"


class AlertmanagerExecutor(Executor[P]):
    backend = "alertmanager"

    def __init__(self, api: AlertmanagerApi | None) -> None:
        self.api = api

    @classmethod
    def from_backend(cls, backend: object | None) -> Self:
        if backend is not None and not isinstance(backend, AlertmanagerApi):
            raise TypeError(f"{cls.spec.name} needs an AlertmanagerApi backend, got {type(backend).__name__}")
        return cls(backend)


class SilenceParams(Params):
    alertname: AlertName
    cluster: LabelValue | None = None
    namespace: Namespace | None = None
    workload: ObjectName | None = None
    duration: Duration = "2h"
    comment: Comment


class Silence(AlertmanagerExecutor[SilenceParams]):
    spec = ActionSpec(
        name="alertmanager.silence",
        description="Silence one alert (by alertname, optionally narrowed by cluster/namespace/workload) for a "
        "bounded duration (at most 7d) while a fix is under way.",
        params=SilenceParams,
        risk=Risk.LOW,
    )

    async def _run(self, params: SilenceParams, ctx: RunContext) -> ToolResult:
        labels = dict(self.api.matcher_labels if self.api else DEFAULT_MATCHER_LABELS)
        matchers = [
            {"name": labels[field], "value": value, "isRegex": False, "isEqual": True}
            for field in ("alertname", "cluster", "namespace", "workload")
            if (value := getattr(params, field)) is not None
        ]
        tag = f"[rcaflow action {ctx.action_id}]"
        ends = ctx.now + parse_duration(params.duration)
        body = {
            "matchers": matchers,
            "startsAt": ctx.now.isoformat().replace("+00:00", "Z"),
            "endsAt": ends.isoformat().replace("+00:00", "Z"),
            "createdBy": self.api.created_by if self.api else "rcaflow",
            "comment": f"{params.comment} {tag}",
        }
        shown = ", ".join(f'{m["name"]}="{m["value"]}"' for m in matchers)
        if ctx.dry_run:
            return ToolResult(f"dry run: would silence {{{shown}}} for {params.duration} until {body['endsAt']}")
        if self.api is None:
            raise ToolNotConfiguredError("alertmanager.silence: no Alertmanager is configured")
        existing = await self.api.find_silence(params.alertname, tag)
        if existing:
            return ToolResult(f"silence {existing} for {{{shown}}} already exists for action {ctx.action_id}",
                              rollback=_expire(existing))
        silence_id = await self.api.create_silence(body)
        return ToolResult(
            f"silenced {{{shown}}} for {params.duration} until {body['endsAt']} (silence {silence_id})",
            rollback=_expire(silence_id),
        )


def _expire(silence_id: str) -> Rollback:
    return Rollback(name=ExpireSilence.spec.name, params={"silence_id": silence_id})


# ----------------------------------------------------------------------------- expire_silence


class ExpireSilenceParams(Params):
    silence_id: SilenceId


class ExpireSilence(AlertmanagerExecutor[ExpireSilenceParams]):
    """Only reached as a rollback of a silence (automatic or `rcaflow rollback`); the policy catalogue lacks it."""

    spec = ActionSpec(
        name="alertmanager.expire_silence",
        description="Expire (end now) a silence that rcaflow created, undoing alertmanager.silence; "
        "silences without rcaflow's tag are refused.",
        params=ExpireSilenceParams,
        risk=Risk.LOW,
    )

    async def _run(self, params: ExpireSilenceParams, ctx: RunContext) -> ToolResult:
        silence_id = params.silence_id
        if self.api is None:
            if ctx.dry_run:
                return ToolResult(f"dry run (no Alertmanager configured): would DELETE /api/v2/silence/{silence_id}")
            raise ToolNotConfiguredError("alertmanager.expire_silence: no Alertmanager is configured")
        silence = await self.api.get_silence(silence_id)
        shown = _describe(silence)
        if TAG_PREFIX not in str(silence.get("comment", "")):
            raise NotExecutableError(
                f"silence {silence_id} {shown} was not created by rcaflow (no {TAG_PREFIX.strip()} tag in its "
                "comment); expire it by hand if it must go"
            )
        status = silence.get("status")
        state = status.get("state") if isinstance(status, dict) else None
        if state == "expired":
            return ToolResult(f"silence {silence_id} {shown} is already expired (ended {silence.get('endsAt', '?')});"
                              " nothing to do")
        if ctx.dry_run:
            return ToolResult(f"dry run: would expire {state or 'unknown-state'} silence {silence_id} {shown} "
                              f"(DELETE /api/v2/silence/{silence_id})")
        if not await self.api.expire_silence(silence_id):
            return ToolResult(f"silence {silence_id} {shown} had already expired; nothing to do")
        return ToolResult(f"expired silence {silence_id} {shown}; its alerts notify again")


def _describe(silence: dict[str, Any]) -> str:
    """``{name="value", …}`` of a silence's matchers, as Alertmanager's UI shows them."""
    parts = []
    for m in silence.get("matchers") or []:
        if isinstance(m, dict):
            regex, equal = bool(m.get("isRegex")), m.get("isEqual", True) is not False
            op = {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}[(regex, equal)]
            parts.append(f'{m.get("name")}{op}"{m.get("value")}"')
    return "{" + ", ".join(parts) + "}"
