"""``rcaflow audit verify``: check the per-tenant hash chains of the audit topic (or of a JSON-lines export).

Exit 0 when every chain is intact, also when the only findings are what a
crashed writer leaves (a record written twice, a step re-appended from the same
predecessor with the same content: one ``warning:`` line each, see
``streams.ops.audit_check``); 1 when anything else is wrong (each problem is
printed with its tenant and seq); 2 when the records could not be read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from schemas.codec import Codec, make_codec
from schemas.errors import CodecError
from schemas.records import AuditRecord
from schemas.topics import AUDIT
from streams.commands.context import kafka_client_of
from streams.ops.audit_check import check_chains
from streams.ops.topic_read import TopicReadError, read_to_end
from streams.settings import Settings

#: Kept for callers of this module: the topic could not be read.
AuditReadError = TopicReadError


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
    for partition, offset, value in read_to_end(bootstrap, topic, timeout=timeout, purpose="audit-verify",
                                                extra=extra):
        try:
            yield codec.decode(value, AuditRecord, topic=topic)
        except CodecError as exc:
            yield f"{topic}[{partition}]@{offset}: cannot decode: {exc}"


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
    """Report every altered, missing, duplicated, reordered or unlinked audit record (exit 1 if any).

    What a crashed writer leaves (the same record twice, a step re-appended from the same predecessor with
    the same content) is reported as a warning and does not fail the check.
    """
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
            for item in read_topic(server, codec, topic_prefix, timeout=timeout,
                                   extra=kafka_client_of(settings, server)):
                if isinstance(item, str):
                    unreadable.append(item)
                else:
                    records.append(item)
        except AuditReadError as exc:
            click.echo(f"audit verify: {exc}", err=True)
            raise SystemExit(2) from exc
    findings = check_chains(records, from_genesis=not window)
    problems = [f for f in findings if f.tampering]
    artefacts = [f for f in findings if not f.tampering]
    for line in unreadable:
        click.echo(line)
    for problem in problems:
        click.echo(str(problem))
    for artefact in artefacts:
        click.echo(f"warning: {artefact}")
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
    crashes = f" ({len(artefacts)} crash artefact(s): see the warnings)" if artefacts else ""
    click.echo(f"ok: {len(records)} record(s) of {len(tenants)} tenant(s) verified{crashes}")
