"""Create rcaflow's topics from the topic table, idempotently, at start-up."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from schemas.limits import topic_max_message_bytes
from schemas.topics import ALL_TOPICS, TopicSpec
from streams.errors import StreamsError
from streams.wiring.kafka_client import check_cluster

logger = logging.getLogger(__name__)


class TopicSetupError(StreamsError):
    """The topics could not be listed or created; the broker may still be starting, so a retry can help."""

    retriable = True


def ensure_topics(
    bootstrap: str,
    prefix: str = "",
    specs: Iterable[TopicSpec] = ALL_TOPICS,
    partitions: int | None = None,
    timeout: float = 30.0,
    *,
    extra: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create what is missing; an existing topic is left as it is. Returns the names created.

    ``extra``: the client properties of :func:`streams.settings.client_config` (security); a refused login
    raises ``KafkaAuthError`` at once, an absent broker ``KafkaUnreachableError`` after ``timeout``.
    """
    config = {"bootstrap.servers": bootstrap, **(extra or {})}
    existing = set(check_cluster(config, timeout=timeout).topics)
    admin = AdminClient(config)
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
