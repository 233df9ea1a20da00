"""How many rows each worker table held over a load run, replayed from the tables' changelog topics.

Every write to a worker table is a record on its changelog (key → row), every deletion a tombstone (key →
null), stamped when the worker sent it. Replaying them in time order gives the live rows at any moment and the
rows deleted (by the prune ticks, or by the stage that owns the table), read once after the run from outside
the worker, which needs no metric of its own for it. The changelogs are compacted: a write whose key was
deleted later can vanish from a closed segment (16 MiB on the embedded broker), and the replay would then
undercount the rows before that deletion. :func:`keep_uncompacted` holds compaction off for the run's
records (``min.compaction.lag.ms``; the worker reads its changelogs only when it recovers, so it does not
notice), and ``orphan_deletes`` (tombstones of keys never seen written) says when records were lost anyway.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

CHANGELOG_SUFFIX = "-changelog"


@dataclass(frozen=True, slots=True)
class Change:
    """One changelog record: at ``at_ms`` (CreateTime) ``key`` was written (``deleted`` False) or deleted."""

    at_ms: float
    key: bytes
    deleted: bool


@dataclass
class TableHistory:
    """One table over the run: writes, deletions, and the live rows at each asked-for time."""

    writes: int = 0
    deletes: int = 0
    orphan_deletes: int = 0
    rows: list[int] = field(default_factory=list)
    final_rows: int = 0
    max_rows: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"writes": self.writes, "deletes": self.deletes, "orphan_deletes": self.orphan_deletes,
                "final_rows": self.final_rows, "max_rows": self.max_rows}


def replay(changes: Sequence[Change], times_ms: Sequence[float]) -> TableHistory:
    """Live rows at each of ``times_ms`` (ascending), after every change stamped at or before it."""
    history = TableHistory()
    live: set[bytes] = set()
    ordered = sorted(changes, key=lambda c: c.at_ms)
    i = 0
    for at in [*times_ms, float("inf")]:
        while i < len(ordered) and ordered[i].at_ms <= at:
            change = ordered[i]
            if change.deleted:
                history.deletes += 1
                if change.key in live:
                    live.discard(change.key)
                else:
                    history.orphan_deletes += 1  # its write was compacted away: rows before it undercounted
            else:
                history.writes += 1
                live.add(change.key)
            history.max_rows = max(history.max_rows, len(live))
            i += 1
        if at != float("inf"):
            history.rows.append(len(live))
    history.final_rows = len(live)
    return history


def changelog_topics(client: Mapping[str, Any], app_prefix: str) -> dict[str, str]:
    """Table name → changelog topic, for the tables of the Faust app whose topics start with ``app_prefix-``."""
    topics = AdminClient(dict(client)).list_topics(timeout=10).topics
    start = f"{app_prefix}-"
    return {name[len(start):-len(CHANGELOG_SUFFIX)]: name for name in sorted(topics)
            if name.startswith(start) and name.endswith(CHANGELOG_SUFFIX)}


def keep_uncompacted(client: Mapping[str, Any], topics: Sequence[str], lag_ms: int) -> None:
    """No record of ``topics`` younger than ``lag_ms`` is compacted away, so :func:`replay` sees every write."""
    if not topics:
        return
    resources = [ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[ConfigEntry(
        "min.compaction.lag.ms", str(lag_ms), incremental_operation=AlterConfigOpType.SET)]) for topic in topics]
    admin = AdminClient(dict(client))  # held until the futures are done: a collected client cancels them
    for future in admin.incremental_alter_configs(resources).values():
        future.result(timeout=30)


def read_changes(client: Mapping[str, Any], topic: str, *, timeout_s: float = 300.0) -> list[Change]:
    """Every record of ``topic`` up to its end offsets now, as changes."""
    consumer = Consumer({**client, "group.id": f"load-tables-{uuid.uuid4().hex}", "enable.auto.commit": False})
    changes: list[Change] = []
    try:
        parts = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        remaining = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in remaining])
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error():
                    continue
                changes.append(Change(float(msg.timestamp()[1]), msg.key() or b"", msg.value() is None))
                if (msg.offset() or 0) + 1 >= ends[msg.partition() or 0]:
                    remaining.discard(msg.partition() or 0)
    finally:
        consumer.close()
    return changes


def table_histories(client: Mapping[str, Any], app_prefix: str,
                    times_ms: Sequence[float]) -> dict[str, TableHistory]:
    """Each worker table's history at ``times_ms`` (wall clock, ms, ascending)."""
    return {table: replay(read_changes(client, topic), times_ms)
            for table, topic in changelog_topics(client, app_prefix).items()}
