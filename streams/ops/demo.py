"""`rcaflow demo`: a finite showcase of the whole loop on the bundled sample mails.

It starts the same processes as `rcaflow run` (on a throw-away topic prefix,
so it never mixes with a running installation), feeds every sample mail to
raw-mail, follows the records each one causes on the downstream topics, and
prints one row per alert. A second round of the same mails shows dedup.
"""

from __future__ import annotations

import email
import email.policy
import functools
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import click
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from producers.kafka_clients import new_consumer
from producers.publisher import Delivery, KafkaPublisher
from schemas.codec import Codec
from schemas.errors import CodecError
from schemas.records import (
    ActionEvent,
    ActionState,
    AlertEvent,
    AlertStatus,
    DeadLetter,
    Incident,
    RawMail,
    RcaResult,
    Record,
    SourceKind,
)
from schemas.topics import ACTIONS, DEAD_LETTER, INCIDENTS, NORMALIZED, RAW_MAIL, RCA_RESULT, TopicSpec
from streams.ops.cleanup import delete_prefixed_topics
from streams.settings import Settings, client_config, producer_config
from streams.wiring.kafka_client import check_cluster
from streams.wiring.runtime import build_codec
from streams.wiring.supervisor import Stack

logger = logging.getLogger(__name__)

DEFAULT_SAMPLES = Path(__file__).resolve().parents[2] / "samples"
_SETTLED = frozenset({ActionState.SUCCEEDED, ActionState.FAILED, ActionState.AWAITING_APPROVAL,
                      ActionState.REJECTED, ActionState.EXPIRED, ActionState.ROLLED_BACK})


def raw_mail_from_file(path: Path, tenant: str, mailbox: str = "demo") -> RawMail:
    data = path.read_bytes()
    headers = email.message_from_bytes(data, policy=email.policy.compat32)
    message_id = (headers.get("Message-ID") or f"<{path.name}@rcaflow.demo>").strip()
    subject = " ".join(str(email.header.make_header(email.header.decode_header(headers.get("Subject", "")))).split())
    return RawMail(
        tenant=tenant,
        message_id=message_id,
        mailbox=mailbox,
        source=SourceKind.FILE,
        received_at=datetime.now(UTC),
        subject=subject,
        sender=headers.get("From"),
        raw=data,
    )


@dataclass
class Follower:
    """Reads the downstream topics from the start and indexes what the demo needs."""

    bootstrap: str
    codec: Codec
    prefix: str
    #: The client properties of streams.settings.client_config (security); only the address without it.
    extra: dict[str, Any] = field(default_factory=dict)
    events: dict[tuple[int, int], list[AlertEvent]] = field(default_factory=dict)
    dead: dict[tuple[int, int], DeadLetter] = field(default_factory=dict)
    incidents: dict[str, Incident] = field(default_factory=dict)
    updates: dict[str, Incident] = field(default_factory=dict)  # by last_event_id
    results: dict[str, RcaResult] = field(default_factory=dict)
    actions: dict[str, ActionEvent] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._consumer = new_consumer({"bootstrap.servers": self.bootstrap, **self.extra,
                                   "group.id": f"demo-{uuid.uuid4().hex}", "enable.auto.commit": False})
        specs: list[TopicSpec] = [NORMALIZED, DEAD_LETTER, INCIDENTS, RCA_RESULT, ACTIONS]
        self._types: dict[str, tuple[TopicSpec, type[Record]]] = {
            s.full_name(self.prefix): (s, s.value) for s in specs
        }
        meta = self._consumer.list_topics(timeout=10)
        assignment = [
            TopicPartition(name, p, OFFSET_BEGINNING)
            for name in self._types
            for p in (meta.topics[name].partitions if name in meta.topics else {})
        ]
        self._consumer.assign(assignment)

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = self._consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            topic = msg.topic() or ""
            _spec, kind = self._types[topic]
            try:
                record = self.codec.decode(msg.value() or b"", kind, topic=topic)
            except CodecError:
                continue
            self._index(record)

    def _index(self, record: Record) -> None:
        if isinstance(record, AlertEvent):
            where = (record.source.partition or 0, record.source.offset or 0)
            self.events.setdefault(where, []).append(record)
        elif isinstance(record, DeadLetter):
            self.dead[(record.partition or 0, record.offset or 0)] = record
        elif isinstance(record, Incident):
            if record.count == 1:
                self.incidents[record.fingerprint] = record
            self.updates[record.last_event_id] = record
        elif isinstance(record, RcaResult):
            self.results[record.incident_id] = record
        elif isinstance(record, ActionEvent):
            self.actions[record.action_id] = record

    def close(self) -> None:
        self._consumer.close()


