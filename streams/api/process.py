"""``rcaflow api``: the core app plus the optional routers (approvals, tools, Microsoft Graph) and their lifecycles."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import uvicorn
from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry

from policies.tenant_scope import TenantScope
from producers.publisher import KafkaPublisher
from schemas.limits import MAX_APPROVAL_CALLBACK_BYTES, MAX_MSGRAPH_NOTIFICATION_BYTES
from streams.api.app import TenantAuth, create_app
from streams.api.loops import Loops, following
from streams.settings import Settings, client_config, producer_config
from streams.stages.metrics import StageMetrics
from streams.wiring.http_clients import make_async_client
from streams.wiring.runtime import ConfigurationError, Stages, build_codec, build_stages, require_bootstrap
from streams.wiring.tenants import build_ingest_quota, build_mail_cost

logger = logging.getLogger(__name__)


def build_api(
    settings: Settings, bootstrap: str, stages: Stages, auth: TenantAuth, registry: CollectorRegistry = REGISTRY
) -> FastAPI:
    """Everything the API process serves; background work starts and stops with the app."""
    codec = build_codec(settings)
    publisher = KafkaPublisher(bootstrap, codec, settings.kafka.topic_prefix,
                               producer_config(settings.kafka))
    lifespans: list[contextlib.AbstractAsyncContextManager[None]] = []
    # Every background loop of this process: restarted with backoff, reported on /readyz and /healthz.
    loops = Loops(max_backoff_s=settings.api.loop_backoff_max_s, unhealthy_after_s=settings.api.unhealthy_after_s)

    from streams.api.actions_view import ActionsFeed, InMemoryPendingActions
    from streams.api.msgraph import WEBHOOK_PATH
    from streams.api.outcomes import ActionOutcomes
    from streams.api.tools import ExecutorPath, build_tools_router
    from streams.wiring.runtime import build_scopes
    from streams.wiring.tools import build_evidence_toolset, build_tool_registry

    # One view of the actions topic serves the approval callbacks and the /tools write checks.
    pending = InMemoryPendingActions()
    client = client_config(settings.kafka, bootstrap)  # every consumer below: address, security, kafka.client
    feed = ActionsFeed(bootstrap=bootstrap, codec=codec, pending=pending,
                       topic_prefix=settings.kafka.topic_prefix, extra=client)

    outcomes = ActionOutcomes()  # /tools writes wait here for the executor's answer
    feed.listeners.append(outcomes.see)
    # Ready once every view the API decides on has read its topic to the end (each loop says when).
    loops.add("actions-feed", feed.run, waiting_for="the actions topic read to its end")
    app_routers = []

    approvals = settings.approvals
    chat = bool(approvals.slack_signing_secret or approvals.dingtalk_callback_token or approvals.link_secret)
    steps = None  # the decision steps the chat callbacks and POST /actions/{id}/approve|reject share
    if chat or approvals.api_tokens:
        from schemas.topics import APPROVALS, DEAD_LETTER
        from streams.api.approvals import ApprovalSteps, approvals_config, build_approvals_router, claims_memory
        from streams.api.claims import ApprovalsFeed, SharedClaims
        from streams.stages.approval import Rejection, refusal_letter
        from streams.wiring.decision_keys import build_approval_keys

        config = approvals_config(approvals, stages.policies, build_approval_keys(settings, role="api"))
        # The approvals topic is the replay memory every replica shares; ready once it has been read.
        shared_claims = SharedClaims(keep=claims_memory(approvals), keys=config.approval_keys)
        loops.add("approvals-feed", following(lambda: ApprovalsFeed(
            bootstrap=bootstrap, codec=codec, claims=shared_claims, topic_prefix=settings.kafka.topic_prefix,
            extra=client)), waiting_for="the approvals topic read to its end")
        async def keep_refusal(rejection: Rejection) -> None:
            """Refused approval requests are bad input: kept in dead-letter, from where the audit agent
            chains them (the audit chain has one writer per tenant, the worker)."""
            source = APPROVALS.full_name(settings.kafka.topic_prefix)
            await publisher.publish(DEAD_LETTER, source, refusal_letter(rejection, source_topic=source))

        steps = ApprovalSteps(config, pending, publisher, shared_claims, None, keep_refusal, lambda: datetime.now(UTC))
        if chat:
            app_routers.append(build_approvals_router(config=config, pending=pending, publisher=publisher,
                                                      claims=shared_claims, http=make_async_client(settings.http),
                                                      on_rejection=keep_refusal))

    # The incident API (docs/incidents-api.md): its own view of five topics, every replica reads everything.
    from streams.api.incidents_routes import ApproverTokens, PendingApprovalsCollector, build_incidents_router
    from streams.api.incidents_view import IncidentsFeed, IncidentsView

    incidents = IncidentsView(keep=timedelta(hours=settings.api.incidents_keep_hours),
                              max_incidents=settings.api.incidents_max,
                              approval_keys=steps.config.approval_keys if steps is not None else None)
    incidents_feed = IncidentsFeed(bootstrap=bootstrap, codec=codec, view=incidents,
                                   topic_prefix=settings.kafka.topic_prefix, extra=client)
    loops.add("incidents-feed", incidents_feed.run,
              waiting_for="the incidents, rca-result, actions, approvals and audit topics read to their end")
    registry.register(PendingApprovalsCollector(incidents, settings.tenants))  # type: ignore[arg-type]
    app_routers.append(build_incidents_router(view=incidents, approver_tokens=ApproverTokens(approvals.api_tokens),
                                              steps=steps))
    from streams.api.console import build_console_router

    app_routers.append(build_console_router())

    quota = build_ingest_quota(settings, registry)  # one per process: shared by /events, /webhook and Graph
    scopes = build_scopes(settings)
    if not settings.tenants:
        # No tenants configured (loopback only, see run_api): the one default tenant, unscoped, which
        # policies.tenant_scope makes read-only.
        scopes = {settings.api.default_tenant: TenantScope(tenant=settings.api.default_tenant)}
    # Writes run only in the executor (one execution path): the API hands the approved record over and
    # waits for the outcome on the actions feed. Reads stay here.
    app_routers.append(build_tools_router(
        evidence=build_evidence_toolset(settings), registry=build_tool_registry(settings), pending=pending,
        scopes=scopes, netprobe_targets=settings.evidence.netprobe_targets.keys(),
        executor=ExecutorPath(publisher, outcomes, wait_s=settings.api.tools_wait_s),
        call_timeout_s=settings.evidence.call_timeout_s,
    ))

    if settings.msgraph is not None:
        from producers.imap.state import KafkaCheckpointReader
        from streams.api.msgraph import build_msgraph, create_msgraph_router, msgraph_running

        ingest = build_msgraph(settings.msgraph, publisher, make_async_client(settings.http), quota=quota,
                               mail_cost=build_mail_cost(settings) if quota is not None else None)
        from producers.msgraph.metrics import BodiesFetchedCollector, SubscriptionExpiryCollector

        registry.register(SubscriptionExpiryCollector(ingest.subscriptions))
        registry.register(BodiesFetchedCollector(ingest))
        app_routers.append(create_msgraph_router(ingest))
        reader = KafkaCheckpointReader(bootstrap, codec, prefix=settings.kafka.topic_prefix, extra=client)
        lifespans.append(_as_none(msgraph_running(ingest, reader, loops=loops)))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for cm in lifespans:
                await stack.enter_async_context(cm)
            loops.start()
            try:
                yield
            finally:
                await loops.stop()
        await publisher.close()

    app = create_app(normalize=stages.normalize, publisher=publisher, auth=auth, loops=loops, codec=codec,
                     registry=registry, lifespan=lifespan, topic_prefix=settings.kafka.topic_prefix,
                     quota=quota,
                     body_limits={WEBHOOK_PATH: MAX_MSGRAPH_NOTIFICATION_BYTES,
                                  "/approvals/slack": MAX_APPROVAL_CALLBACK_BYTES,
                                  "/approvals/dingtalk": MAX_APPROVAL_CALLBACK_BYTES})
    for router in app_routers:
        app.include_router(router)
    return app


@contextlib.asynccontextmanager
async def _as_none(cm: contextlib.AbstractAsyncContextManager[object]) -> AsyncIterator[None]:
    async with cm:
        yield


def run_api(settings: Settings) -> None:
    from streams.wiring.kafka_client import check_cluster

    bootstrap = require_bootstrap(settings)
    # Refused credentials end the process here, in one line (KafkaAuthError), rather than in a feed that retries.
    check_cluster(client_config(settings.kafka, bootstrap))
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
    from streams.wiring.build_info import register_build_info

    register_build_info()
    app = build_api(settings, bootstrap, build_stages(settings, StageMetrics(tenants=settings.tenants)), auth)
    logger.info("api listening on http://%s:%d", settings.api.host, settings.api.port)
    uvicorn.run(app, host=settings.api.host, port=settings.api.port, log_level="warning", access_log=False)
