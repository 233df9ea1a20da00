"""The executor consumer: runs approved actions exactly once and records every step on ``actions``.

Idempotence comes from the actions topic itself: before a side effect the
executor writes ``running`` and waits for the broker's ack. All states of one
action share its key, hence its partition, and they all lie after the group's
committed offset whenever the ``approved`` record is re-delivered; so reading
the assigned partitions from the committed offset to the end before acting
tells a restarted executor which actions already ran.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from pydantic import ValidationError

from executors import ToolRegistry, execute
from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.errors import CodecError
from schemas.records import ActionEvent, ActionState
from schemas.topics import ACTIONS

logger = logging.getLogger(__name__)

_AFTER_APPROVAL = frozenset(
    {ActionState.RUNNING, ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK}
)


class ActionLedger:
    """Latest known state per action id, as read from the actions topic."""

    def __init__(self) -> None:
        self._state: dict[str, ActionState] = {}

    def see(self, action: ActionEvent) -> None:
        known = self._state.get(action.action_id)
        if known in _AFTER_APPROVAL and action.state not in _AFTER_APPROVAL:
            return  # an old approval re-read after the run started must not hide the run
        self._state[action.action_id] = action.state

    def already_started(self, action_id: str) -> bool:
        return self._state.get(action_id) in _AFTER_APPROVAL


class ExecutorService:
    def __init__(
        self,
        *,
        bootstrap: str,
        codec: Codec,
        publisher: KafkaPublisher,
        registry: ToolRegistry,
        topic_prefix: str = "",
        group_id: str = "rcaflow-executor",
        dry_run: bool = True,
        fast_rebalance: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_outcome: Callable[[ActionEvent], None] | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._codec = codec
        self._publisher = publisher
        self._registry = registry
        self._topic = ACTIONS.full_name(topic_prefix)
        self._group = f"{topic_prefix}{group_id}"
        self._dry_run = dry_run
        self._clock = clock
        self._ledger = ActionLedger()
        self._on_outcome = on_outcome
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": self._group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
        if fast_rebalance:
            config.update({"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        self._consumer = Consumer(config)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    # ------------------------------------------------------------------ ledger pre-scan
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        committed = consumer.committed(partitions, timeout=10)
        scanner = Consumer({"bootstrap.servers": self._bootstrap, "group.id": f"{self._group}-scan",
                            "enable.auto.commit": False})
        try:
            targets = []
            for tp in committed:
                _low, high = consumer.get_watermark_offsets(tp, timeout=10)
                start = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                if high > 0 and (start == OFFSET_BEGINNING or start < high):
                    targets.append((TopicPartition(tp.topic, tp.partition, start), high))
            if targets:
                scanner.assign([tp for tp, _ in targets])
                remaining = {tp.partition: high for tp, high in targets}
                while remaining:
                    msg = scanner.poll(1.0)
                    if msg is None:
                        break
                    if msg.error():
                        continue
                    self._see(msg)
                    partition, offset = msg.partition() or 0, msg.offset() or 0
                    if offset + 1 >= remaining.get(partition, 0):
                        remaining.pop(partition, None)
            logger.info("executor assigned %s; ledger pre-scan done", [tp.partition for tp in partitions])
        finally:
            scanner.close()

    def _see(self, msg: Message) -> ActionEvent | None:
        try:
            action = self._codec.decode(msg.value() or b"", ActionEvent, topic=self._topic)
        except (CodecError, ValidationError) as exc:
            logger.warning("executor: undecodable record at %s/%s: %s", msg.partition(), msg.offset(), exc)
            return None
        self._ledger.see(action)
        return action

    # ------------------------------------------------------------------ main loop
    async def run(self) -> None:
        self._consumer.subscribe([self._topic], on_assign=self._on_assign)
        logger.info("executor consuming %s as %s (dry_run=%s)", self._topic, self._group, self._dry_run)
        try:
            while not self._stopping.is_set():
                msg = await asyncio.to_thread(self._consumer.poll, 0.5)
                if msg is None:
                    continue
                error = msg.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        logger.warning("executor: consumer error %s", error)
                    continue
                await self._handle(msg)
                await asyncio.to_thread(self._consumer.commit, message=msg, asynchronous=False)
        finally:
            await asyncio.to_thread(self._consumer.close)

    async def _handle(self, msg: Message) -> None:
        action = self._see(msg)
        if action is None or action.state is not ActionState.APPROVED:
            return
        if self._ledger.already_started(action.action_id):
            logger.info("executor: %s already ran; not running it again", action.action_id,
                        extra={"action_id": action.action_id, "tenant": action.tenant})
            return
        running = action.model_copy(update={"state": ActionState.RUNNING, "at": self._clock(),
                                             "dry_run": self._dry_run, "reason": "executor started"})
        await self._write(running)
        outcome = await execute(running, registry=self._registry, dry_run=self._dry_run)
        final = outcome.to_action_event(running, at=self._clock())
        await self._write(final)
        logger.info("executor: %s %s -> %s", action.name, action.action_id, final.state.value,
                    extra={"action_id": action.action_id, "tenant": action.tenant})
        if self._on_outcome:
            self._on_outcome(final)

    async def _write(self, action: ActionEvent) -> None:
        self._ledger.see(action)
        await self._publisher.publish(ACTIONS, f"{action.tenant}:{action.action_id}", action)
