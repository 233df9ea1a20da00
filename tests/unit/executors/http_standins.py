"""Local stand-ins for the reload endpoint (Prometheus/vmalert) and Alertmanager's v2 silences API."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    """Alertmanager's v2 silences API as its swagger spec and ``api/v2/api.go`` define it.

    POST /api/v2/silences (postableSilence → {silenceID}), GET with ``filter``
    matchers, GET /api/v2/silence/{id} (404 when unknown) and DELETE
    /api/v2/silence/{id}, which expires rather than deletes. ``version`` picks
    the DELETE answers of that release: an already expired silence is 200 since
    0.24 (before: 500 "silence <id> already expired"), an unknown id is 404
    since 0.26 (before: 500 "silence not found"). A path id that is not a UUID
    is refused by go-swagger's validation with 422.
    """

    silences: dict[str, dict[str, Any]] = field(default_factory=dict)
    version: tuple[int, int] = (0, 28)
    #: Every request as (method, path), reads included.
    requests: list[tuple[str, str]] = field(default_factory=list)

    def _seen(self, request: Request) -> None:
        self.requests.append((request.method, request.url.path))

    def add_silence(self, comment: str, *, state: str = "active", alertname: str = "Watchdog") -> str:
        """Seed a silence someone else set (or one already expired)."""
        silence_id = str(uuid.uuid4())
        self.silences[silence_id] = {
            "id": silence_id, "status": {"state": state}, "comment": comment, "createdBy": "oncall",
            "matchers": [{"name": "alertname", "value": alertname, "isRegex": False, "isEqual": True}],
            "startsAt": "2026-11-25T08:00:00Z", "endsAt": "2026-11-25T20:00:00Z", "updatedAt": "2026-11-25T08:00:00Z",
        }
        return silence_id

    async def create(self, request: Request) -> Response:
        self._seen(request)
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
        self._seen(request)
        wanted = []
        for f in request.query_params.getlist("filter"):
            name, _, value = f.partition("=")
            wanted.append((name, value.strip('"')))
        items = [s for s in self.silences.values()
                 if all(any(m["name"] == n and m["value"] == v for m in s["matchers"]) for n, v in wanted)]
        return JSONResponse(items)

    @staticmethod
    def _bad_id(silence_id: str) -> Response | None:
        try:
            uuid.UUID(silence_id)
        except ValueError:
            return JSONResponse({"code": 605, "message": f'silenceID in path must be of type uuid: "{silence_id}"'},
                                status_code=422)
        return None

    async def one(self, request: Request) -> Response:
        self._seen(request)
        silence_id = request.path_params["silence_id"]
        if bad := self._bad_id(silence_id):
            return bad
        silence = self.silences.get(silence_id)
        if silence is None:
            return Response(status_code=404)
        return JSONResponse(silence)

    async def expire(self, request: Request) -> Response:
        self._seen(request)
        silence_id = request.path_params["silence_id"]
        if bad := self._bad_id(silence_id):
            return bad
        silence = self.silences.get(silence_id)
        if silence is None:
            if self.version >= (0, 26):
                return Response(status_code=404)
            return JSONResponse("silence not found", status_code=500)
        if silence["status"]["state"] == "expired":
            if self.version >= (0, 24):
                return Response(status_code=200)
            return JSONResponse(f"silence {silence_id} already expired", status_code=500)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if silence["status"]["state"] == "pending":
            silence["startsAt"] = stamp
        silence.update(endsAt=stamp, updatedAt=stamp, status={"state": "expired"})
        return Response(status_code=200)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/api/v2/silences", self.create, methods=["POST"]),
            Route("/api/v2/silences", self.list, methods=["GET"]),
            Route("/api/v2/silence/{silence_id}", self.one, methods=["GET"]),
            Route("/api/v2/silence/{silence_id}", self.expire, methods=["DELETE"]),
        ])


@dataclass
class MetricsReloadStandIn:
    """A server whose reload outcome is only in ``<kind>_config_last_reload_*`` metrics, like vmalert.

    vmalert answers POST /-/reload at once; its reload loop then counts the
    SIGHUP (``_total``) and only afterwards parses the rules and sets
    ``_successful``/``_errors_total``/``_success_timestamp_seconds``. Each GET
    /metrics advances that loop one step, so the first scrape after the POST
    shows the counted-but-unparsed window. ``synchronous`` servers (Prometheus,
    Alertmanager) finish before answering; a broken config is then a 500.
    """

    kind: str = "vmalert"
    synchronous: bool = False
    config_ok: bool = True
    config_changed: bool = True
    processes_reloads: bool = True
    exposes_metrics: bool = True
    successful: float = 1
    success_ts: float = 1_795_600_000
    total: float = 0
    errors: float = 0
    reloads: int = 0
    _stage: int = 0

    def _finish(self) -> None:
        if self.config_ok:
            self.successful = 1
            if self.config_changed:
                self.success_ts += 1
        else:
            self.successful = 0
            self.errors += 1

    async def reload(self, request: Request) -> Response:
        self.reloads += 1
        if self.synchronous:
            self.total += 1
            self._finish()
            if not self.config_ok:
                return PlainTextResponse("failed to reload config: parsing YAML file rules.yml", status_code=500)
        elif self.processes_reloads:
            self._stage = 1
        return PlainTextResponse("")

    async def metrics(self, request: Request) -> Response:
        if self._stage == 1:
            self.total += 1
            self._stage = 2
        elif self._stage == 2:
            self._finish()
            self._stage = 0
        if not self.exposes_metrics:
            return PlainTextResponse("go_goroutines 12\n")
        p = f"{self.kind}_config_last_reload"
        text = (
            f"# HELP {p}_successful Whether the last reload succeeded.\n"
            f"# TYPE {p}_successful gauge\n"
            f"{p}_successful {self.successful:g}\n"
            f'{p}_successful{{tenant="other"}} 0\n'
            f"{p}_success_timestamp_seconds {self.success_ts:.0f}\n"
        )
        if not self.synchronous:  # Prometheus and Alertmanager have no reload counters
            text += f"{p}_total {self.total:g}\n{p}_errors_total {self.errors:g}\n"
        return PlainTextResponse(text)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/-/reload", self.reload, methods=["POST", "PUT"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ])
