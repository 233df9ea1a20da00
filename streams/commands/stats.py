"""``rcaflow stats --since 7d``: per alert class, what came in, how fast it was analysed, what ran, how it ended.

Two sources, and the output says which it used: the daily documents of the analytics consumer
(``rcaflow kb analytics``) in Elasticsearch when the knowledge base is configured and they are there,
else a scan of the incidents, rca-result and actions topics (``--source`` forces one).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click
from pydantic import ValidationError

from schemas.codec import Codec, make_codec
from schemas.errors import CodecError
from schemas.records import ActionEvent, DeadLetter, Incident, RcaResult, Record
from schemas.topics import ACTIONS, DEAD_LETTER, INCIDENTS, RCA_RESULT, TopicSpec
from streams.commands.context import kafka_client_of
from streams.commands.replay import parse_since
from streams.ops.mail_outcomes import mail_outcomes, render_mail_outcomes
from streams.ops.stats import render, summarize
from streams.ops.topic_read import TopicReadError, read_to_end
from streams.settings import Settings


def _records(bootstrap: str, codec: Codec, spec: TopicSpec, prefix: str, timeout: float,
             extra: dict[str, str | int] | None = None) -> list[Record]:
    topic = spec.full_name(prefix)
    out: list[Record] = []
    for _partition, _offset, value in read_to_end(bootstrap, topic, timeout=timeout, purpose="stats", extra=extra):
        try:
            out.append(codec.decode(value, spec.value, topic=topic))
        except (CodecError, ValidationError):
            continue  # the audit agent and dead-letter report undecodable records; stats count what they can
    return out


@click.command("stats")
@click.option("--since", default="7d", show_default=True, help="Incidents opened since: 24h, 7d, or an ISO time.")
@click.option("--tenant", help="Only this tenant.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of the table.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to read each topic.")
@click.option("--bootstrap", help="Kafka bootstrap servers (default: from the configuration).")
@click.option("--prefix", help="Topic prefix (default: from the configuration).")
@click.option("--source", type=click.Choice(["auto", "es", "topics"]), default="auto", show_default=True,
              help="auto: the analytics documents in Elasticsearch when available, else the topics.")
@click.pass_context
def stats(ctx: click.Context, since: str, tenant: str | None, as_json: bool, timeout: float,
          bootstrap: str | None, prefix: str | None, source: str) -> None:
    """Incidents, time to a root cause, actions (auto / approved / how they ended) per alert class."""
    root = ctx.find_root().obj
    settings = root if isinstance(root, Settings) else None
    start = parse_since(since)
    fallback = ""
    if source != "topics":
        if settings is None or not settings.kb.enabled:
            if source == "es":
                raise click.UsageError("--source es needs kb.elasticsearch_url (RCAFLOW_KB__ELASTICSEARCH_URL)")
            fallback = "the knowledge base is not configured"
        else:
            found = _from_analytics(settings, start, tenant)
            if isinstance(found, str):
                if source == "es":
                    click.echo(f"stats: {found}", err=True)
                    raise SystemExit(1)
                fallback = found
            else:
                _print_analytics(found, settings.kb.analytics_prefix, start, tenant, as_json)
                return
    server = bootstrap or (settings.bootstrap if settings else None)
    if not server:
        raise click.UsageError("give --bootstrap (or configure KAFKA_BOOTSTRAP_SERVERS)")
    topic_prefix = prefix if prefix is not None else (settings.kafka.topic_prefix if settings else "")
    codec = make_codec(settings.schema_registry_url if settings else None)
    client = kafka_client_of(settings, server)
    try:
        results = [r for r in _records(server, codec, RCA_RESULT, topic_prefix, timeout, client)
                   if isinstance(r, RcaResult)]
        actions = [a for a in _records(server, codec, ACTIONS, topic_prefix, timeout, client)
                   if isinstance(a, ActionEvent)]
        # The alerts folded into each incident: dedup's count updates live only on the incidents topic.
        incidents = [i for i in _records(server, codec, INCIDENTS, topic_prefix, timeout, client)
                     if isinstance(i, Incident)]
    except TopicReadError as exc:
        click.echo(f"stats: {exc}", err=True)
        raise SystemExit(2) from exc
    try:  # what normalize kept out of triage (not alerts, bad rows, unreadable): the dead-letter topic
        letters = [d for d in _records(server, codec, DEAD_LETTER, topic_prefix, timeout, client)
                   if isinstance(d, DeadLetter)]
        mail = mail_outcomes(letters, since=start, tenant=tenant)
    except TopicReadError:
        mail = None
    summary = summarize(results, actions, since=start, tenant=tenant, incidents=incidents)
    if as_json:
        click.echo(json.dumps({"source": "topics", **({"analytics_not_used": fallback} if fallback else {}),
                               "since": start.isoformat(), "until": datetime.now(UTC).isoformat(),
                               "tenant": tenant, "classes": {k: v.as_dict() for k, v in summary.items()},
                               **({"mail": mail.as_dict()} if mail else {})},
                              ensure_ascii=False))
        return
    click.echo("source: topics (scanned)" + (f"; analytics not used: {fallback}" if fallback else ""))
    click.echo(f"since {start.isoformat()}" + (f", tenant {tenant}" if tenant else ""))
    for line in render(summary):
        click.echo(line)
    for line in render_mail_outcomes(mail) if mail else ():
        click.echo(line)


def _from_analytics(settings: Settings, since: datetime, tenant: str | None) -> list[dict[str, Any]] | str:
    """The analytics consumer's daily documents, or why they cannot be used (one line)."""
    from streams.kb.analytics_store import read_daily
    from streams.kb.store import KbError, make_client

    client = make_client(settings.kb.model_copy(update={"request_timeout_s": min(settings.kb.request_timeout_s, 5.0)}),
                         max_retries=0)
    try:
        return read_daily(client, settings.kb.analytics_prefix, tenant=tenant, since=since)
    except KbError as exc:
        return str(exc).splitlines()[0][:300]
    finally:
        client.close()


def _print_analytics(docs: list[dict[str, Any]], prefix: str, since: datetime, tenant: str | None,
                     as_json: bool) -> None:
    from streams.kb.analytics_store import daily_alias
    from streams.kb.daily import merge, render_daily

    totals = merge(docs)
    where = f"elasticsearch {daily_alias(prefix)}"
    if as_json:
        report = {"source": where, "since": since.date().isoformat(), "until": datetime.now(UTC).isoformat(),
                  "tenant": tenant, "classes": {k: v.model_dump(mode="json") for k, v in totals.items()}}
        click.echo(json.dumps(report, ensure_ascii=False))
        return
    click.echo(f"source: {where} (daily documents of `rcaflow kb analytics`)")
    click.echo(f"since {since.date().isoformat()} (whole UTC days)" + (f", tenant {tenant}" if tenant else ""))
    for line in render_daily(totals):
        click.echo(line)
