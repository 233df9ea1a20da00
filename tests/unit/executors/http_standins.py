"""Local stand-ins for the reload endpoint (Prometheus/vmalert) and Alertmanager's v2 silences API."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


@dataclass
class ReloadStandIn:
    """Prometheus answers 403 unless started with --web.enable-lifecycle, 500 when the new config is bad."""

    lifecycle_enabled: bool = True
    config_ok: bool = True
    reloads: int = 0

    async def reload(self, request: Request) -> Response:
        if not self.lifecycle_enabled:
            return PlainTextResponse("Lifecycle API is not enabled.", status_code=403)
        if not self.config_ok:
            return PlainTextResponse("failed to reload config: parsing YAML file rules.yml", status_code=500)
        self.reloads += 1
        return PlainTextResponse("")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/-/reload", self.reload, methods=["POST", "PUT"])])


@dataclass
class AlertmanagerStandIn:
    """POST /api/v2/silences (postableSilence → {silenceID}) and GET with ``filter`` matchers."""

    silences: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def create(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            matchers = body["matchers"]
            starts = datetime.fromisoformat(body["startsAt"])
            ends = datetime.fromisoformat(body["endsAt"])
            comment, created_by = body["comment"], body["createdBy"]
        except (ValueError, KeyError, TypeError) as exc:
            return PlainTextResponse(f"invalid silence: {exc}", status_code=400)
        if not matchers or ends <= starts or not comment or not created_by:
            return PlainTextResponse("silence invalid: missing matchers, comment or createdBy", status_code=400)
        for m in matchers:
            if set(m) - {"name", "value", "isRegex", "isEqual"} or not m.get("name"):
                return PlainTextResponse(f"invalid matcher {m}", status_code=400)
        silence_id = str(uuid.uuid4())
        self.silences[silence_id] = {**body, "id": silence_id, "status": {"state": "active"},
                                     "updatedAt": body["startsAt"]}
        return JSONResponse({"silenceID": silence_id})

    async def list(self, request: Request) -> Response:
        wanted = []
        for f in request.query_params.getlist("filter"):
            name, _, value = f.partition("=")
            wanted.append((name, value.strip('"')))
        items = [s for s in self.silences.values()
                 if all(any(m["name"] == n and m["value"] == v for m in s["matchers"]) for n, v in wanted)]
        return JSONResponse(items)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/api/v2/silences", self.create, methods=["POST"]),
            Route("/api/v2/silences", self.list, methods=["GET"]),
        ])
