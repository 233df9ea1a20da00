"""Consumer lag per group and topic, from the group's committed offsets and the partitions' high watermarks.

Each long-running consumer process (worker, executor, knowledge base) exports the lag of its own group,
so a stalled or slow consumer is visible without a separate exporter. The broker is asked from a daemon
thread every ``every_s`` seconds and a scrape only reads the last answer: a slow or unreachable broker
never blocks the event loop or the scrape. Only partitions the group has committed count (a group that
never committed on a partition has no position there yet).

The committed offsets are read by a consumer of the group (``committed()``), never by the admin client's
OffsetFetch: librdkafka (issue #5040, open) crashes the whole process with SIGSEGV when an admin OffsetFetch
is answered NOT_COORDINATOR (it asks the group handle to find the coordinator again, and an admin client has
none), which a broker answers whenever the group's coordinator moves: while it loads after a fresh start, at
every rolling restart. A consumer has that handle: it looks the coordinator up again and this round fails
with an error, logged; the next one reads. The consumer never subscribes, so it never joins the group: its
members are not rebalanced when it starts or closes, and it commits nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from producers.kafka_clients import new_admin, new_consumer

logger = logging.getLogger(__name__)

#: How often the broker is asked; lag rules look at minutes, so this is plenty and cheap.
LAG_EVERY_S = 15.0
#: The longest one question to the broker may take before this round gives up.
REQUEST_TIMEOUT_S = 10.0
#: Events (librdkafka's log lines, errors) one round takes off a group's consumer queue at most.
EVENTS_PER_ROUND = 1000


def partition_lag(committed: Mapping[tuple[str, int], int], ends: Mapping[tuple[str, int], int]) -> dict[str, int]:
    """Records behind per topic: the sum over the committed partitions of end minus committed (never negative)."""
    lag: dict[str, int] = {}
    for (topic, partition), offset in committed.items():
        end = ends.get((topic, partition))
        if end is None or offset < 0:
            continue
        lag[topic] = lag.get(topic, 0) + max(0, end - offset)
    return lag


def group_reader_config(client: Mapping[str, Any], group: str) -> dict[str, Any]:
    """The client config of the consumer that reads ``group``'s committed offsets: the process's own (where the
    cluster is, how to authenticate, its raw properties), the group's id, and nothing it could commit."""
    return {**client, "group.id": group, "enable.auto.commit": False, "enable.auto.offset.store": False}


