"""`rcaflow replay`: run past alerts again through today's parsers and policy, in a shadow run that acts on nothing.

Why: after a template or policy change an SRE wants to know what last night's
mails would produce now, before it matters. raw-mail keeps 7 days of full
RFC 822 bytes (and normalized the structured alerts of webhooks and
``POST /events``), so a replay copies a window of one of them, byte for byte,
into topics under a fresh shadow prefix on the same cluster, starts a worker
and an executor on that prefix and prints what became of every record, like
``rcaflow demo``.

What the shadow run can never do: run a real action (the executor is forced
to dry run), post to a chat (notification channels are cleared), call the LLM
(unless asked) or touch the source topics (it only reads them).
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from pydantic import ValidationError

from producers.kafka_clients import new_consumer, new_producer
from producers.publisher import Delivery
from schemas.codec import Codec
from schemas.errors import CodecError
from schemas.records import AlertEvent, RawMail
from schemas.topics import NORMALIZED, RAW_MAIL, TopicSpec
from streams.errors import StreamsError
from streams.ops.cleanup import delete_prefixed_topics
from streams.ops.demo import Follower, Row, Sent, event_row, print_rows, rows_for, wait_rows
from streams.settings import Settings, client_config
from streams.wiring.runtime import build_codec
from streams.wiring.supervisor import Stack
from streams.wiring.topics_admin import ensure_topics

logger = logging.getLogger(__name__)

REPLAYABLE: dict[str, TopicSpec] = {RAW_MAIL.name: RAW_MAIL, NORMALIZED.name: NORMALIZED}
#: Environment the shadow processes must not inherit: chat channels, the LLM key.
_SCRUBBED_PREFIXES = ("RCAFLOW_NOTIFY__", "RCAFLOW_APPROVALS__")
_LLM_KEYS = ("QWEN_API_KEY", "RCAFLOW_LLM_API_KEY")


class ReplayError(click.ClickException, StreamsError):
    """The window could not be read or copied; the message says which and why.

    A ``ClickException`` first, so click still prints it as the command's usage-level failure.
    """


@dataclass(frozen=True)
class Window:
    """Where to start in each partition of the source topic (a time, or explicit offsets), and how much."""

    since: datetime | None = None
    offsets: dict[int, int] | None = None
    limit: int = 1000


@dataclass(frozen=True)
class Copied:
    """One source record and where its copy landed in the shadow topic."""

    name: str
    value: bytes
    where: Delivery


def parse_offsets(specs: tuple[str, ...]) -> dict[int, int]:
    """``["0:120", "2:7"]`` → ``{0: 120, 2: 7}``, with a usage error naming the bad one."""
    offsets: dict[int, int] = {}
    for spec in specs:
        partition, sep, offset = spec.partition(":")
        if not (sep and partition.isdigit() and offset.isdigit()):
            raise click.BadParameter(f"{spec!r} is not PARTITION:OFFSET (e.g. 0:120)", param_hint="--from-offset")
        offsets[int(partition)] = int(offset)
    return offsets


def start_positions(consumer: Consumer, topic: str, window: Window) -> dict[int, tuple[int, int]]:
    """partition → (first offset to copy, end offset at start), only partitions with something to copy."""
    meta = consumer.list_topics(topic, timeout=10)
    found = meta.topics.get(topic)
    if found is None or found.error is not None:
        raise ReplayError(f"topic {topic} does not exist")
    partitions = sorted(found.partitions)
    starts: dict[int, int] = {}
    if window.offsets is not None:
        unknown = sorted(set(window.offsets) - set(partitions))
        if unknown:
            raise ReplayError(f"{topic} has no partition {unknown[0]} (it has {partitions})")
        starts = dict(window.offsets)
    elif window.since is not None:
        wanted = [TopicPartition(topic, p, int(window.since.timestamp() * 1000)) for p in partitions]
        for tp in consumer.offsets_for_times(wanted, timeout=10):
            if tp.offset >= 0:
                starts[tp.partition] = tp.offset
    positions: dict[int, tuple[int, int]] = {}
    for partition, start in starts.items():
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        first = max(start, low)
        if first < high:
            positions[partition] = (first, high)
    return positions


def copy_window(bootstrap: str, source: str, target: str, window: Window, *, label: str,
                timeout: float = 60.0, extra: dict[str, Any] | None = None) -> list[Copied]:
    """Copy the window's records (key and value bytes unchanged) from ``source`` to ``target``, in order.

    ``label`` names the copies in the output: ``raw-mail[2]@117`` is where the original sits.
    ``extra``: the client properties of :func:`streams.settings.client_config` (security).
    """
    client = {"bootstrap.servers": bootstrap, **(extra or {})}
    consumer = new_consumer({**client, "group.id": f"rcaflow-replay-{uuid.uuid4().hex[:8]}",
                             "enable.auto.commit": False})
    producer = new_producer({**client, "enable.idempotence": True, "acks": "all",
                             "partitioner": "murmur2_random", "message.max.bytes": 12 * 1024 * 1024})
    copied: list[Copied] = []
    try:
        try:
            positions = start_positions(consumer, source, window)
        except KafkaException as exc:
            raise ReplayError(f"cannot read {source} at {bootstrap}: {exc}") from exc
        if not positions:
            return []
        consumer.assign([TopicPartition(source, p, first) for p, (first, _end) in positions.items()])
        remaining = {p: end for p, (_first, end) in positions.items()}
        deadline = time.monotonic() + timeout
        while remaining and len(copied) < window.limit:
            if time.monotonic() > deadline:
                raise ReplayError(f"timed out reading {source}; partitions not read to the end: {sorted(remaining)}")
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            partition, offset = msg.partition() or 0, msg.offset() or 0
            if partition not in remaining:
                continue
            if offset + 1 >= remaining[partition]:
                del remaining[partition]
            copied.append(_produce(producer, target, msg.key(), msg.value() or b"", f"{label}[{partition}]@{offset}"))
        left = producer.flush(30)
        if left:
            raise ReplayError(f"{left} copied records were not acknowledged by {bootstrap}")
    finally:
        consumer.close()
    return copied


def _produce(producer: Producer, topic: str, key: bytes | None, value: bytes, name: str) -> Copied:
    result: list[Delivery | str] = []

    def delivered(err: object, msg: object) -> None:
        if err is not None:
            result.append(str(err))
        else:
            result.append(Delivery(topic, msg.partition() or 0, msg.offset() or 0))  # type: ignore[attr-defined]

    producer.produce(topic, key=key, value=value, on_delivery=delivered)
    deadline = time.monotonic() + 30
    while not result and time.monotonic() < deadline:
        producer.poll(0.1)
    if not result or isinstance(result[0], str):
        raise ReplayError(f"copying {name} into {topic} failed: {result[0] if result else 'no acknowledgement'}")
    return Copied(name, value, result[0])


def shadow_env(prefix: str, bootstrap: str, tmp: Path, *, with_llm: bool) -> dict[str, str]:
    """The shadow processes' environment: the same configuration, minus anything that reaches the world."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    if not with_llm:
        for key in _LLM_KEYS:
            env.pop(key, None)
        env["RCAFLOW_LLM__ENABLED"] = "false"
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "RCAFLOW_KAFKA__TOPIC_PREFIX": prefix,
        "RCAFLOW_EXECUTOR__DRY_RUN": "true",
        "RCAFLOW_NOTIFY__TENANTS": "{}",
        "RCAFLOW_WORKER__METRICS_PORT": "0",
        "RCAFLOW_EXECUTOR__METRICS_PORT": "0",
        "RCAFLOW_WORKER__DATA_DIR": str(tmp / "worker"),
    })
    return env


