"""Entry points of the long-running processes: api, worker, executor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import uvicorn

from executors import ConfirmPolicy
from producers.publisher import KafkaPublisher
from streams.api import TenantAuth
from streams.executor_service import ExecutorService
from streams.metrics import StageMetrics
from streams.runtime import ConfigurationError, build_codec, build_pipeline, require_bootstrap
from streams.settings import Settings, producer_config
from streams.topics_admin import ensure_topics
from streams.worker import build_app

logger = logging.getLogger(__name__)


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
    from streams.api_process import build_api

    app = build_api(settings, bootstrap, build_pipeline(settings, StageMetrics()), auth)
    logger.info("api listening on http://%s:%d", settings.api.host, settings.api.port)
    uvicorn.run(app, host=settings.api.host, port=settings.api.port, log_level="warning", access_log=False)


def run_worker(settings: Settings) -> None:
    import faust
    from prometheus_client import start_http_server

    bootstrap = require_bootstrap(settings)
    ensure_topics(bootstrap, settings.kafka.topic_prefix)
    if settings.worker.metrics_port:
        start_http_server(settings.worker.metrics_port, addr=settings.worker.metrics_host)
    pipeline = build_pipeline(settings, StageMetrics(), engines=True)
    app = build_app(settings, bootstrap, pipeline)
    logger.info("worker %s starting on %s", app.conf.id, bootstrap)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


def run_executor(settings: Settings) -> None:
    from prometheus_client import start_http_server

    from streams.rca_wiring import build_tool_registry

    bootstrap = require_bootstrap(settings)
    ensure_topics(bootstrap, settings.kafka.topic_prefix)
    if settings.executor.metrics_port:
        start_http_server(settings.executor.metrics_port, addr=settings.executor.metrics_host)
    codec = build_codec(settings)

    async def main() -> None:
        publisher = KafkaPublisher(bootstrap, codec, settings.kafka.topic_prefix, producer_config(settings.kafka))
        registry = build_tool_registry(settings)
        service = ExecutorService(
            bootstrap=bootstrap,
            codec=codec,
            publisher=publisher,
            registry=registry,
            topic_prefix=settings.kafka.topic_prefix,
            group_id=settings.executor.group_id,
            dry_run=settings.executor.dry_run,
            fast_rebalance=settings.kafka.fast_rebalance,
            confirm=ConfirmPolicy(within_s=settings.executor.confirm_within_s,
                                  every_s=settings.executor.confirm_every_s),
            concurrency=settings.executor.concurrency,
            stop_grace_s=settings.executor.stop_grace_s,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, service.stop)
        try:
            await service.run()
        finally:
            await publisher.close()
            await registry.aclose()

    asyncio.run(main())
