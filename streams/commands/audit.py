"""``rcaflow audit verify``: check the per-tenant hash chains of the audit topic (or of a JSON-lines export).

Exit 0 when every chain is intact, 1 when anything is wrong (each problem is
printed with its tenant and seq), 2 when the records could not be read.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from pydantic import ValidationError

from executors.audit import verify
from schemas.codec import Codec, make_codec
from schemas.errors import CodecError
from schemas.records import AuditRecord
from schemas.topics import AUDIT
from streams.settings import Settings


class AuditReadError(Exception):
    """The audit records could not be read at all (broker unreachable, topic missing)."""

    retriable = True


def read_jsonl(path: Path) -> tuple[list[AuditRecord], list[str]]:
    """Records of a JSON-lines file (one ``AuditRecord`` as JSON per line) and the lines that are not."""
    records: list[AuditRecord] = []
    bad: list[str] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(AuditRecord.model_validate(json.loads(line)))
            except (ValueError, ValidationError) as exc:
                first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
                bad.append(f"{path.name}:{number}: not an audit record ({first})")
    return records, bad


def read_topic(bootstrap: str, codec: Codec, prefix: str = "", *, timeout: float = 30.0,
               extra: dict[str, Any] | None = None) -> Iterator[AuditRecord | str]:
    """Every record of the audit topic, all partitions, from the beginning to the end seen at start.

    Yields a string for a record that cannot be decoded (a problem to report, not a crash).
    """
    topic = AUDIT.full_name(prefix)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"rcaflow-audit-verify-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest", **(extra or {})})
    try:
        try:
            meta = consumer.list_topics(topic, timeout=min(timeout, 10.0))
        except KafkaException as exc:
            raise AuditReadError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
        found = meta.topics.get(topic)
        if found is None or found.error is not None:
            raise AuditReadError(f"topic {topic} does not exist on {bootstrap}")
        ends: dict[int, int] = {}
        for partition in found.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=min(timeout, 10.0))
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout
        while ends:
            if time.monotonic() > deadline:
                raise AuditReadError(f"timed out reading {topic}; partitions not read to the end: {sorted(ends)}")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                raise AuditReadError(f"reading {topic}: {msg.error()}")
            partition, offset = msg.partition() or 0, msg.offset() or 0
            try:
                yield codec.decode(msg.value() or b"", AuditRecord, topic=topic)
            except CodecError as exc:
                yield f"{topic}[{partition}]@{offset}: cannot decode: {exc}"
            if partition in ends and offset + 1 >= ends[partition]:
                del ends[partition]
    finally:
        consumer.close()


@click.group("audit")
def audit() -> None:
    """Work with the tamper-evident audit trail."""


@audit.command("verify")
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A JSON-lines export of audit records, instead of the topic.")
@click.option("--bootstrap", help="Kafka bootstrap servers (default: from the configuration).")
@click.option("--prefix", help="Topic prefix (default: from the configuration).")
@click.option("--window", is_flag=True, help="The records start mid-chain: do not require seq 1 per tenant.")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to read the topic to its end.")
@click.pass_context
def verify_command(ctx: click.Context, file: Path | None, bootstrap: str | None, prefix: str | None,
                   window: bool, timeout: float) -> None:
    """Report every altered, missing, duplicated, reordered or unlinked audit record (exit 1 if any)."""
    settings = ctx.find_root().obj if isinstance(ctx.find_root().obj, Settings) else None
    unreadable: list[str] = []
    if file is not None:
        records, unreadable = read_jsonl(file)
    else:
        server = bootstrap or (settings.bootstrap if settings else None)
        if not server:
            raise click.UsageError("give --file, or --bootstrap (or configure KAFKA_BOOTSTRAP_SERVERS)")
        topic_prefix = prefix if prefix is not None else (settings.kafka.topic_prefix if settings else "")
        codec = make_codec(settings.schema_registry_url if settings else None)
        records = []
        try:
            for item in read_topic(server, codec, topic_prefix, timeout=timeout):
                if isinstance(item, str):
                    unreadable.append(item)
                else:
                    records.append(item)
        except AuditReadError as exc:
            click.echo(f"audit verify: {exc}", err=True)
            raise SystemExit(2) from exc
    problems = verify(records, from_genesis=not window)
    for line in unreadable:
        click.echo(line)
    for problem in problems:
        click.echo(str(problem))
    tenants = sorted({r.tenant for r in records})
    if problems or unreadable:
        click.echo(f"FAILED: {len(problems) + len(unreadable)} problem(s) in {len(records)} record(s) "
                   f"of {len(tenants)} tenant(s)", err=True)
        raise SystemExit(1)
    heads: dict[str, AuditRecord] = {}
    for record in records:
        heads[record.tenant] = record
    for tenant in tenants:
        click.echo(f"ok: tenant {tenant!r} seq {heads[tenant].seq} head {heads[tenant].hash}")
    click.echo(f"ok: {len(records)} record(s) of {len(tenants)} tenant(s) verified")