class ConsumerLag(Collector):
    """``rcaflow_consumer_lag_records{group,topic}`` and ``rcaflow_consumer_lag_updated_timestamp_seconds{group}``.

    Groups are the process's own (from settings), topics the ones the group committed: label values stay
    bounded. A failed round keeps the previous numbers; the timestamp shows how old they are. One consumer per
    group, made at its first round and kept; :meth:`stop` closes them.
    """

    def __init__(self, client: Mapping[str, Any], groups: Sequence[str], *, every_s: float = LAG_EVERY_S,
                 topic_prefix: str = "", also: Sequence[str] = ()) -> None:
        self._client = dict(client)
        self._groups = tuple(groups)
        #: Only topics named with it (``kafka.topic_prefix``) or named in ``also`` (the worker's repartition
        #: topic, named by Faust's rule) are asked about: on a shared cluster the groups' offsets are read for
        #: our topics, not for every topic of every team.
        self._topic_prefix = topic_prefix
        self._also = frozenset(also)
        self._every_s = every_s
        self._lag: dict[str, dict[str, int]] = {}
        self._updated: dict[str, float] = {}
        self._stop = threading.Event()
        self._admin: AdminClient | None = None
        self._readers: dict[str, Consumer] = {}
        self._readers_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._failing: set[str] = set()

    def refresh(self) -> None:
        """Ask the broker once (blocking: call it from a thread)."""
        if self._admin is None:
            self._admin = new_admin(self._client)
        try:
            partitions = self._partitions(self._admin, self._topic_prefix, self._also)
        except (KafkaException, TimeoutError) as exc:
            for group in self._groups:
                self._failed(group, exc)
            return
        for group in self._groups:
            try:
                self._lag[group] = self._group_lag(self._admin, self._reader(group), partitions)
                self._updated[group] = time.time()
            except (KafkaException, TimeoutError) as exc:
                self._failed(group, exc)
                continue
            if group in self._failing:
                logger.info("consumer lag of %s readable again", group)
                self._failing.discard(group)

    def _failed(self, group: str, exc: BaseException) -> None:
        if group not in self._failing:  # one line per outage, not one per round
            logger.warning("consumer lag of %s not readable: %s", group, exc)
            self._failing.add(group)

    @staticmethod
    def _partitions(admin: AdminClient, prefix: str, also: frozenset[str]) -> list[TopicPartition]:
        """Every partition of the cluster's topics named with ``prefix`` (or in ``also``) but its internal ones
        (``__consumer_offsets``...): where our groups may have committed. ``committed()`` needs them named;
        the admin OffsetFetch that finds them alone is the one that crashes."""
        metadata = admin.list_topics(timeout=REQUEST_TIMEOUT_S)
        return [TopicPartition(name, partition)
                for name, topic in sorted(metadata.topics.items())
                if (name.startswith(prefix) or name in also) and not name.startswith("__") and topic.error is None
                for partition in sorted(topic.partitions)]

    def _reader(self, group: str) -> Consumer:
        with self._readers_lock:
            reader = self._readers.get(group)
            if reader is None:
                reader = self._readers[group] = new_consumer(group_reader_config(self._client, group))
        # Never subscribed, it has no records to give: this serves its queue (librdkafka's log lines reach
        # logging, error events do not pile up) and nothing else.
        for _ in range(EVENTS_PER_ROUND):
            if reader.poll(0) is None:
                break
        return reader

    @staticmethod
    def _group_lag(admin: AdminClient, reader: Consumer, partitions: list[TopicPartition]) -> dict[str, int]:
        if not partitions:
            return {}
        answer = reader.committed(partitions, timeout=REQUEST_TIMEOUT_S)
        failed = next((tp.error for tp in answer if tp.error is not None), None)
        if failed is not None:  # a partial answer would show a smaller lag than there is: keep the last one
            raise KafkaException(failed)
        committed = {(tp.topic, tp.partition): tp.offset for tp in answer if tp.offset >= 0}
        if not committed:
            return {}
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        asked = {TopicPartition(topic, partition): latest for topic, partition in committed}
        ends = {(tp.topic, tp.partition): info.offset
                for tp, info in ((tp, f.result(timeout=REQUEST_TIMEOUT_S * 2))
                                 for tp, f in admin.list_offsets(asked, request_timeout=REQUEST_TIMEOUT_S).items())}
        return partition_lag(committed, ends)

    def _loop(self) -> None:
        # The first round waits one interval too: a process starting with a fresh broker would otherwise find
        # the group's coordinator still loading and log a failed first round (NOT_COORDINATOR) every start; by
        # then the process's own consumer has joined its group and the coordinator is up.
        try:
            while not self._stop.wait(self._every_s):
                self.refresh()
        finally:
            self._close()

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self._loop, name="consumer-lag", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout_s: float = 60.0) -> None:
        """No more rounds; the group consumers are closed once a round under way is over (waited for up to
        ``timeout_s``). After direct :meth:`refresh` calls (no thread), call it once they are over."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout_s)  # the thread closes them
        else:
            self._close()

    def _close(self) -> None:
        with self._readers_lock:
            readers, self._readers = self._readers, {}
        for reader in readers.values():
            reader.close()  # never joined: no LeaveGroup, no rebalance of the group's members

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
                        *, every_s: float = LAG_EVERY_S, topic_prefix: str = "",
                        also: Sequence[str] = ()) -> ConsumerLag:
    """Register a :class:`ConsumerLag` for ``groups`` on ``registry`` (default: the process registry) and start it."""
    from prometheus_client import REGISTRY

    lag = ConsumerLag(client, groups, every_s=every_s, topic_prefix=topic_prefix, also=also)
    (registry if registry is not None else REGISTRY).register(lag)
    lag.start()
    return lag
