"""``rcaflow executor``: the executor process, its tool backends, its metrics port, and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping
from datetime import timedelta

from executors import ConfirmPolicy
from producers.publisher import KafkaPublisher
from producers.renewing_publisher import RenewingPublisher, leaders_known
from schemas.codec import Codec
from schemas.topics import ACTIONS
from streams.executor.service import ExecutorService
from streams.executor.verify import ActionVerifier
from streams.settings import Settings, client_config, producer_config
from streams.wiring.decision_keys import build_decision_keys
from streams.wiring.runtime import build_codec, build_policies, build_scopes, require_bootstrap
from streams.wiring.topics_admin import ensure_topics

logger = logging.getLogger(__name__)


def build_verifier(settings: Settings) -> ActionVerifier:
    """What the executor checks every approved record against: the decision keys, the policy, the tenants'
    approvers and write scopes (a ConfigurationError when no decision key is configured)."""
    from streams.wiring.tenants import build_tenant_policies

    policies = build_policies(settings)
    return ActionVerifier(build_decision_keys(settings, role="executor"), policies,
                          approvers={tenant: frozenset(ids) for tenant, ids in settings.approvals.approvers.items()},
                          scopes=build_scopes(settings),
                          auto_valid_for=timedelta(minutes=settings.security.auto_approval_valid_minutes),
                          tenant_policies=build_tenant_policies(settings, policies))


def build_publisher(settings: Settings, bootstrap: str, codec: Codec,
                    client: Mapping[str, str | int]) -> RenewingPublisher:
    """The executor's writer: a producer that stays stuck after the broker came back is replaced once a key has
    failed for ``executor.producer_renew_after_s`` (producers/renewing_publisher.py)."""
    def new_producer() -> KafkaPublisher:
        return KafkaPublisher(bootstrap, codec, settings.kafka.topic_prefix, producer_config(settings.kafka))

    actions_topic = ACTIONS.full_name(settings.kafka.topic_prefix)
    return RenewingPublisher(new_producer, probe=lambda: leaders_known(client, actions_topic),
                             stuck_after_s=settings.executor.producer_renew_after_s, name="executor")


def run_executor(settings: Settings) -> None:
    from prometheus_client import start_http_server

    from streams.wiring.tools import build_tool_registry

    verifier = build_verifier(settings)  # first: without a decision key there is nothing it may run
    bootstrap = require_bootstrap(settings)
    client = client_config(settings.kafka, bootstrap)
    # Also the start-up check: refused credentials end the process here, in one line (KafkaAuthError).
    ensure_topics(bootstrap, settings.kafka.topic_prefix, extra=client)
    if settings.executor.metrics_port:
        from streams.wiring.build_info import register_build_info
        from streams.wiring.consumer_lag import export_consumer_lag

        register_build_info()
        export_consumer_lag(client, [f"{settings.kafka.topic_prefix}{settings.executor.group_id}"],
                            topic_prefix=settings.kafka.topic_prefix)
        start_http_server(settings.executor.metrics_port, addr=settings.executor.metrics_host)
    codec = build_codec(settings)

    async def main() -> None:
        publisher = build_publisher(settings, bootstrap, codec, client)
        registry = build_tool_registry(settings)
        service = ExecutorService(
            bootstrap=bootstrap,
            extra=client,
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
            verifier=verifier,
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
