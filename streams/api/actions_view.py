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
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from producers.publisher import LIBRDKAFKA_LOG
from schemas.codec import Codec
from schemas.errors import CodecError
from schemas.records import ActionEvent, ActionState
from schemas.topics import ACTIONS

if TYPE_CHECKING:
    from streams.api.loops import LoopHandle

logger = logging.getLogger(__name__)

#: Consumer errors that mean the view cannot follow the topic any more: restart (with backoff) and say so.
_FATAL_FOR_THE_VIEW = frozenset({KafkaError._ALL_BROKERS_DOWN, KafkaError.UNKNOWN_TOPIC_OR_PART,
                                 KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION})

#: States after a decision; an older record re-read later must not move an action back.
_DECIDED = frozenset({
    ActionState.APPROVED, ActionState.REJECTED, ActionState.EXPIRED, ActionState.RUNNING,
    ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK, ActionState.WITHDRAWN,
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

    Run as a supervised loop (:class:`streams.api.loops.Loops`): :meth:`run` raises when the
    topic or every broker is unavailable and is started again with backoff; it resumes from the
    offsets it had read, so the view is never rebuilt from older records over newer ones.
    The blocking librdkafka calls run in a thread, so the event loop stays free.
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
        self._config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            # Never committed: the group id only satisfies librdkafka; we assign partitions ourselves.
            "group.id": f"rcaflow-approvals-view-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
        self._config.update(extra or {})
        self._stop = threading.Event()
        self._eof: set[int] = set()
        self._partitions: set[int] = set()
        #: partition -> next offset to read; survives restarts of :meth:`run`.
        self._next: dict[int, int] = {}
        self.caught_up = asyncio.Event()
        #: Called (from the feed's thread) with each record after the view took it.
        self.listeners: list[Callable[[ActionEvent], None]] = []

    def _assign(self, consumer: Consumer) -> None:
        meta = consumer.list_topics(self._topic, timeout=10)
        topic = meta.topics.get(self._topic)
        if topic is None or topic.error is not None or not topic.partitions:
            why = topic.error.str() if topic is not None and topic.error is not None else "no partitions"
            raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART,
                                            f"topic {self._topic} is not available ({why})"))
        self._partitions = set(topic.partitions)
        self._eof = {p for p in self._eof if p in self._partitions}
        consumer.assign([TopicPartition(self._topic, p, self._next.get(p, OFFSET_BEGINNING))
                         for p in self._partitions])

    def _poll_batch(self, consumer: Consumer) -> bool:
        """Read what is there (up to 0.5 s); True once every partition has reached its end once."""
        for msg in consumer.consume(num_messages=500, timeout=0.5):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._eof.add(msg.partition() or 0)
                elif err.code() in _FATAL_FOR_THE_VIEW:
                    raise KafkaException(err)
                else:
                    logger.debug("actions feed: %s", err.str())
                continue
            self._next[msg.partition() or 0] = (msg.offset() or 0) + 1
            try:
                action = self._codec.decode(msg.value() or b"", ActionEvent, topic=self._topic)
            except CodecError as exc:
                # The worker dead-letters poison records; the view just skips them.
                logger.warning("actions feed: skipping undecodable record at %s/%s: %s",
                               msg.partition(), msg.offset(), exc)
                continue
            self._pending.see(action)
            for listener in self.listeners:
                listener(action)
        return bool(self._partitions) and self._eof >= self._partitions

    async def run(self, handle: LoopHandle | None = None) -> None:
        """Follow the topic until :meth:`stop` (or the supervisor stops); closes its consumer on the way out.

        Raises when the topic is missing or every broker is down, so its supervisor restarts it.
        """
        consumer = Consumer({"logger": LIBRDKAFKA_LOG, **self._config})  # its lines through logging, rate-limited
        try:
            await asyncio.to_thread(self._assign, consumer)
            if self.caught_up.is_set() and handle is not None:
                handle.up()  # resumed where it was: the view is as current as the topic allows
            while not self._stop.is_set() and not (handle is not None and handle.stopping):
                if await asyncio.to_thread(self._poll_batch, consumer) and not self.caught_up.is_set():
                    logger.info("actions feed caught up: %d actions known", len(self._pending))
                    self.caught_up.set()
                    if handle is not None:
                        handle.up()
        finally:
            await asyncio.to_thread(consumer.close)

    def stop(self) -> None:
        self._stop.set()
