"""Wiring of the Graph producer into the API process: the webhook router and its start/stop.

The lead mounts ``create_msgraph_router(ingest)`` and enters ``msgraph_running(...)`` in the
app lifespan. The webhook answers within Graph's limits: the validation handshake at once,
notifications with 202 as soon as they are verified and spooled; fetching and publishing
happen after the response (a background task, and the maintenance loop for retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import httpx
from fastapi import APIRouter, BackgroundTasks, Request, Response

from producers.msgraph import (
    CheckpointSource,
    FileSpool,
    GraphClient,
    GraphError,
    GraphIngest,
    MemorySpool,
    MsalTokenProvider,
    MsgraphConfig,
    NotificationRejected,
    Spool,
    SpoolError,
    TokenProvider,
)
from producers.publisher import Publisher, PublishError
from producers.quota import IngestQuota
from streams.api.loops import LoopBody, LoopHandle, Loops

logger = logging.getLogger(__name__)

WEBHOOK_PATH = "/msgraph/webhook"
#: The name of the Graph maintenance loop on /readyz.
MSGRAPH_LOOP = "msgraph-maintenance"
#: Graph's validation tokens are short opaque strings; anything longer is not Graph.
MAX_VALIDATION_TOKEN = 4096
_PLAIN = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def create_msgraph_router(ingest: GraphIngest, *, path: str = WEBHOOK_PATH) -> APIRouter:
    """GET+POST ``path``: the validationToken handshake, change and lifecycle notifications."""
    router = APIRouter(tags=["msgraph"])

    def handshake(token: str) -> Response:
        if len(token) > MAX_VALIDATION_TOKEN:
            return Response("validation token too long", status_code=400, media_type="text/plain")
        return Response(token, status_code=200, media_type="text/plain", headers=_PLAIN)

    @router.get(path)
    async def validate(request: Request) -> Response:
        token = request.query_params.get("validationToken")
        if token is None:
            return Response("missing validationToken", status_code=400, media_type="text/plain")
        return handshake(token)

    @router.post(path)
    async def notify(request: Request, background: BackgroundTasks) -> Response:
        token = request.query_params.get("validationToken")
        if token is not None:
            return handshake(token)
        body = await request.body()
        try:
            accepted, rejected = await asyncio.to_thread(ingest.accept, body)
        except NotificationRejected as exc:
            return Response(str(exc), status_code=400, media_type="text/plain")
        except SpoolError as exc:
            # Not persisted: make Graph retry rather than acknowledge a notification we could lose.
            logger.error("Graph notification not spooled: %s", exc)
            return Response("cannot persist notification", status_code=503, media_type="text/plain",
                            headers={"Retry-After": "5"})
        if accepted == 0 and rejected:
            return Response("clientState does not match", status_code=403, media_type="text/plain")
        if accepted:
            background.add_task(_drain, ingest)
        return Response(status_code=202)

    return router


async def _drain(ingest: GraphIngest) -> None:
    """Runs after the 202 went out; failures stay in the spool for the maintenance loop."""
    try:
        await ingest.drain()
    except (GraphError, SpoolError) as exc:
        logger.warning("Graph notification processing deferred: %s", exc)


def make_spool(config: MsgraphConfig) -> Spool:
    if config.spool_dir is None:
        logger.warning("msgraph.spool_dir unset: notifications live in memory until processed "
                       "(a crash is healed only by the next delta catch-up)")
        return MemorySpool()
    return FileSpool(config.spool_dir)


def build_msgraph(
    config: MsgraphConfig,
    publisher: Publisher,
    http: httpx.AsyncClient,
    *,
    tokens: TokenProvider | None = None,
    spool: Spool | None = None,
    quota: IngestQuota | None = None,
    mail_cost: Callable[[bytes], int] | None = None,
) -> GraphIngest:
    """The composition of token provider, Graph client, spool and ingest for one process."""
    provider = tokens or MsalTokenProvider(
        client_id=config.client_id,
        client_secret=config.client_secret.get_secret_value(),
        authority=config.authority,
        validate_authority=config.authority_host == "https://login.microsoftonline.com",
    )
    client = GraphClient(http, provider, base_url=config.graph_url, retry=config.retry)
    return GraphIngest(config, client, publisher, spool or make_spool(config), quota=quota, mail_cost=mail_cost)


def msgraph_maintenance(
    ingest: GraphIngest,
    *,
    ensure_subscriptions: bool = True,
    interval_seconds: float = 60.0,
    initial_delay_seconds: float = 5.0,
) -> LoopBody:
    """The Graph duty of the API process as a supervised loop body: catch up once, then keep
    subscriptions renewed and the spool drained. An unexpected failure ends the body; the
    supervisor restarts it with backoff (it used to end the task for good)."""
    caught_up = False

    async def body(handle: LoopHandle) -> None:
        nonlocal caught_up
        handle.up()
        if not caught_up:
            # Off the start-up path: a large folder or a throttled Graph must not delay the API.
            try:
                await ingest.catch_up_all()
                await ingest.drain()
            except (GraphError, PublishError) as exc:
                logger.warning("initial Graph catch-up failed (retried by the maintenance loop): %s", exc)
            caught_up = True
            delay = initial_delay_seconds
        else:
            delay = min(initial_delay_seconds, interval_seconds)
        await ingest.maintain(handle.stop_event, interval_seconds, ensure_subscriptions=ensure_subscriptions,
                              initial_delay_seconds=delay)

    return body


@contextlib.asynccontextmanager
async def msgraph_running(
    ingest: GraphIngest,
    checkpoints: CheckpointSource | None,
    *,
    ensure_subscriptions: bool = True,
    interval_seconds: float = 60.0,
    initial_delay_seconds: float = 5.0,
    loops: Loops | None = None,
) -> AsyncIterator[GraphIngest]:
    """Restore state, then run :func:`msgraph_maintenance` as the loop ``msgraph-maintenance`` of
    ``loops`` (the caller starts and stops them), or of loops of its own when none are given."""
    if checkpoints is not None:
        # Before the first drain, so nothing published before the restart goes out again.
        await asyncio.to_thread(ingest.restore, checkpoints)
    own = loops is None
    supervisor = loops if loops is not None else Loops()
    supervisor.add(MSGRAPH_LOOP, msgraph_maintenance(
        ingest, ensure_subscriptions=ensure_subscriptions, interval_seconds=interval_seconds,
        initial_delay_seconds=initial_delay_seconds))
    if own:
        supervisor.start()
    try:
        yield ingest
    finally:
        if own:
            await supervisor.stop()
