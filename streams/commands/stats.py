"""``rcaflow stats --since 7d``: per alert class, what came in, how fast it was analysed, what ran, how it ended."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
from pydantic import ValidationError

from schemas.codec import Codec, make_codec
from schemas.errors import CodecError
from schemas.records import ActionEvent, Incident, RcaResult, Record
from schemas.topics import ACTIONS, INCIDENTS, RCA_RESULT, TopicSpec
from streams.commands.context import kafka_client_of
from streams.commands.replay import parse_since
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
@click.pass_context
def stats(ctx: click.Context, since: str, tenant: str | None, as_json: bool, timeout: float,
          bootstrap: str | None, prefix: str | None) -> None:
    """Incidents, time to a root cause, actions (auto / approved / how they ended) per alert class."""
    root = ctx.find_root().obj
    settings = root if isinstance(root, Settings) else None
    server = bootstrap or (settings.bootstrap if settings else None)
    if not server:
        raise click.UsageError("give --bootstrap (or configure KAFKA_BOOTSTRAP_SERVERS)")
    topic_prefix = prefix if prefix is not None else (settings.kafka.topic_prefix if settings else "")
    codec = make_codec(settings.schema_registry_url if settings else None)
    start = parse_since(since)
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
    summary = summarize(results, actions, since=start, tenant=tenant, incidents=incidents)
    if as_json:
        click.echo(json.dumps({"since": start.isoformat(), "until": datetime.now(UTC).isoformat(),
                               "tenant": tenant, "classes": {k: v.as_dict() for k, v in summary.items()}},
                              ensure_ascii=False))
        return
    click.echo(f"since {start.isoformat()}" + (f", tenant {tenant}" if tenant else ""))
    for line in render(summary):
        click.echo(line)
