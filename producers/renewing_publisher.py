"""A publisher that replaces its Kafka producer when the broker answers again but that producer stays stuck.

Why: once, after the embedded single-node Kafka was stopped under load and started again, the executor's
idempotent confluent-kafka producer (librdkafka 2.16.0) timed out every record for one partition of ``actions``
(``Local: Message timed out``, every 30 s) long after the broker was back, while the other processes' producers
worked. Its last line from librdkafka, as the broker shut down, was ``Partition ...[1]: new leader-1 not found in
cache``: the broker's last produce answer named no leader, and librdkafka skips that update
(``rd_kafka_metadata_update_op``; open upstream as confluentinc/librdkafka#5430). The same line appears in runs
that recover, so it is the trigger's mark rather than the whole cause. No client setting is known to get such a
producer going again, and the executor retries a state change until it is acked, so that action (and every
offset behind it) waited for good. A new producer instance asks for fresh metadata and delivers.

So: when a record (a key: one partition) has failed for reasons that say "not now" for ``stuck_after_s`` since
it was first handed over, a fresh client asks the broker for the topic's metadata; if every partition has a
leader, the broker is fine and the producer is not, and it is replaced. The old one's records fail at once
(purged, transient), so their senders send them again through the new one. While the broker is really away
the probe says so, and nothing is replaced.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaException

from producers.kafka_clients import new_admin
from producers.publisher import Delivery, KafkaPublisher, PublishError
from schemas.records import Record
from schemas.topics import TopicSpec

logger = logging.getLogger(__name__)


def leaders_known(config: Mapping[str, Any], topic: str, timeout_s: float = 5.0) -> str | None:
    """None when a new client gets metadata naming a leader for every partition of ``topic``; else why not.

    A new client on purpose: the stuck producer's own metadata cache is what cannot be trusted. Lists all
    topics rather than naming one, which would auto-create a missing topic on brokers that allow it.
    """
    try:
        metadata = new_admin(dict(config)).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        return f"no metadata from the broker: {exc}"
    found = metadata.topics.get(topic)
    if found is None:
        return f"{topic} is not in the broker's metadata"
    if found.error is not None:
        return f"{topic}: {found.error}"
    leaderless = sorted(p.id for p in found.partitions.values() if p.leader < 0)
    if leaderless:
        return f"{topic} partitions without a leader: {leaderless}"
    return None


class RenewingPublisher:
    """A :class:`producers.publisher.Publisher` over a :class:`KafkaPublisher` it builds with ``factory`` and
    replaces when the broker works but the producer does not (see the module docstring).

    Guarantees: a record is never dropped here (a failed publish still raises to its caller, who retries); a
    producer is replaced only once a key has gone ``stuck_after_s`` without an ack (per key, so acks on healthy
    partitions do not hide one stuck partition) and a ``probe`` finds the broker answering; at most one
    replacement runs at a time, and the probe runs at most every ``probe_every_s``.
    """

    def __init__(self, factory: Callable[[], KafkaPublisher], *, probe: Callable[[], str | None],
                 stuck_after_s: float = 60.0, probe_every_s: float = 5.0, name: str = "publisher",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._factory = factory
        self._probe = probe
        self._stuck_after_s = stuck_after_s
        self._probe_every_s = probe_every_s
        self._name = name
        self._clock = clock
        self._current = factory()
        #: (topic, key) -> when a record for it was first handed over since its last ack, while it keeps failing.
        self._failing: dict[tuple[str, str], float] = {}
        self._last_probe = float("-inf")
        self._renewing = asyncio.Lock()
        #: How many producers were replaced so far (for logs and tests).
        self.renewals = 0

    @property
    def stuck_after_s(self) -> float:
        """How long a key may keep failing before the producer is looked at (the executor's
        ``executor.producer_renew_after_s``)."""
        return self._stuck_after_s

    def topic_name(self, spec: TopicSpec) -> str:
        return self._current.topic_name(spec)

    async def publish(self, spec: TopicSpec, key: str, record: Record) -> Delivery:
        publisher = self._current
        slot = (publisher.topic_name(spec), key)
        handed = self._clock()
        try:
            delivery = await publisher.publish(spec, key, record)
        except PublishError as exc:
            if exc.retriable:
                if len(self._failing) > 10_000:  # keys whose callers gave up; bounded, never a reason to replace
                    self._failing.clear()
                failing_s = self._clock() - self._failing.setdefault(slot, handed)
                await self._renew_if_stuck(publisher, exc, failing_s)
            raise
        self._failing.pop(slot, None)
        return delivery

    async def _renew_if_stuck(self, failed: KafkaPublisher, exc: PublishError, silent_s: float) -> None:
        async with self._renewing:
            now = self._clock()
            if failed is not self._current or silent_s < self._stuck_after_s:
                return  # already replaced, or not failing for long: an ordinary outage or a slow broker
            if now - self._last_probe < self._probe_every_s:
                return
            self._last_probe = now
            why_not = await asyncio.to_thread(self._probe)
            if why_not is not None:
                logger.info("%s: a record not acked for %.0f s; the broker is not back yet (%s): producer kept",
                            self._name, silent_s, why_not)
                return
            try:
                fresh = self._factory()
            except KafkaException as build_failed:  # keep the old one: the caller's retry must stay a retry
                logger.error("%s: the Kafka producer is stuck but a new one could not be built: %s", self._name,
                             build_failed)
                return
            self._current = fresh
            self._failing.clear()  # the new producer gets the whole bound of its own
            self.renewals += 1
        logger.warning(
            "%s: the broker answers again (every partition has a leader) but the Kafka producer has not had a "
            "record for %s acked for %.0f s (last error: %s); replacing it with a new producer (replacement %d). "
            "Records it still holds fail now and are sent again through the new one", self._name, exc.topic,
            silent_s, exc, self.renewals)
        await asyncio.to_thread(failed.abandon)

    async def close(self) -> None:
        await self._current.close()

    def close_sync(self, timeout: float = 10.0) -> None:
        self._current.close_sync(timeout)
