"""Offset commits that never stop a consumer's loop: asynchronous, one in flight at a time.

A synchronous ``Consumer.commit`` can wait minutes for the group coordinator, or never return
(confluent-kafka-python #1801, seen with 2.16), and confluent-kafka serialises a consumer's calls, so while it
waits no poll runs either: the consumer stops reading while looking healthy. Asynchronous, the loop goes on; the
coordinator's answer arrives through the ``on_commit`` callback during a later poll, and the offsets settled
meanwhile go with the next commit. Committing later is safe for every rcaflow consumer: a committed offset only
decides what a restarted consumer reads again, and each of them settles a re-read record idempotently (the
executor's ledger pre-scan, the knowledge base's idempotent writes). Here, not in ``streams``, beside
:mod:`producers.kafka_clients`, because any Kafka client of ours may need it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

logger = logging.getLogger(__name__)

__all__ = ["AsyncCommits", "latest_offsets"]

#: A commit still waiting after this long (and every such interval after it) is logged.
REPORT_EVERY_S = 30.0
#: A commit unanswered this long is asked again, with what was settled since.
RETRY_AFTER_S = 60.0


def latest_offsets(*lists: Iterable[TopicPartition]) -> list[TopicPartition]:
    """One offset per partition, the later list's winning (a consumer's settled offsets only move forward)."""
    merged: dict[tuple[str, int], TopicPartition] = {}
    for offsets in lists:
        for tp in offsets:
            merged[(tp.topic, tp.partition)] = tp
    return list(merged.values())


def _offsets_key(offsets: Iterable[TopicPartition]) -> frozenset[tuple[str, int, int]]:
    return frozenset((tp.topic, tp.partition, tp.offset) for tp in offsets)


class AsyncCommits:
    """The commit in flight of one consumer (with the ones it was asked again as), its answers, and how long
    they have waited.

    Pass :meth:`on_commit` as the consumer's ``on_commit`` property, :meth:`bind` the consumer once it exists,
    and call :meth:`commit` from the loop after each poll with a function that hands over the offsets settled
    since the last call. A failed commit is not asked again: the partition's next progress commits past it, and
    a partition lost to a rebalance is its next owner's to commit.
    """

    def __init__(self, who: str, *, report_every_s: float = REPORT_EVERY_S, retry_after_s: float = RETRY_AFTER_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._who = who
        self._report_every_s = report_every_s
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._consumer: Consumer | None = None
        #: The offsets of the commit in flight, when it was sent, since when commits have gone unanswered (a
        #: commit asked again does not restart that wait), and when that wait was last reported.
        self._committing: list[TopicPartition] | None = None
        self._since = 0.0
        self._waiting_since = 0.0
        self._reported = 0.0
        #: Commits sent and answers received (on_commit, in a poll): counted, so a late answer to a commit that
        #: was asked again is not taken for the answer to the newer one; and whether the newest commit itself was
        #: answered (it carries every offset of the ones before it). The last error of the unanswered run.
        self._sent = 0
        self._answers = 0
        self._newest: frozenset[tuple[str, int, int]] = frozenset()
        self._newest_answered = False
        self._error: str | None = None

    @property
    def who(self) -> str:
        """The consumer's name in log lines ("executor", "knowledge base")."""
        return self._who

    def bind(self, consumer: Consumer) -> None:
        self._consumer = consumer

    @property
    def _answered(self) -> bool:
        return self._newest_answered or self._answers >= self._sent

    def waiting_s(self) -> float:
        """How long commits have gone unanswered (0 when none waits): for a gauge to alert on. A commit asked
        again carries on the wait of the one it replaces, so a coordinator that never answers shows as a wait
        that keeps growing, not one that starts over every ``retry_after_s``."""
        if self._committing is None or self._answered:
            return 0.0
        return self._clock() - self._waiting_since

    def commit(self, take: Callable[[], list[TopicPartition]]) -> None:
        """Send the offsets ``take`` hands over, unless a commit is still waiting (they stay with the caller and go
        with a later commit). Never blocks: the commit is only queued."""
        assert self._consumer is not None, "bind() the consumer first"
        now = self._clock()
        carried: list[TopicPartition] = []
        if self._committing is not None:
            if not self._answered:
                waited = now - self._waiting_since
                if waited >= self._reported + self._report_every_s:
                    self._reported = waited
                    logger.warning("%s: an offset commit has waited %.0f s for the group coordinator; reading goes "
                                   "on, and what is settled meanwhile goes with the next commit", self._who, waited)
                if now - self._since < self._retry_after_s:
                    return
                carried = self._committing
            elif self._error is not None:
                # Typically partitions lost in a rebalance: their next owner reads again from its committed offset.
                logger.warning("%s: offset commit failed: %s", self._who, self._error)
            self._committing = None
        ready = latest_offsets(carried, take())
        if not ready:
            return
        if not carried:
            self._error = None
        try:
            self._consumer.commit(offsets=ready, asynchronous=True)  # only queued: returns at once
        except KafkaException as exc:
            logger.warning("%s: offset commit failed: %s", self._who, exc)
            return
        self._sent += 1
        self._newest, self._newest_answered = _offsets_key(ready), False
        if not carried:  # a fresh wait; a commit asked again goes on with the wait of the one it replaces
            self._waiting_since, self._reported = now, 0.0
        self._committing, self._since = ready, now

    def on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The coordinator's answer (librdkafka calls it on the polling thread, inside a poll)."""
        failed = [f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in partitions if tp.error is not None]
        said = error.str() if error is not None else ("; ".join(failed) if failed else None)
        if said is not None:
            self._error = said
        self._answers += 1
        if _offsets_key(partitions) == self._newest:
            self._newest_answered = True

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Revoked partitions are their next owner's to commit: a commit asked again must not carry them."""
        if self._committing is not None:
            moved = {(tp.topic, tp.partition) for tp in partitions}
            self._committing = [tp for tp in self._committing if (tp.topic, tp.partition) not in moved]

    async def finish(self, take: Callable[[], list[TopicPartition]], poll: Callable[[float], Any],
                     wait_s: float) -> bool:
        """On stop: commit what is settled and wait at most ``wait_s`` for the answers, polling so they can arrive.
        ``poll`` must not hand records to anyone (they are left for the partitions' next owner). True when every
        commit was answered."""
        deadline = self._clock() + wait_s
        while self._clock() < deadline:
            self.commit(take)
            if self._committing is None:
                return True
            await asyncio.to_thread(poll, 0.1)
        logger.warning("%s: stopping with an offset commit unanswered after %.0f s; the partitions' next owner "
                       "reads again from the last committed offset", self._who, self._clock() - self._waiting_since)
        return False
