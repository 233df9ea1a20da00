"""The API process: the core app plus the optional routers (approvals, Microsoft Graph) and their lifecycles."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from fastapi import FastAPI

from producers.publisher import KafkaPublisher
from streams.api import TenantAuth, create_app
from streams.http_clients import make_async_client
from streams.pipeline import Pipeline
from streams.settings import Settings, producer_config

logger = logging.getLogger(__name__)


def build_api(settings: Settings, bootstrap: str, pipeline: Pipeline, auth: TenantAuth) -> FastAPI:
    """Everything the API process serves; background work starts and stops with the app."""
    publisher = KafkaPublisher(bootstrap, pipeline.codec, settings.kafka.topic_prefix,
                               producer_config(settings.kafka))
    feed_ready = asyncio.Event()
    lifespans: list[contextlib.AbstractAsyncContextManager[None]] = []

    approvals = settings.approvals
    channels_on = approvals.slack_signing_secret or approvals.dingtalk_app_secret or approvals.link_secret
    app_routers = []
    if channels_on:
        from executors.approvals.links import LinkSigner
        from streams.approvals import (
            ActionsFeed,
            ApprovalsConfig,
            InMemoryPendingActions,
            build_approvals_router,
        )

        pending = InMemoryPendingActions()
        config = ApprovalsConfig(
            approvers={tenant: frozenset(ids) for tenant, ids in approvals.approvers.items()},
            slack_signing_secret=approvals.slack_signing_secret,
            dingtalk_app_secret=approvals.dingtalk_app_secret,
            link_signer=LinkSigner(approvals.link_secret, ttl=timedelta(minutes=approvals.link_ttl_minutes))
            if approvals.link_secret else None,
            link_identity_header=approvals.link_identity_header,
        )
        app_routers.append(build_approvals_router(config=config, pending=pending, publisher=publisher,
                                                  http=make_async_client(settings.http)))
        feed = ActionsFeed(bootstrap=bootstrap, codec=pipeline.codec, pending=pending,
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
    else:
        feed_ready.set()

    if settings.msgraph is not None:
        from producers.imap.state import KafkaCheckpointReader
        from streams.msgraph_api import build_msgraph, create_msgraph_router, msgraph_running

        ingest = build_msgraph(settings.msgraph, publisher, make_async_client(settings.http))
        app_routers.append(create_msgraph_router(ingest))
        reader = KafkaCheckpointReader(bootstrap, pipeline.codec, prefix=settings.kafka.topic_prefix)
        lifespans.append(_as_none(msgraph_running(ingest, reader)))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for cm in lifespans:
                await stack.enter_async_context(cm)
            yield
        await publisher.close()

    app = create_app(pipeline=pipeline, publisher=publisher, auth=auth, ready=feed_ready.is_set,
                     lifespan=lifespan)
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