def run_replay(settings: Settings, *, topic: str, window: Window, with_llm: bool, keep: bool, as_json: bool,
               timeout: float) -> int:
    bootstrap = settings.bootstrap
    if not bootstrap:
        raise click.UsageError("replay reads an existing cluster: set KAFKA_BOOTSTRAP_SERVERS (or --bootstrap)")
    spec = REPLAYABLE[topic]
    source_prefix = settings.kafka.topic_prefix
    shadow = f"{source_prefix}replay-{uuid.uuid4().hex[:8]}."
    shadow_settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"topic_prefix": shadow})})
    codec = build_codec(settings)
    client = client_config(settings.kafka, bootstrap)
    with tempfile.TemporaryDirectory(prefix="rcaflow-replay-") as tmp:
        # refused credentials or no broker stop the replay here, in one line
        ensure_topics(bootstrap, shadow, extra=client, fail_fast=True)
        try:
            copied = copy_window(bootstrap, spec.full_name(source_prefix), spec.full_name(shadow), window,
                                 label=spec.name, extra=client)
            click.echo(f"replay: {len(copied)} record(s) of {spec.full_name(source_prefix)} into shadow prefix "
                       f"{shadow!r} (executor dry run, no chat, LLM {'on' if with_llm else 'off'})", err=True)
            if not copied:
                if spec is RAW_MAIL:  # the first replay after trying POST /events finds nothing here
                    click.echo("replay: alerts from POST /events and /webhook skip raw-mail: --topic normalized",
                               err=True)
                return 0
            unscoped = sorted(name for name, tenant in settings.tenants.items() if not tenant.namespaces)
            if unscoped:  # as in the deployment: say why every action will read "rejected"
                click.echo(f"replay: no namespaces for tenant(s) {', '.join(unscoped)}: read-only, so their actions "
                           "show as rejected (`make run` gives 'default' every namespace: "
                           "RCAFLOW_TENANTS__DEFAULT__NAMESPACES='[\"*\"]'; docs/policies.md)", err=True)
            env = shadow_env(shadow, bootstrap, Path(tmp), with_llm=with_llm)
            # The shadow roles read the deployment's --config and --secrets-dir too; an environment variable
            # cannot take a section away from those, so notify and approvals are reset explicitly.
            with Stack(shadow_settings, roles=("worker", "executor"), env=env, log_dir=Path(tmp) / "logs",
                       reset_sections=("notify", "approvals")) as stack:
                follower = Follower(bootstrap, codec, shadow, extra=client)
                try:
                    rows = _follow(spec, copied, codec, follower, stack, timeout)
                finally:
                    follower.close()
            print_rows(rows, as_json)
            return 1 if any(r.error for r in rows) else 0
        finally:
            if not keep:
                delete_prefixed_topics(client, shadow, what="replay", app_id=settings.worker.app_id)


def _follow(spec: TopicSpec, copied: list[Copied], codec: Codec, follower: Follower, stack: Stack,
            timeout: float) -> list[Row]:
    if spec is RAW_MAIL:
        sent = []
        for item in copied:
            try:
                subject = codec.decode(item.value, RawMail, topic=spec.name).subject or ""
            except (CodecError, ValidationError):
                subject = "(not a RawMail record)"
            sent.append(Sent(item.name, subject, item.where))
        return wait_rows(sent, functools.partial(rows_for, 1, f=follower), follower, stack, timeout)
    events = []
    for item in copied:
        try:
            events.append((item, codec.decode(item.value, AlertEvent, topic=spec.name)))
        except (CodecError, ValidationError):
            continue  # the shadow normalize stage never sees these: nothing to follow

    def rows_of(pair: _CopiedEvent) -> list[Row] | None:
        subject = pair.event.raw.mail_subject or pair.event.source.kind.value
        row = event_row(1, pair.name, subject, pair.event, follower)
        return None if row is None else [row]

    return wait_rows([_CopiedEvent(item.name, event) for item, event in events], rows_of, follower, stack, timeout)


@dataclass(frozen=True)
class _CopiedEvent:
    name: str
    event: AlertEvent

