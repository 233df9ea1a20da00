"""``rcaflow api``: the core app plus the optional routers (approvals, tools, Microsoft Graph) and their lifecycles."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import uvicorn
from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry

from producers.publisher import KafkaPublisher
from streams.api.app import TenantAuth, create_app
from streams.settings import Settings, producer_config
from streams.stages.metrics import StageMetrics
from streams.wiring.http_clients import make_async_client
from streams.wiring.runtime import ConfigurationError, Stages, build_codec, build_stages, require_bootstrap

logger = logging.getLogger(__name__)


def build_api(
    settings: Settings, bootstrap: str, stages: Stages, auth: TenantAuth, registry: CollectorRegistry = REGISTRY
) -> FastAPI:
    """Everything the API process serves; background work starts and stops with the app."""
    codec = build_codec(settings)
    publisher = KafkaPublisher(bootstrap, codec, settings.kafka.topic_prefix,
                               producer_config(settings.kafka))
    feed_ready = asyncio.Event()
    lifespans: list[contextlib.AbstractAsyncContextManager[None]] = []

    from executors import ExecutionOutcome
    from schemas.records import ActionEvent
    from schemas.topics import ACTIONS
    from streams.api.actions_view import ActionsFeed, InMemoryPendingActions
    from streams.api.tools import build_tools_router, namespace_scope
    from streams.wiring.tools import build_evidence_toolset, build_tool_registry

    # One view of the actions topic serves the approval callbacks and the /tools write checks.
    pending = InMemoryPendingActions()
    feed = ActionsFeed(bootstrap=bootstrap, codec=codec, pending=pending,
                       topic_prefix=settings.kafka.topic_prefix)

    @contextlib.asynccontextmanager
    async def feed_running() -> AsyncIterator[None]:
        task = asyncio.create_task(feed.run())
        waiter = asyncio.create_task(_mirror(feed.caught_up, feed_ready))
        try:
            yield
        finally:
            feed.stop()
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    lifespans.append(feed_running())
    app_routers = []

    approvals = settings.approvals
    if approvals.slack_signing_secret or approvals.dingtalk_app_secret or approvals.link_secret:
        from executors.approvals.links import LinkSigner
        from schemas.topics import APPROVALS, DEAD_LETTER
        from streams.api.approvals import ApprovalsConfig, build_approvals_router
        from streams.stages.approval import Rejection, refusal_letter

        config = ApprovalsConfig(
            approvers={tenant: frozenset(ids) for tenant, ids in approvals.approvers.items()},
            slack_signing_secret=approvals.slack_signing_secret,
            dingtalk_app_secret=approvals.dingtalk_app_secret,
            link_signer=LinkSigner(approvals.link_secret, ttl=timedelta(minutes=approvals.link_ttl_minutes))
            if approvals.link_secret else None,
            link_identity_header=approvals.link_identity_header,
        )
        async def keep_refusal(rejection: Rejection) -> None:
            """Refused approval requests are bad input: kept in dead-letter, from where the audit agent
            chains them (the audit chain has one writer per tenant, the worker)."""
            source = APPROVALS.full_name(settings.kafka.topic_prefix)
            await publisher.publish(DEAD_LETTER, source, refusal_letter(rejection, source_topic=source))

        app_routers.append(build_approvals_router(config=config, pending=pending, publisher=publisher,
                                                  http=make_async_client(settings.http),
                                                  on_rejection=keep_refusal))

    async def record_tool_run(action: ActionEvent, outcome: ExecutionOutcome) -> None:
        """Runs through /tools leave the same trail on actions (and so in audit) as the executor's."""
        if action.incident_id == "tools-api":
            return  # read-only diagnostics asked for by a person; nothing changed anywhere
        record = outcome.to_action_event(action, at=datetime.now(UTC))
        await publisher.publish(ACTIONS, f"{record.tenant}:{record.action_id}", record)

    app_routers.append(build_tools_router(
        evidence=build_evidence_toolset(settings), registry=build_tool_registry(settings), pending=pending,
        dry_run=settings.executor.dry_run, on_executed=record_tool_run,
        scope=namespace_scope({tenant: t.namespaces for tenant, t in settings.tenants.items()}),
    ))

    if settings.msgraph is not None:
        from producers.imap.state import KafkaCheckpointReader
        from streams.api.msgraph import build_msgraph, create_msgraph_router, msgraph_running

        ingest = build_msgraph(settings.msgraph, publisher, make_async_client(settings.http))
        app_routers.append(create_msgraph_router(ingest))
        reader = KafkaCheckpointReader(bootstrap, codec, prefix=settings.kafka.topic_prefix)
        lifespans.append(_as_none(msgraph_running(ingest, reader)))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for cm in lifespans:
                await stack.enter_async_context(cm)
            yield
        await publisher.close()

    app = create_app(normalize=stages.normalize, publisher=publisher, auth=auth, ready=feed_ready.is_set,
                     registry=registry, lifespan=lifespan)
    for router in app_routers:
        app.include_router(router)
    return app


async def _mirror(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


@contextlib.asynccontextmanager
async def _as_none(cm: contextlib.AbstractAsyncContextManager[object]) -> AsyncIterator[None]:
    async with cm:
        yield


def run_api(settings: Settings) -> None:
    bootstrap = require_bootstrap(settings)
    tokens = {tenant: t.token for tenant, t in settings.tenants.items()}
    auth = TenantAuth(tokens, settings.api.default_tenant)
    if not auth.enabled and not settings.api.is_loopback():
        raise ConfigurationError(
            f"refusing to serve on {settings.api.host} without tenant tokens: set "
            "RCAFLOW_TENANTS__<tenant>__TOKEN, or bind to 127.0.0.1"
        )
    if not auth.enabled:
        logger.warning("no tenant tokens configured: API open on loopback, every request is tenant %r",
                       settings.api.default_tenant)
    app = build_api(settings, bootstrap, build_stages(settings, StageMetrics()), auth)
    logger.info("api listening on http://%s:%d", settings.api.host, settings.api.port)
    uvicorn.run(app, host=settings.api.host, port=settings.api.port, log_level="warning", access_log=False)
