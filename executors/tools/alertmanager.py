"""alertmanager.silence: create a time-bounded silence through Alertmanager's v2 API.

Idempotent by action id: the silence comment carries ``[rcaflow action <id>]``
and an active or pending silence with that tag is reused instead of duplicated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import httpx

from executors.base import ActionSpec, Executor, RunContext, ToolResult
from executors.errors import ToolNotConfiguredError, UpstreamError
from executors.params import AlertName, Comment, Duration, LabelValue, Namespace, ObjectName, Params, parse_duration
from executors.tools._http import check
from schemas.records import Risk

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


class SilenceParams(Params):
    alertname: AlertName
    cluster: LabelValue | None = None
    namespace: Namespace | None = None
    workload: ObjectName | None = None
    duration: Duration = "2h"
    comment: Comment


class Silence(Executor[SilenceParams]):
    spec = ActionSpec(
        name="alertmanager.silence",
        description="Silence one alert (by alertname, optionally narrowed by cluster/namespace/workload) for a "
        "bounded duration (at most 7d) while a fix is under way.",
        params=SilenceParams,
        risk=Risk.LOW,
    )
    backend = "alertmanager"

    def __init__(self, api: AlertmanagerApi | None) -> None:
        self.api = api

    @classmethod
    def from_backend(cls, backend: object | None) -> Self:
        if backend is not None and not isinstance(backend, AlertmanagerApi):
            raise TypeError(f"alertmanager.silence needs an AlertmanagerApi backend, got {type(backend).__name__}")
        return cls(backend)

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
            return ToolResult(f"silence {existing} for {{{shown}}} already exists for action {ctx.action_id}")
        silence_id = await self.api.create_silence(body)
        return ToolResult(
            f"silenced {{{shown}}} for {params.duration} until {body['endsAt']} (silence {silence_id}; "
            f"expire early with DELETE /api/v2/silence/{silence_id})"
        )
