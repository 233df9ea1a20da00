"""The HTTP face of rcaflow: webhooks and events in, health and metrics out.

A 2xx means the broker has acknowledged every record of the request. When the
broker is unreachable the sender gets 503 with Retry-After and retries, so a
webhook is never dropped. Input that can never be accepted as sent (a body, label
or record over its limit in schemas/limits.py, or one the broker refuses as too
large) is a 4xx with the reason, kept in dead-letter: retrying it cannot help.
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

from producers.alertmanager import WebhookBody, WebhookRefusedError, webhook_to_events
from producers.publisher import Publisher, PublishError
from producers.quota import IngestQuota
from producers.seed_event import SeedEvent, seed_to_event
from schemas.codec import Codec, make_codec
from schemas.limits import MAX_ALERT_RECORD_BYTES, MAX_EVENT_BYTES, MAX_WEBHOOK_BYTES, topic_max_record_bytes
from schemas.records import AlertEvent
from schemas.topics import DEAD_LETTER
from streams.api.edge import BodyLimit, parse_model, read_body, route_label
from streams.api.intake import InputRefusedError, QuotaExceededError, Refusal, refusal_letter, too_large_reason
from streams.api.loops import Loops
from streams.stages.metrics import StageMetrics, record_in_hand
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


#: Body limits of the core routes; the composition root adds the mounted routers' (``body_limits``),
#: everything else gets ``MAX_SMALL_BODY_BYTES``.
CORE_BODY_LIMITS: Mapping[str, int] = {"/webhook": MAX_WEBHOOK_BYTES, "/events": MAX_EVENT_BYTES}


def create_app(
    *,
    normalize: Normalize,
    publisher: Publisher,
    auth: TenantAuth,
    registry: CollectorRegistry = REGISTRY,
    loops: Loops | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    codec: Codec | None = None,
    body_limits: Mapping[str, int] | None = None,
    topic_prefix: str = "",
    quota: IngestQuota | None = None,
) -> FastAPI:
    """The core routes. ``loops``: the process's background loops, reported by /readyz and /healthz;
    ``codec`` measures records against their limits (the publisher's codec; Avro by default)."""
    app = FastAPI(title="rcaflow", version="0.1.0", docs_url="/docs", redoc_url=None, lifespan=lifespan)
    app.state.auth = auth
    app.add_middleware(BodyLimit, limits={**CORE_BODY_LIMITS, **(body_limits or {})})
    metrics = normalize.context.metrics or StageMetrics(registry)
    sizer = codec or make_codec(None)
    dead_letter_source = {"api_webhook": "alertmanager-webhook", "api_events": "events-api"}

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"), "error": err.get("msg", "")}
            for err in exc.errors()
        ]
        # The route's template, never the raw path: /tools/<anything> must not mint a new series.
        metrics.fail(f"api{route_label(request)}", "RequestValidationError", tenant="")
        first = errors[0] if errors else {"field": "", "error": "invalid body"}
        return JSONResponse(
            status_code=422,
            content={"detail": f"{first['field'] or 'body'}: {first['error']}", "errors": errors},
        )

    @app.exception_handler(InputRefusedError)
    async def _refused(_: Request, exc: InputRefusedError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(QuotaExceededError)
    async def _over_quota(_: Request, exc: QuotaExceededError) -> JSONResponse:
        return exc.response()

    async def refuse(refusal: Refusal, stage: str) -> Exception:
        """Keep the refused input in dead-letter, then answer its 4xx; if even that publish fails, 503."""
        metrics.fail(stage, refusal.error_type, tenant=refusal.tenant)
        logger.warning("%s: refused (%d): %s", stage, refusal.status, refusal.reason,
                       extra={"tenant": refusal.tenant, "stage": stage})
        letter = refusal_letter(refusal, stage=stage, source=dead_letter_source[stage])
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                await publisher.publish(DEAD_LETTER, letter.source_topic, letter)
        except (PublishError, TimeoutError) as exc:
            # Not kept yet: the sender must retry, or the input would be lost.
            logger.warning("%s: could not keep the refused input in dead-letter: %s", stage, exc)
            return HTTPException(503, f"broker unavailable, retry later: {exc}",
                                 headers={"Retry-After": RETRY_AFTER_S})
        return InputRefusedError(refusal)

    async def publish(events: list[AlertEvent], stage: str, *, tenant: str, payload: bytes) -> dict[str, Any]:
        record_in_hand(tenant, None)  # this request's metrics are the tenant's (streams.stages.metrics)
        if quota is not None:
            admission = quota.admit(tenant, len(events), source=dead_letter_source[stage])
            if not admission.admitted:
                logger.info("%s: %s, %d alert(s) deferred to the sender", stage, admission.reason,
                            len(events), extra={"tenant": tenant, "stage": stage})
                raise QuotaExceededError(tenant, len(events), admission.retry_after_s, admission.reason)
        outs = [normalize.accept(event) for event in events]
        for index, out in enumerate(outs):
            # Checked here, where the input enters, uncompressed: a record that fits the broker only
            # compressed, or an alert too big for the Incident that will embed it, never gets a 202.
            limit = min(MAX_ALERT_RECORD_BYTES, topic_max_record_bytes(out.spec.name))
            size = len(sizer.encode(out.record, topic=out.spec.full_name(topic_prefix)))
            if size > limit:
                raise await refuse(Refusal(
                    413, "record_too_large", "RecordTooLarge", tenant, payload,
                    f"alert {index} ({getattr(out.record, 'alert', '')[:80]}) is {size} bytes as a record, over "
                    f"the {limit}-byte limit of one alert (labels and annotations too large or too many)"),
                    stage)
        with metrics.timed(stage):
            try:
                async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                    await asyncio.gather(*(publisher.publish(o.spec, o.key, o.record) for o in outs))
            except PublishError as exc:
                too_large = too_large_reason(exc)
                if too_large is not None:
                    # Permanent: retrying the same request can never fit. 413 so Alertmanager stops.
                    raise await refuse(Refusal(413, "record_too_large", "RecordTooLarge", tenant, payload,
                                               too_large), stage) from exc
                raise _unavailable(stage, exc) from exc
            except TimeoutError as exc:
                raise _unavailable(stage, exc) from exc
        metrics.count(stage, "ok")
        return {
            "accepted": len(outs),
            "events": [
                {"event_id": o.record.event_id, "fingerprint": o.record.fingerprint,
                 "alert_class": o.record.alert_class}
                for o in outs
                if isinstance(o.record, AlertEvent)
            ],
        }

    def _unavailable(stage: str, exc: Exception) -> HTTPException:
        metrics.fail(stage, type(exc).__name__)
        logger.warning("%s: broker did not ack: %s", stage, exc)
        return HTTPException(503, f"broker unavailable, retry later: {exc}", headers={"Retry-After": RETRY_AFTER_S})

    # Both ingest routes take the tenant first and read the body after: FastAPI parses a declared body
    # model before it runs the token check, so an anonymous caller could make us parse anything.
    @app.post("/events", status_code=202, openapi_extra=_json_body(SeedEvent))
    async def post_event(request: Request, tenant: Tenant) -> dict[str, Any]:
        """The seed's event JSON; answers once the event is on the normalized topic."""
        payload = await read_body(request)
        seed = parse_model(payload, SeedEvent)
        event = seed_to_event(seed, tenant=tenant, received_at=datetime.now(UTC), request_id=uuid.uuid4().hex,
                              cluster_names=normalize.cluster_names.get(tenant))
        return await publish([event], "api_events", tenant=tenant, payload=payload)

    @app.post("/webhook", status_code=202, openapi_extra=_json_body(WebhookBody))
    async def post_webhook(request: Request, tenant: Tenant) -> dict[str, Any]:
        """Alertmanager webhook v4; HA peers' duplicates get the same event ids and dedup as replays."""
        payload = await read_body(request)
        body = parse_model(payload, WebhookBody)
        try:
            events = webhook_to_events(body, tenant=tenant, received_at=datetime.now(UTC),
                                       cluster_names=normalize.cluster_names.get(tenant))
        except WebhookRefusedError as exc:
            code = "label_too_large" if exc.status == 413 else "invalid_alert"
            raise await refuse(Refusal(exc.status, code, type(exc).__name__, tenant, payload, exc.message),
                               "api_webhook") from exc
        return await publish(events, "api_webhook", tenant=tenant, payload=payload)

    @app.get("/healthz")
    async def healthz() -> Response:
        """Liveness: unhealthy only when a background loop stayed down past its limit (a restart may heal it)."""
        problems = loops.unhealthy() if loops is not None else []
        if problems:
            return JSONResponse({"status": "unhealthy", "reasons": problems}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        """Readiness: every background loop up (the actions feed caught up); says which is not, and why."""
        report = loops.report() if loops is not None else {}
        if loops is None or loops.ready():
            return JSONResponse({"status": "ready", "loops": report})
        down = sorted(name for name, status in report.items() if status["state"] != "up")
        # One line a person reads first: which loop, in which state, and why.
        why = "; ".join(f"{name} {report[name]['state']}: {report[name]['reason'] or '-'}" for name in down)
        return JSONResponse({"status": "not ready", "reason": why, "not_up": down, "loops": report},
                            status_code=503)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _json_body(model: type[Any]) -> dict[str, Any]:
    """OpenAPI for a body the handler reads itself (after the token check)."""
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": model.model_json_schema()}}}}
