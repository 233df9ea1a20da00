"""``rcaflow kb``: the knowledge-base consumer, its retention, and a look at similar past incidents."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from typing import TYPE_CHECKING

import click

from streams.commands.context import settings_of
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.kb.store import KbStore


def _store(settings: Settings) -> KbStore:
    from streams.kb.store import KbStore, make_client

    if not settings.kb.enabled:
        raise click.UsageError("set kb.elasticsearch_url (RCAFLOW_KB__ELASTICSEARCH_URL) first")
    return KbStore(make_client(settings.kb), prefix=settings.kb.index_prefix, replicas=settings.kb.replicas)


@click.group("kb")
def kb() -> None:
    """The incident knowledge base in Elasticsearch: consumer, retention, similar incidents, stats."""


@kb.command("run")
@click.pass_context
def run(ctx: click.Context) -> None:
    """Consume incidents, rca-result, actions and approvals into one document per incident, until SIGTERM."""
    from prometheus_client import start_http_server

    from streams.kb.consumer import KbConsumer
    from streams.settings import client_config
    from streams.wiring.runtime import build_codec, require_bootstrap
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

        REGISTRY.register(KbStatsCollector(store.client, settings.kb.index_prefix))
        start_http_server(settings.kb.metrics_port, addr=settings.kb.metrics_host)

    async def main() -> None:
        consumer = KbConsumer(bootstrap=bootstrap, extra=client, codec=build_codec(settings), store=store,
                              topic_prefix=settings.kafka.topic_prefix, group_id=settings.kb.group_id,
                              batch_size=settings.kb.batch_size, fast_rebalance=settings.kafka.fast_rebalance)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, consumer.stop)
        await consumer.run()

    try:
        asyncio.run(main())
    finally:
        store.client.close()


@kb.command("prune")
@click.option("--keep-months", type=int, help="Months to keep (default: kb.retention_months).")
@click.pass_context
def prune(ctx: click.Context, keep_months: int | None) -> None:
    """Delete whole month indices older than the retention."""
    settings = settings_of(ctx)
    store = _store(settings)
    for name in store.prune(keep_months or settings.kb.retention_months):
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
