"""Single use, across replicas: one decision per action, and every credential (link, signed request) spent once.

``claim`` before publishing, ``release`` if the publish failed so the approver
can click again. The memory every replica shares is the approvals topic itself:
each :class:`~schemas.records.ApprovalDecision` names the action it decided and
the digest of the credential it spent (``claim_id``). :class:`ApprovalsFeed`
reads the topic into a :class:`SharedClaims`, so a request already used on
another replica is refused here as soon as its decision is visible; two
replicas racing inside that lag both publish, and the worker (the single
writer per action) keeps the first and refuses the second as a replay.
Only decisions that carry the API's approval signature count: a record someone
else wrote on the topic must not make a genuine approver's click "already decided".
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from policies.decision_signature import ApprovalKeys, DecisionSignatureError
from producers.kafka_clients import new_consumer
from schemas.codec import Codec
from schemas.errors import CodecError
from schemas.records import ApprovalDecision
from schemas.topics import APPROVALS

logger = logging.getLogger(__name__)


class ClaimStore(Protocol):
    def claim(self, key: str, *, expires_at: datetime, now: datetime) -> bool:
        """Take ``key``; False if it is taken and not yet past its ``expires_at``."""
        ...

    def release(self, key: str) -> None:
        """Give ``key`` back (only after a failed publish)."""
        ...


def decision_key(tenant: str, action_id: str) -> str:
    """The claim that makes one decision per action."""
    return f"decision|{tenant}|{action_id}"


def request_key(claim_id: str) -> str:
    """The claim that makes one credential (a link nonce, a signed request) usable once."""
    return f"request|{claim_id}"


def claim_digest(channel: str, *parts: str) -> str:
    """``<channel>:<digest>``: names a spent credential on the topic without publishing the credential."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:40]
    return f"{channel}:{digest}"


class InMemoryClaims:
    """A process-local :class:`ClaimStore`; also satisfies ``executors.approvals.NonceStore``."""

    def __init__(self) -> None:
        self._taken: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def claim(self, key: str, *, expires_at: datetime, now: datetime) -> bool:
        with self._lock:
            for old in [k for k, exp in self._taken.items() if exp <= now]:
                del self._taken[old]
            if key in self._taken:
                return False
            self._taken[key] = expires_at
            return True

    def release(self, key: str) -> None:
        with self._lock:
            self._taken.pop(key, None)

    def taken(self, key: str, *, now: datetime) -> bool:
        """Whether ``key`` is in use (read-only: for readiness checks and tests)."""
        with self._lock:
            expires = self._taken.get(key)
            return expires is not None and expires > now

    def _mark(self, key: str, until: datetime) -> None:
        with self._lock:
            if self._taken.get(key, until) <= until:
                self._taken[key] = until


class SharedClaims(InMemoryClaims):
    """:class:`InMemoryClaims` plus every decision any replica published (fed by :class:`ApprovalsFeed`).

    ``keep`` must outlast every credential's validity (the longest link TTL, the request freshness
    windows): a credential is refused as expired or stale before this memory is asked again.
    """

    def __init__(self, *, keep: timedelta = timedelta(days=2), keys: ApprovalKeys | None = None) -> None:
        super().__init__()
        self.keep = keep
        #: Decisions must verify with these to count (None: every decision counts, for single-process tests).
        self.keys = keys

    def see(self, decision: ApprovalDecision) -> None:
        """Take one decision read from the approvals topic: its action is decided, its credential spent.
        A decision the API did not sign is ignored here (the worker dead-letters it)."""
        if self.keys is not None:
            try:
                self.keys.verify(decision)
            except DecisionSignatureError as exc:
                logger.warning("approvals feed: ignoring a decision for %s that the API did not sign: %s",
                               decision.action_id, exc, extra={"tenant": decision.tenant})
                return
        until = decision.decided_at + self.keep
        self._mark(decision_key(decision.tenant, decision.action_id), until)
        if decision.claim_id:
            self._mark(request_key(decision.claim_id), until)


class ApprovalsFeed:
    """Follows every partition of the approvals topic from the beginning into a :class:`SharedClaims`.

    No consumer group: every replica needs every decision, not a share. Start with
    ``asyncio.create_task(feed.run())``; gate readiness on :attr:`caught_up`; :meth:`stop` ends it.
    """

    def __init__(self, *, bootstrap: str, codec: Codec, claims: SharedClaims, topic_prefix: str = "",
                 extra: dict[str, Any] | None = None) -> None:
        self._codec = codec
        self._claims = claims
        self._topic = APPROVALS.full_name(topic_prefix)
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            # Never committed: the group id only satisfies librdkafka; partitions are assigned by hand.
            "group.id": f"rcaflow-approvals-claims-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
        config.update(extra or {})
        self._consumer = new_consumer(config)  # its lines through logging, rate-limited
        self._stop = threading.Event()
        self._eof: set[int] = set()
        self._partitions: set[int] = set()
        self.seen = 0
        self.caught_up = asyncio.Event()

    def _assign(self) -> None:
        meta = self._consumer.list_topics(self._topic, timeout=10)
        topic = meta.topics.get(self._topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise KafkaException(f"topic {self._topic} is not available")
        self._partitions = set(topic.partitions)
        self._consumer.assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in self._partitions])

    def _poll_batch(self) -> bool:
        """Read what is there (up to 0.2 s); True once every partition has reached its end once."""
        for msg in self._consumer.consume(num_messages=500, timeout=0.2):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._eof.add(msg.partition() or 0)
                else:
                    logger.warning("approvals feed: %s", err.str())
                continue
            try:
                self._claims.see(self._codec.decode(msg.value() or b"", ApprovalDecision, topic=self._topic))
                self.seen += 1
            except CodecError as exc:
                # The worker dead-letters undecodable decisions; this memory just skips them.
                logger.warning("approvals feed: skipping undecodable record at %s/%s: %s",
                               msg.partition(), msg.offset(), exc)
        return bool(self._partitions) and self._eof >= self._partitions

    async def run(self) -> None:
        """Follow the topic until :meth:`stop`; closes the consumer on the way out."""
        try:
            await asyncio.to_thread(self._assign)
            while not self._stop.is_set():
                if await asyncio.to_thread(self._poll_batch) and not self.caught_up.is_set():
                    logger.info("approvals feed caught up: %d decisions known", self.seen)
                    self.caught_up.set()
        finally:
            await asyncio.to_thread(self._consumer.close)

    def stop(self) -> None:
        self._stop.set()
