"""The HTTP face of rcaflow: webhooks and events in, health and metrics out.

A 2xx means the broker has acknowledged every record of the request; when the
broker cannot take them the sender gets 503 with Retry-After and retries, so a
webhook is never dropped.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from pydantic import SecretStr

from producers.alertmanager import WebhookBody, webhook_to_events
from producers.publisher import Publisher, PublishError
from producers.seed_event import SeedEvent, seed_to_event
from schemas.records import AlertEvent
from streams.stages.metrics import StageMetrics
from streams.stages.normalize import Normalize

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 10.0
RETRY_AFTER_S = "5"


class TenantAuth:
    """Maps a bearer token to its tenant; with no tokens configured, everything is the default tenant."""

    def __init__(self, tokens: Mapping[str, SecretStr | None], default_tenant: str) -> None:
        self._tokens = {tenant: t.get_secret_value().encode() for tenant, t in tokens.items() if t is not None}
        self._default = default_tenant

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def tenant_for(self, authorization: str | None) -> str:
        """Bearer <token>, or Basic <tenant:token> for senders (Alertmanager) that only speak basic auth."""
        if not self._tokens:
            return self._default
        scheme, _, credentials = (authorization or "").partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            offered, claimed = credentials.strip().encode(), None
        elif scheme == "basic":
            try:
                user, _, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as exc:
                raise HTTPException(401, "malformed basic credentials", headers=_CHALLENGE) from exc
            offered, claimed = password.encode(), user
        else:
            raise HTTPException(401, "missing bearer token or basic credentials", headers=_CHALLENGE)
        match = None
        for tenant, token in self._tokens.items():
            # Compare against every token so timing does not tell which tenants exist.
            if hmac.compare_digest(offered, token) and (claimed is None or claimed == tenant):
                match = tenant
        if match is None:
            raise HTTPException(401, "invalid credentials", headers=_CHALLENGE)
        return match


_CHALLENGE = {"WWW-Authenticate": 'Bearer, Basic realm="rcaflow"'}


def request_tenant(request: Request) -> str:
    """The tenant a request speaks for, from its bearer token."""
    auth: TenantAuth = request.app.state.auth
    return auth.tenant_for(request.headers.get("authorization"))


Tenant = Annotated[str, Depends(request_tenant)]


def create_app(
    *,
    normalize: Normalize,
    publisher: Publisher,
    auth: TenantAuth,
    registry: CollectorRegistry = REGISTRY,
    ready: Callable[[], bool] = lambda: True,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    app = FastAPI(title="rcaflow", version="0.1.0", docs_url="/docs", redoc_url=None, lifespan=lifespan)
    app.state.auth = auth
    metrics = normalize.context.metrics or StageMetrics(registry)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"), "error": err.get("msg", "")}
            for err in exc.errors()
        ]
        metrics.failed.labels(f"api{request.url.path}", "RequestValidationError").inc()
        first = errors[0] if errors else {"field": "", "error": "invalid body"}
        return JSONResponse(
            status_code=422,
            content={"detail": f"{first['field'] or 'body'}: {first['error']}", "errors": errors},
        )

    async def publish(events: list[AlertEvent], stage: str) -> dict[str, Any]:
        outs = [normalize.accept(event) for event in events]
        with metrics.timed(stage):
            try:
                async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                    await asyncio.gather(*(publisher.publish(o.spec, o.key, o.record) for o in outs))
            except (PublishError, TimeoutError) as exc:
                metrics.failed.labels(stage, type(exc).__name__).inc()
                logger.warning("%s: broker did not ack: %s", stage, exc)
                raise HTTPException(
                    503, f"broker unavailable, retry later: {exc}", headers={"Retry-After": RETRY_AFTER_S}
                ) from exc
        metrics.processed.labels(stage, "ok").inc()
        return {
            "accepted": len(outs),
            "events": [
                {"event_id": o.record.event_id, "fingerprint": o.record.fingerprint,
                 "alert_class": o.record.alert_class}
                for o in outs
                if isinstance(o.record, AlertEvent)
            ],
        }

    @app.post("/events", status_code=202)
    async def post_event(seed: SeedEvent, tenant: Tenant) -> dict[str, Any]:
        """The seed's event JSON; answers once the event is on the normalized topic."""
        event = seed_to_event(seed, tenant=tenant, received_at=datetime.now(UTC), request_id=uuid.uuid4().hex)
        return await publish([event], "api_events")

    @app.post("/webhook", status_code=202)
    async def post_webhook(body: WebhookBody, tenant: Tenant) -> dict[str, Any]:
        """Alertmanager webhook v4; HA peers' duplicates get the same event ids and dedup as replays."""
        try:
            events = webhook_to_events(body, tenant=tenant, received_at=datetime.now(UTC))
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        return await publish(events, "api_webhook")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        if ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=503)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