@dataclass
class Row:
    round: int
    file: str
    subject: str
    alert: str = ""
    alert_class: str = ""
    incident_id: str = ""
    diagnosis: str = ""
    actions: list[dict[str, str]] = field(default_factory=list)
    suppressed: bool = False
    count: int = 0
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class Named(Protocol):
    @property
    def name(self) -> str: ...


S = TypeVar("S", bound=Named)


@dataclass(frozen=True)
class Sent:
    """One mail put on raw-mail, and how to name it in a row."""

    name: str
    subject: str
    where: Delivery


def rows_for(mail_round: int, sent: Sent, f: Follower) -> list[Row] | None:
    """The rows of one mail, or None while its records are still on their way."""
    key = (sent.where.partition, sent.where.offset)
    if key in f.dead:
        return [Row(mail_round, sent.name, sent.subject, error=f.dead[key].reason)]
    events = f.events.get(key)
    if not events:
        return None
    rows = []
    for event in events:
        row = event_row(mail_round, sent.name, sent.subject, event, f)
        if row is None:
            return None
        rows.append(row)
    return rows


def event_row(mail_round: int, name: str, subject: str, event: AlertEvent, f: Follower) -> Row | None:
    """What became of one alert (incident, diagnosis, settled actions), or None while it is on its way."""
    row = Row(mail_round, name, subject, event.alert, event.alert_class)
    update = f.updates.get(event.event_id)
    if update is None and event.status is AlertStatus.RESOLVED:
        # A recovery with no open incident opens nothing; say so instead of waiting for it.
        row.diagnosis = "resolved; no open incident to close"
        return row
    if update is None:
        return None
    row.incident_id, row.count = update.incident_id, update.count
    if update.count > 1:
        row.suppressed = True
        row.diagnosis = f"duplicate within the dedup window (seen {update.count} times)"
        return row
    result = f.results.get(update.incident_id)
    if result is None:
        return None
    row.diagnosis = result.diagnosis
    for proposed in result.actions:
        action = f.actions.get(proposed.action_id)
        if action is None or action.state not in _SETTLED:
            return None
        row.actions.append({"name": action.name, "risk": action.risk.value, "state": action.outcome})
    return row


def demo_scope_env(settings: Settings, tenant: str) -> dict[str, str]:
    """Let the demo's tenant act on every namespace, when nothing scopes it and the executor only dry-runs.

    An unscoped tenant is read-only (docs/policies.md, "Tenant scope"), which would leave the demo
    with nothing but rejected actions; on throw-away topics with a dry-run executor showing the
    whole loop is harmless. A deployment that scoped its tenant, or runs for real, is left alone.
    """
    config = settings.tenants.get(tenant)
    if (not settings.executor.dry_run or config is None or config.namespaces or len(settings.tenants) != 1
            or tenant != tenant.lower()):
        return {}
    click.echo(f"demo: tenant {tenant} has no namespaces (read-only); this dry run lets it act on every namespace",
               err=True)
    return {f"RCAFLOW_TENANTS__{tenant.upper()}__NAMESPACES": '["*"]'}


