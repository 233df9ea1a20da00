"""What the approval endpoints know about actions: the latest state per action id, read from ``actions``.

:class:`InMemoryPendingActions` is fed by :class:`ActionsFeed`, which reads
every partition of the actions topic from the beginning (no consumer group:
each API replica needs every action, not a share). Limits, on purpose: the
whole view lives in memory (pruned by age), a fresh replica answers
``unknown action`` until it has caught up (see :attr:`ActionsFeed.caught_up`),
and a record produced a moment ago may not be visible yet.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from schemas.codec import Codec
from schemas.errors import CodecError
from schemas.records import ActionEvent, ActionState
from schemas.topics import ACTIONS

logger = logging.getLogger(__name__)

#: States after a decision; an older record re-read later must not move an action back.
_DECIDED = frozenset({
    ActionState.APPROVED, ActionState.REJECTED, ActionState.EXPIRED, ActionState.RUNNING,
    ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK,
})


class PendingActions(Protocol):
    """The one question the router asks: what is the latest known state of this action?"""

    def get(self, action_id: str) -> ActionEvent | None: ...


class InMemoryPendingActions:
    """Latest record per action id; entries older than ``keep`` (by their ``at``) are dropped.

    Thread-safe: the feed writes from a worker thread while the API reads.
    """

    def __init__(self, *, keep: timedelta = timedelta(days=2)) -> None:
        self._latest: dict[str, ActionEvent] = {}
        self._keep = keep
        self._lock = threading.Lock()
        self._seen = 0

    def __len__(self) -> int:
        return len(self._latest)

    def get(self, action_id: str) -> ActionEvent | None:
        with self._lock:
            return self._latest.get(action_id)

    def see(self, action: ActionEvent) -> None:
        """Take one record from the actions topic (in topic order per action)."""
        with self._lock:
            known = self._latest.get(action.action_id)
            if known is not None and known.state in _DECIDED and action.state not in _DECIDED:
                return
            self._latest[action.action_id] = action
            self._seen += 1
            if self._seen % 1000 == 0:
                self._prune(action.at)

    def _prune(self, now: datetime) -> None:
        horizon = now - self._keep
        for action_id in [a for a, ev in self._latest.items() if ev.at < horizon]:
            del self._latest[action_id]


class ActionsFeed:
    """Keeps an :class:`InMemoryPendingActions` up to date from the actions topic.

    Start with ``task = asyncio.create_task(feed.run())``; :meth:`stop` ends it.
    The blocking librdkafka poll runs in a thread, so the event loop stays free.
    """

    def __init__(
        self,
        *,
        bootstrap: str,
        codec: Codec,
        pending: InMemoryPendingActions,
        topic_prefix: str = "",
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._codec = codec
        self._pending = pending
        self._topic = ACTIONS.full_name(topic_prefix)
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            # Never committed: the group id only satisfies librdkafka; we assign partitions ourselves.
            "group.id": f"rcaflow-approvals-view-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
        config.update(extra or {})
        self._consumer = Consumer(config)
        self._stop = threading.Event()
        self._eof: set[int] = set()
        self._partitions: set[int] = set()
        self.caught_up = asyncio.Event()

    def _assign(self) -> None:
        meta = self._consumer.list_topics(self._topic, timeout=10)
        topic = meta.topics.get(self._topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise KafkaException(f"topic {self._topic} is not available")
        self._partitions = set(topic.partitions)
        self._consumer.assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in self._partitions])

    def _poll_batch(self) -> bool:
        """Read what is there (up to 0.5 s); True once every partition has reached its end once."""
        for msg in self._consumer.consume(num_messages=500, timeout=0.5):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._eof.add(msg.partition() or 0)
                else:
                    logger.warning("actions feed: %s", err.str())
                continue
            try:
                self._pending.see(self._codec.decode(msg.value() or b"", ActionEvent, topic=self._topic))
            except CodecError as exc:
                # The worker dead-letters poison records; the view just skips them.
                logger.warning("actions feed: skipping undecodable record at %s/%s: %s",
                               msg.partition(), msg.offset(), exc)
        return bool(self._partitions) and self._eof >= self._partitions

    async def run(self) -> None:
        """Follow the topic until :meth:`stop`; closes the consumer on the way out."""
        try:
            await asyncio.to_thread(self._assign)
            while not self._stop.is_set():
                if await asyncio.to_thread(self._poll_batch) and not self.caught_up.is_set():
                    logger.info("actions feed caught up: %d actions known", len(self._pending))
                    self.caught_up.set()
        finally:
            await asyncio.to_thread(self._consumer.close)

    def stop(self) -> None:
        self._stop.set()
