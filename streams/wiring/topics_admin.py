"""Create rcaflow's topics idempotently at start-up: the topic table's, and every topic the Faust worker uses.

The worker's internal topics (its ``notify-input``/``audit-input``, the tables' changelogs, the decide
agent's repartition topic and Faust's leader topic) are created here too, before the worker
starts, with the record limits of :mod:`schemas.limits`. Left to Faust they appear at the first
assignment with the broker's 1 MiB default: a record the public topics accept could then be refused
on its way through an internal topic, and a worker that sends to one not yet there waits for its
metadata.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.cimpl import NewTopic

from producers.kafka_clients import new_admin
from schemas.limits import BATCH_OVERHEAD_BYTES, MAX_RECORD_BYTES, topic_max_message_bytes, topic_max_record_bytes
from schemas.topics import ACTIONS, ALL_TOPICS, DEAD_LETTER, INCIDENTS, NORMALIZED, RCA_RESULT, TopicSpec
from streams.errors import StreamsError
from streams.wiring.kafka_client import check_cluster

logger = logging.getLogger(__name__)

#: Table names of the worker (frozen: each names its changelog topic ``<app id>-<name>-changelog``).
DEDUP_STATE = "dedup-state"
AUDIT_HEAD = "audit-head"
AWAITING_APPROVAL = "awaiting-approval"
ACTION_COOLDOWNS = "action-cooldowns"
NOTIFIED = "notified"
APPROVAL_DECISIONS = "approval-decisions"
#: Open incident groups per tenant:scope (the correlate agent; docs/correlation.md).
INCIDENT_GROUPS = "incident-groups"
WORKER_TABLES = (DEDUP_STATE, AUDIT_HEAD, AWAITING_APPROVAL, ACTION_COOLDOWNS, NOTIFIED, APPROVAL_DECISIONS,
                 INCIDENT_GROUPS)
#: Internal topics of the worker (frozen), after ``<prefix><app id>``.
NOTIFY_INPUT_SUFFIX = "-notify-input"
AUDIT_INPUT_SUFFIX = "-audit-input"
#: Resolved incidents, one record per action key the approvals side must withdraw if it still waits.
WITHDRAW_INPUT_SUFFIX = "-withdraw-input"
#: Dedup's incident records re-keyed tenant:cluster, so the members of one incident group meet in one partition.
CORRELATE_INPUT_SUFFIX = "-correlate-input"
#: What names the decide agent's repartition topic (frozen): agent name, the topic it reads, the group_by name.
#: Faust's ``group_by`` derived the name from these; the worker's own decide-route agent now sends to that same
#: topic (awaited and retried), so deployed clusters keep their records in flight and committed offsets.
DECIDE_GROUP_BY = ("decide", RCA_RESULT.name, "fingerprint")


class TopicSetupError(StreamsError):
    """The topics could not be listed or created; the broker may still be starting, so a retry can help."""

    retriable = True


@dataclass(frozen=True, slots=True)
class InternalTopic:
    """A topic the worker's Faust app uses besides the topic table's: full name, partitions, record limit."""

    name: str
    partitions: int
    max_record_bytes: int
    configs: Mapping[str, str] = field(default_factory=dict)

    def new_topic(self) -> NewTopic:
        return NewTopic(self.name, num_partitions=self.partitions, replication_factor=-1,
                        config={**self.configs, "max.message.bytes": str(self.max_record_bytes + BATCH_OVERHEAD_BYTES)})


def repartition_topic_name(prefix: str, agent: str, source: str, name: str) -> str:
    """The topic Faust 0.15 derives for ``stream.group_by(..., name=name)`` in ``agent`` reading ``source``.

    The worker no longer uses ``group_by`` but keeps its topic name (:data:`DECIDE_GROUP_BY`).
    ``Stream.group_by`` derives ``<stream prefix>-<source topic><-name>-repartition`` and an agent's
    stream prefix is the agent's name; the source topic carries rcaflow's topic prefix, the app id is
    not part of it.
    """
    return f"{agent}-{prefix}{source}-{name}-repartition"


def worker_topics(prefix: str, app_id: str, partitions: int) -> tuple[InternalTopic, ...]:
    """Every topic the worker's Faust app ``<prefix><app_id>`` uses that is not in the topic table.

    Record limits: an internal topic that carries records of public topics verbatim accepts the
    largest of theirs (audit-input carries normalized alerts, action records and refused-approval dead
    letters; the repartition topic carries rca-result records); the rest (notify requests, table rows
    as JSON, Faust's leader topic) are MAX_RECORD_BYTES records under ``MAX_RECORD_BYTES``.
    """
    base = f"{prefix}{app_id}"
    audited = max(topic_max_record_bytes(spec.name) for spec in (NORMALIZED, ACTIONS, DEAD_LETTER))
    agent, source, group = DECIDE_GROUP_BY
    return (
        InternalTopic(f"{base}{NOTIFY_INPUT_SUFFIX}", partitions, MAX_RECORD_BYTES),
        InternalTopic(f"{base}{AUDIT_INPUT_SUFFIX}", partitions, audited),
        InternalTopic(f"{base}{WITHDRAW_INPUT_SUFFIX}", partitions, topic_max_record_bytes(INCIDENTS.name)),
        InternalTopic(f"{base}{CORRELATE_INPUT_SUFFIX}", partitions, topic_max_record_bytes(INCIDENTS.name)),
        InternalTopic(repartition_topic_name(prefix, agent, source, group), partitions,
                      topic_max_record_bytes(source)),
        *(InternalTopic(f"{base}-{table}-changelog", partitions, MAX_RECORD_BYTES, {"cleanup.policy": "compact"})
          for table in WORKER_TABLES),
        InternalTopic(f"{base}-__assignor-__leader", 1, MAX_RECORD_BYTES),
    )


def ensure_topics(
    bootstrap: str,
    prefix: str = "",
    specs: Iterable[TopicSpec] = ALL_TOPICS,
    partitions: int | None = None,
    timeout: float = 30.0,
    *,
    extra: Mapping[str, Any] | None = None,
    internal: Iterable[InternalTopic] = (),
    fail_fast: bool = False,
) -> list[str]:
    """Create what is missing; an existing topic is left as it is. Returns the names created.

    ``fail_fast``: for one-shot commands, an address where nothing listens fails at once (see ``check_cluster``).

    ``internal``: the worker's own topics (:func:`worker_topics`), created with the rest.
    ``extra``: the client properties of :func:`streams.settings.client_config` (security); a refused login
    raises ``KafkaAuthError`` at once, an absent broker ``KafkaUnreachableError`` after ``timeout``.
    """
    config = {"bootstrap.servers": bootstrap, **(extra or {})}
    existing = set(check_cluster(config, timeout=timeout, fail_fast=fail_fast).topics)
    admin = new_admin(config)
    wanted = [
        NewTopic(
            spec.full_name(prefix),
            num_partitions=partitions if partitions and spec.partitions > 1 else spec.partitions,
            replication_factor=-1,
            # The record limit per topic comes from schemas/limits.py, the one chain of size limits.
            config={**spec.configs, "max.message.bytes": str(topic_max_message_bytes(spec.name))},
        )
        for spec in specs
        if spec.full_name(prefix) not in existing
    ]
    wanted += [topic.new_topic() for topic in internal if topic.name not in existing]
    if not wanted:
        return []
    created: list[str] = []
    for name, future in admin.create_topics(wanted, request_timeout=timeout).items():
        try:
            future.result(timeout)
            created.append(name)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise TopicSetupError(f"cannot create topic {name}: {exc}") from exc
    logger.info("created topics %s", ", ".join(created))
    return created
