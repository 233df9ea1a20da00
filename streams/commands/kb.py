"""``rcaflow kb``: the knowledge-base consumer, its retention, and a look at similar past incidents."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from typing import TYPE_CHECKING, Any

import click

from streams.commands.context import settings_of
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.kb.analytics_store import AnalyticsStore
    from streams.kb.consumer import KbMetrics
    from streams.kb.store import KbStore


def _store(settings: Settings) -> KbStore:
    from streams.kb.store import KbStore, make_client

    if not settings.kb.enabled:
        raise click.UsageError("set kb.elasticsearch_url (RCAFLOW_KB__ELASTICSEARCH_URL) first")
    return KbStore(make_client(settings.kb), prefix=settings.kb.index_prefix, replicas=settings.kb.replicas)


def _consume_until_stopped(settings: Settings, bootstrap: str, client: dict[str, Any],
                           store: KbStore | AnalyticsStore, *, group_id: str,
                           metrics: KbMetrics | None = None) -> None:
    """Run one knowledge-base style consumer group until SIGINT/SIGTERM, then close the Elasticsearch client.

    ``kb run`` and ``kb analytics`` differ only in their store and group: one loop keeps their signal
    handling and shutdown the same.
    """
    from streams.kb.consumer import KbConsumer
    from streams.wiring.runtime import build_codec

    async def main() -> None:
        consumer = KbConsumer(bootstrap=bootstrap, extra=client, codec=build_codec(settings), store=store,
                              topic_prefix=settings.kafka.topic_prefix, group_id=group_id,
                              batch_size=settings.kb.batch_size, fast_rebalance=settings.kafka.fast_rebalance,
                              metrics=metrics)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, consumer.stop)
        await consumer.run()

    try:
        asyncio.run(main())
    finally:
        store.client.close()


@click.group("kb")
def kb() -> None:
    """The incident knowledge base in Elasticsearch: consumer, retention, similar incidents, stats."""


@kb.command("run")
@click.pass_context
def run(ctx: click.Context) -> None:
    """Consume incidents, rca-result, actions and approvals into one document per incident, until SIGTERM."""
    from prometheus_client import start_http_server

    from streams.settings import client_config
    from streams.wiring.runtime import require_bootstrap
    from streams.wiring.topics_admin import ensure_topics

    settings = settings_of(ctx)
    store = _store(settings)
    bootstrap = require_bootstrap(settings)
    client = client_config(settings.kafka, bootstrap)
    ensure_topics(bootstrap, settings.kafka.topic_prefix, extra=client)
    store.install_template()
    if settings.kb.metrics_port:
        from prometheus_client import REGISTRY

        from streams.kb.analytics import KbStatsCollector
        from streams.wiring.build_info import register_build_info
        from streams.wiring.consumer_lag import export_consumer_lag

        REGISTRY.register(KbStatsCollector(store.client, settings.kb.index_prefix))
        register_build_info()
        export_consumer_lag(client, [f"{settings.kafka.topic_prefix}{settings.kb.group_id}"],
                            topic_prefix=settings.kafka.topic_prefix)
        start_http_server(settings.kb.metrics_port, addr=settings.kb.metrics_host)

    _consume_until_stopped(settings, bootstrap, client, store, group_id=settings.kb.group_id)


@kb.command("analytics")
@click.pass_context
def analytics(ctx: click.Context) -> None:
    """Keep the daily analytics documents (per tenant, day and class) that `rcaflow stats` reads, until SIGTERM.

    Its own consumer group (kb.analytics_group_id): Elasticsearch being slow or down only makes it fall
    behind (rcaflow_analytics_lag), never the pipeline or the knowledge base.
    """
    from prometheus_client import start_http_server

    from streams.kb.analytics_store import AnalyticsStore
    from streams.kb.consumer import KbMetrics
    from streams.kb.store import make_client
    from streams.settings import client_config
    from streams.wiring.runtime import require_bootstrap
    from streams.wiring.topics_admin import ensure_topics

    settings = settings_of(ctx)
    if not settings.kb.enabled:
        raise click.UsageError("set kb.elasticsearch_url (RCAFLOW_KB__ELASTICSEARCH_URL) first")
    store = AnalyticsStore(make_client(settings.kb), prefix=settings.kb.analytics_prefix,
                           replicas=settings.kb.replicas)
    bootstrap = require_bootstrap(settings)
    client = client_config(settings.kafka, bootstrap)
    ensure_topics(bootstrap, settings.kafka.topic_prefix, extra=client)
    store.install_template()
    metrics = KbMetrics(name="rcaflow_analytics")
    if settings.kb.analytics_metrics_port:
        from prometheus_client import REGISTRY

        from streams.kb.analytics import AnalyticsCollector
        from streams.wiring.build_info import register_build_info
        from streams.wiring.consumer_lag import export_consumer_lag

        REGISTRY.register(AnalyticsCollector(store.client, settings.kb.analytics_prefix))
        register_build_info()
        export_consumer_lag(client, [f"{settings.kafka.topic_prefix}{settings.kb.analytics_group_id}"],
                            topic_prefix=settings.kafka.topic_prefix)
        start_http_server(settings.kb.analytics_metrics_port, addr=settings.kb.metrics_host)

    _consume_until_stopped(settings, bootstrap, client, store, group_id=settings.kb.analytics_group_id,
                           metrics=metrics)


@kb.command("prune")
@click.option("--keep-months", type=int, help="Months to keep (default: kb.retention_months).")
@click.pass_context
def prune(ctx: click.Context, keep_months: int | None) -> None:
    """Delete whole month indices older than the retention (the knowledge base's and the analytics' facts)."""
    from streams.kb.store import KbStore

    settings = settings_of(ctx)
    store = _store(settings)
    facts = KbStore(store.client, prefix=f"{settings.kb.analytics_prefix}-facts")
    for name in [*store.prune(keep_months or settings.kb.retention_months),
                 *facts.prune(keep_months or settings.kb.retention_months)]:
        click.echo(f"deleted {name}")


@kb.command("similar")
@click.option("--tenant", required=True)
@click.option("--alert", required=True, help="Alert name.")
@click.option("--class", "alert_class", default="", help="Alert class.")
@click.option("--label", "labels", multiple=True, help="key=value, repeatable.")
@click.pass_context
def similar(ctx: click.Context, tenant: str, alert: str, alert_class: str, labels: tuple[str, ...]) -> None:
    """Print the past resolved incidents of TENANT most like this alert, as JSON lines."""
    from streams.kb.similar import SimilarQuery, find_similar

    settings = settings_of(ctx)
    store = _store(settings)
    pairs = dict(label.split("=", 1) for label in labels if "=" in label)
    found = find_similar(store.client, settings.kb.index_prefix,
                         SimilarQuery(tenant=tenant, alert=alert, alert_class=alert_class, labels=pairs),
                         k=settings.kb.similar_k or 3)
    for item in found.incidents:
        click.echo(json.dumps(item.model_dump(mode="json"), ensure_ascii=False))
    click.echo(found.summary_line() or "no similar resolved incident", err=True)


@kb.command("stats")
@click.option("--tenant", help="Only this tenant.")
@click.option("--since", default="30d", show_default=True, help="Incidents opened since: 24h, 7d, or an ISO time.")
@click.pass_context
def stats(ctx: click.Context, tenant: str | None, since: str) -> None:
    """Per tenant and class, as JSON lines: incidents, MTTA, MTTR, LLM latency/tokens, adoption, rollbacks."""
    from streams.commands.replay import parse_since
    from streams.kb.analytics import class_stats

    settings = settings_of(ctx)
    store = _store(settings)
    for row in class_stats(store.client, settings.kb.index_prefix, tenant=tenant, since=parse_since(since)):
        click.echo(json.dumps({**row.model_dump(mode="json"), "adoption_rate": row.adoption_rate,
                               "rollback_rate": row.rollback_rate}, ensure_ascii=False))
