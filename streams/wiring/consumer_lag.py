"""Consumer lag per group and topic, from the group's committed offsets and the partitions' high watermarks.

Each long-running consumer process (worker, executor, knowledge base) exports the lag of its own group,
so a stalled or slow consumer is visible without a separate exporter. The broker is asked from a daemon
thread every ``every_s`` seconds and a scrape only reads the last answer: a slow or unreachable broker
never blocks the event loop or the scrape. Only partitions the group has committed count (a group that
never committed on a partition has no position there yet).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from producers.kafka_clients import new_admin

logger = logging.getLogger(__name__)

#: How often the broker is asked; lag rules look at minutes, so this is plenty and cheap.
LAG_EVERY_S = 15.0
#: The longest one question to the broker may take before this round gives up.
REQUEST_TIMEOUT_S = 10.0


def partition_lag(committed: Mapping[tuple[str, int], int], ends: Mapping[tuple[str, int], int]) -> dict[str, int]:
    """Records behind per topic: the sum over the committed partitions of end minus committed (never negative)."""
    lag: dict[str, int] = {}
    for (topic, partition), offset in committed.items():
        end = ends.get((topic, partition))
        if end is None or offset < 0:
            continue
        lag[topic] = lag.get(topic, 0) + max(0, end - offset)
    return lag


class ConsumerLag(Collector):
    """``rcaflow_consumer_lag_records{group,topic}`` and ``rcaflow_consumer_lag_updated_timestamp_seconds{group}``.

    Groups are the process's own (from settings), topics the ones the group committed: label values stay
    bounded. A failed round keeps the previous numbers; the timestamp shows how old they are.
    """

    def __init__(self, client: Mapping[str, Any], groups: Sequence[str], *, every_s: float = LAG_EVERY_S) -> None:
        self._client = dict(client)
        self._groups = tuple(groups)
        self._every_s = every_s
        self._lag: dict[str, dict[str, int]] = {}
        self._updated: dict[str, float] = {}
        self._stop = threading.Event()
        self._admin: AdminClient | None = None
        self._failing = False

    def refresh(self) -> None:
        """Ask the broker once (blocking: call it from a thread)."""
        if self._admin is None:
            self._admin = new_admin(self._client)
        for group in self._groups:
            try:
                self._lag[group] = self._group_lag(self._admin, group)
                self._updated[group] = time.time()
                if self._failing:
                    logger.info("consumer lag of %s readable again", group)
                    self._failing = False
            except (KafkaException, TimeoutError) as exc:
                if not self._failing:  # one line per outage, not one per round
                    logger.warning("consumer lag of %s not readable: %s", group, exc)
                    self._failing = True

    def _group_lag(self, admin: AdminClient, group: str) -> dict[str, int]:
        futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                    request_timeout=REQUEST_TIMEOUT_S)
        answer = futures[group].result(timeout=REQUEST_TIMEOUT_S * 2)
        committed = {(tp.topic, tp.partition): tp.offset for tp in answer.topic_partitions or [] if tp.offset >= 0}
        if not committed:
            return {}
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        asked = {TopicPartition(topic, partition): latest for topic, partition in committed}
        ends = {(tp.topic, tp.partition): info.offset
                for tp, info in ((tp, f.result(timeout=REQUEST_TIMEOUT_S * 2))
                                 for tp, f in admin.list_offsets(asked, request_timeout=REQUEST_TIMEOUT_S).items())}
        return partition_lag(committed, ends)

    def _loop(self) -> None:
        # The first round waits too: librdkafka (2.x, issue #5040) crashes the whole process (SIGSEGV in
        # rd_kafka_cgrp_op) when an admin OffsetFetch is answered NOT_COORDINATOR, which a fresh broker does
        # while the group's coordinator is still loading; by the first round the process's own consumer has
        # joined its group and the coordinator is up.
        while not self._stop.wait(self._every_s):
            self.refresh()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._loop, name="consumer-lag", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily("rcaflow_consumer_lag_records",
                                "Records the consumer group is behind on the topic (high watermark minus committed "
                                "offset, summed over its partitions).", labels=["group", "topic"])
        updated = GaugeMetricFamily("rcaflow_consumer_lag_updated_timestamp_seconds",
                                    "When the group's lag was last read from the broker (Unix time).",
                                    labels=["group"])
        for group, topics in sorted(self._lag.items()):
            for topic, records in sorted(topics.items()):
                lag.add_metric([group, topic], records)
        for group, at in sorted(self._updated.items()):
            updated.add_metric([group], at)
        yield lag
        yield updated


def export_consumer_lag(client: Mapping[str, Any], groups: Sequence[str], registry: CollectorRegistry | None = None,
                        *, every_s: float = LAG_EVERY_S) -> ConsumerLag:
    """Register a :class:`ConsumerLag` for ``groups`` on ``registry`` (default: the process registry) and start it."""
    from prometheus_client import REGISTRY

    lag = ConsumerLag(client, groups, every_s=every_s)
    (registry if registry is not None else REGISTRY).register(lag)
    lag.start()
    return lag