def run_demo(settings: Settings, *, samples_dir: Path | None, as_json: bool, timeout: float, rounds: int) -> int:
    folder = samples_dir or DEFAULT_SAMPLES
    files = sorted(folder.glob("*.eml"))
    if not files:
        raise click.ClickException(f"no .eml files in {folder}")
    if settings.bootstrap:  # a configured cluster that is not there: one line at once, not the roles' patience
        check_cluster(client_config(settings.kafka, settings.bootstrap), fail_fast=True)
    prefix = f"{settings.kafka.topic_prefix}demo-{uuid.uuid4().hex[:8]}."
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"topic_prefix": prefix})})
    tenant = settings.api.default_tenant
    with tempfile.TemporaryDirectory(prefix="rcaflow-demo-") as tmp:
        env_overrides = {
            "RCAFLOW_KAFKA__TOPIC_PREFIX": prefix,
            "RCAFLOW_WORKER__METRICS_PORT": "0",
            "RCAFLOW_EXECUTOR__METRICS_PORT": "0",
            "RCAFLOW_WORKER__DATA_DIR": str(Path(tmp) / "worker"),
            **demo_scope_env(settings, tenant),
        }
        stack = Stack(settings, roles=("worker", "executor"), env={**os.environ, **env_overrides},
                      log_dir=Path(tmp) / "logs", data_dir=Path(tmp) / "broker")
        try:
            with stack:
                codec = build_codec(settings)
                publisher = KafkaPublisher(stack.bootstrap, codec, prefix, producer_config(stack.settings.kafka))
                follower = Follower(stack.bootstrap, codec, prefix,
                                    extra=client_config(stack.settings.kafka, stack.bootstrap))
                click.echo(f"demo: {len(files)} sample mails, {rounds} round(s), broker {stack.bootstrap}", err=True)
                all_rows: list[Row] = []
                try:
                    for mail_round in range(1, rounds + 1):
                        pending = []
                        for path in files:
                            mail = raw_mail_from_file(path, tenant)
                            where = publisher.publish_sync(RAW_MAIL, f"{tenant}:{mail.message_id}", mail)
                            pending.append(Sent(path.name, mail.subject or "", where))
                        rows = wait_rows(pending, functools.partial(rows_for, mail_round, f=follower), follower, stack,
                                         timeout)
                        all_rows.extend(rows)
                        print_rows(rows, as_json)
                finally:
                    follower.close()
                    publisher.close_sync()
        finally:
            if settings.bootstrap:
                # A real cluster keeps what the demo made unless we delete it, also when the demo failed or was
                # interrupted; an embedded broker is thrown away with its data dir. The roles are stopped by now,
                # so nothing re-creates a topic behind us.
                gone = delete_prefixed_topics(client_config(settings.kafka, settings.bootstrap), prefix,
                                              what="demo", app_id=settings.worker.app_id)
                click.echo(f"demo: deleted {len(gone)} topic(s) under {prefix!r}", err=True)
    return 1 if any(r.error for r in all_rows) else 0


def wait_rows(pending: Sequence[S], rows_of: Callable[[S], list[Row] | None], f: Follower, stack: Stack,
              timeout: float) -> list[Row]:
    """Follow the downstream topics until every item has its rows (in the items' order)."""
    deadline = time.monotonic() + timeout
    done: dict[int, list[Row]] = {}
    while len(done) < len(pending):
        if time.monotonic() > deadline:
            missing = [pending[i].name for i in range(len(pending)) if i not in done]
            raise click.ClickException(f"timed out after {timeout:.0f}s waiting for results of {missing}")
        stack.check()
        f.poll(0.5)
        for i, item in enumerate(pending):
            if i not in done:
                rows = rows_of(item)
                if rows is not None:
                    done[i] = rows
    return [row for i in range(len(pending)) for row in done[i]]


def print_rows(rows: list[Row], as_json: bool) -> None:
    for row in rows:
        if as_json:
            click.echo(json.dumps(row.as_dict(), ensure_ascii=False))
            continue
        if row.error:
            click.echo(f"[{row.round}] {row.subject}  →  dead-letter: {row.error}")
            continue
        acts = ", ".join(f"{a['name']} ({a['risk']}: {a['state']})" for a in row.actions) or "no actions"
        head = f"[{row.round}] {row.subject} → {row.alert} → {row.alert_class} → incident {row.incident_id}"
        if row.suppressed:
            click.echo(f"{head} → suppressed: {row.diagnosis}")
        else:
            click.echo(f"{head} → {row.diagnosis} → {acts}")
