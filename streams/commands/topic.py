"""``rcaflow topic read TOPIC --decode``: the Avro records of a topic as JSON lines.

Records on the topics are binary Avro; without a decoder an operator cannot answer "what did
the worker write for this incident?" at 3 a.m. This reads a topic from the beginning to the end
it had when the command started (every partition), decodes each value with the record type the
topic carries (schemas/topics.py, through the Schema Registry when one is configured) and prints
one JSON object per record, so `jq` and `grep` work on it. A value that does not decode is
printed with its error and its bytes in base64, never skipped.
"""

from __future__ import annotations

import base64
import json
import sys
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any

import click

from schemas.codec import make_codec
from schemas.errors import CodecError
from schemas.topics import ALL_TOPICS, TopicSpec
from streams.commands.context import kafka_client_of, settings_or_none
from streams.ops.topic_read import TopicMessage, TopicReadError, read_messages


def _spec(name: str, prefix: str) -> TopicSpec:
    for spec in ALL_TOPICS:
        if name in (spec.name, spec.full_name(prefix)):
            return spec
    known = ", ".join(spec.name for spec in ALL_TOPICS)
    raise click.BadParameter(f"{name!r} is not an rcaflow topic; one of: {known}", param_hint="TOPIC")


def _plain(value: Any) -> Any:
    """JSON for what a record holds: bytes as base64 (dead-letter payloads are not text), times in ISO 8601."""
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _line(message: TopicMessage, topic: str, value: Any, *, error: str | None = None) -> str:
    row: dict[str, Any] = {
        "topic": topic,
        "partition": message.partition,
        "offset": message.offset,
        "timestamp": datetime.fromtimestamp(message.timestamp_ms / 1000, UTC).isoformat(),
        "key": message.key.decode("utf-8", errors="replace"),
        "value": value,
    }
    if error is not None:
        row["error"] = error
    return json.dumps(row, ensure_ascii=False, default=_plain, sort_keys=False)


@click.group("topic")
def topic() -> None:
    """Read a topic's records as JSON lines (`topic read TOPIC --decode`)."""


@topic.command("read")
@click.argument("name", metavar="TOPIC")
@click.option("--decode/--raw", default=True, show_default=True,
              help="Decode each value into its record (default), or print the bytes in base64.")
@click.option("--key", "key_prefix", default=None, help="Only records whose key starts with this (e.g. 'acme:').")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Stop after this many records.")
@click.option("--bootstrap", help="Kafka bootstrap servers (default: from the configuration).")
@click.option("--prefix", help="Topic prefix (default: from the configuration).")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to read the topic to its end.")
@click.pass_context
def read_command(ctx: click.Context, name: str, decode: bool, key_prefix: str | None, limit: int | None,
                 bootstrap: str | None, prefix: str | None, timeout: float) -> None:
    """Print TOPIC's records as JSON lines (topic, partition, offset, timestamp, key, value).

    TOPIC is the logical name (raw-mail, normalized, incidents, rca-result, actions, approvals, audit,
    dead-letter, ingest-checkpoints); the configured prefix is added. Exit 1 when a value did not decode,
    2 when the topic could not be read.
    """
    settings = settings_or_none(ctx)
    server = bootstrap or (settings.bootstrap if settings else None)
    if not server:
        raise click.UsageError("give --bootstrap (or configure KAFKA_BOOTSTRAP_SERVERS)")
    topic_prefix = prefix if prefix is not None else (settings.kafka.topic_prefix if settings else "")
    spec = _spec(name, topic_prefix)
    full = spec.full_name(topic_prefix)
    codec = make_codec(settings.schema_registry_url if settings else None) if decode else None
    printed = undecodable = 0
    try:
        for message in read_messages(server, full, timeout=timeout, purpose="topic-read",
                                     extra=kafka_client_of(settings, server)):
            if key_prefix is not None and not message.key.decode("utf-8", errors="replace").startswith(key_prefix):
                continue
            if codec is None:
                click.echo(_line(message, full, _plain(message.value)))
            else:
                try:
                    record = codec.decode(message.value, spec.value, topic=full)
                except CodecError as exc:
                    undecodable += 1
                    click.echo(_line(message, full, _plain(message.value), error=f"cannot decode: {exc}"))
                else:
                    click.echo(_line(message, full, record.model_dump(mode="python")))
            printed += 1
            if limit is not None and printed >= limit:
                break
    except TopicReadError as exc:
        click.echo(f"topic read: {exc}", err=True)
        raise SystemExit(2) from exc
    click.echo(f"topic read: {printed} record(s) from {full}"
               + (f", {undecodable} not decodable" if undecodable else ""), err=True)
    if undecodable:
        sys.exit(1)
