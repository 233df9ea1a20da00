"""The executor consumer: runs approved actions exactly once and records every step on ``actions``.

Idempotence comes from the actions topic itself: before a side effect the
executor writes ``running`` and waits for the broker's ack. All states of one
action share its key, hence its partition, and they all lie after the group's
committed offset whenever the ``approved`` record is re-delivered; so reading
the assigned partitions from the committed offset to the end before acting
tells a restarted executor which actions already ran.

Actions run concurrently (a restart may be watched for minutes until its
rollout finishes, and must not hold up an unrelated silence), while offsets
are committed in order: a partition's offset only moves past a record once
every record before it is handled (:class:`OffsetTracker`).

An action that took effect and then failed its check (new pods never ready)
is rolled back by the same executor when the policy says ``on_failure: undo``:
the failure is written first, then the rollback as its own action (``running``
straight away: the policy and the original approval authorise it, and no
consumer picks up a ``running`` record, so it cannot run twice), and, once the
rollback is confirmed, the original action's ``rolled_back`` record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from pydantic import ValidationError

from executors import ConfirmPolicy, ExecutionOutcome, Rollback, ToolRegistry, execute
from executors.base import bound_output
from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.errors import CodecError
from schemas.records import ActionEvent, ActionState
from schemas.topics import ACTIONS
from streams.executor.ledger import ActionLedger
from streams.executor.offsets import OffsetTracker
from streams.executor.rollbacks import rollback_action, rollback_id, rolled_back

logger = logging.getLogger(__name__)

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
        confirm: ConfirmPolicy | None = None,
        concurrency: int = 8,
        stop_grace_s: float = 20.0,
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
        self._confirm = confirm if confirm is not None else ConfirmPolicy()
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._offsets = OffsetTracker()
        self._stop_grace_s = stop_grace_s
        #: After this, a run without an outcome cannot belong to a live executor any more.
        self._abandoned_after = timedelta(seconds=self._confirm.within_s + stop_grace_s + 60)
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": self._group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            # The loop stops polling while every slot watches a rollout (or waits out an abandoned run); a
            # group that expels us then would only re-deliver to a peer that has to wait as long.
            "max.poll.interval.ms": max(300_000, int((self._abandoned_after.total_seconds() * 2 + 60) * 1000)),
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
        self._consumer.subscribe([self._topic], on_assign=self._on_assign,
                                 on_revoke=lambda _c, parts: self._offsets.forget(parts))
        logger.info("executor consuming %s as %s (dry_run=%s)", self._topic, self._group, self._dry_run)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not self._stopping.is_set():
                msg = await asyncio.to_thread(self._consumer.poll, 0.2)
                await self._commit_handled()
                if msg is None:
                    continue
                error = msg.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        logger.warning("executor: consumer error %s", error)
                    continue
                await self._slots.acquire()
                task = asyncio.create_task(self._handle_one(msg))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                logger.info("executor stopping: giving %d running action(s) %g s to finish", len(tasks),
                            self._stop_grace_s)
                _done, left = await asyncio.wait(tasks, timeout=self._stop_grace_s)
                for task in left:
                    task.cancel()
                await asyncio.gather(*left, return_exceptions=True)
            await self._commit_handled()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.to_thread(self._consumer.close)

    async def _handle_one(self, msg: Message) -> None:
        topic, partition, offset = msg.topic() or self._topic, msg.partition() or 0, msg.offset() or 0
        entry = self._offsets.start(topic, partition, offset)
        try:
            await self._handle(msg)
        except Exception:
            # A bug must not wedge the partition's offsets or kill the other actions: log it loudly and move on;
            # the action's last record (running) shows it did not finish.
            logger.exception("executor: handling %s/%s@%s failed", topic, partition, offset)
        finally:
            self._offsets.done(topic, partition, entry)
            self._slots.release()

    async def _commit_handled(self) -> None:
        ready = self._offsets.take()
        if ready:
            try:
                await asyncio.to_thread(self._consumer.commit, offsets=ready, asynchronous=False)
            except KafkaException as exc:
                # Lost partitions after a rebalance: the next owner re-reads from its committed offset and its
                # ledger pre-scan sees what already ran.
                logger.warning("executor: offset commit failed: %s", exc)

    async def _handle(self, msg: Message) -> None:
        action = self._see(msg)
        if action is None or action.state is not ActionState.APPROVED:
            return
        if self._ledger.already_started(action.action_id):
            logger.info("executor: %s already ran; not running it again", action.action_id,
                        extra={"action_id": action.action_id, "tenant": action.tenant})
            left = self._ledger.still_running(action.action_id)
            if left is not None:
                await self._settle_abandoned(left)
            return
        running = action.model_copy(update={"state": ActionState.RUNNING, "at": self._clock(),
                                             "dry_run": self._dry_run, "reason": "executor started"})
        await self._write(running)
        try:
            outcome = await execute(running, registry=self._registry, dry_run=self._dry_run,
                                    confirm=None if self._dry_run else self._confirm)
        except asyncio.CancelledError:
            # Stopped mid-action (usually while watching a rollout): say so instead of leaving "running" forever.
            # It is not run again after a restart (the ledger sees it started), so a human must look.
            await self._write(running.model_copy(update={
                "state": ActionState.FAILED, "at": self._clock(),
                "result": "interrupted: the executor stopped before this action finished or was confirmed; "
                          "it may have taken effect - check the target"}))
            raise
        final = outcome.to_action_event(running, at=self._clock())
        undo = self._undo_for(running, outcome)
        if undo is not None:
            final = final.model_copy(update={"result": bound_output(
                f"{final.result}\nrolling back by itself (policy on_failure: undo) as action "
                f"{rollback_id(action.action_id)}")})
        await self._write(final)
        logger.info("executor: %s %s -> %s", action.name, action.action_id, final.state.value,
                    extra={"action_id": action.action_id, "tenant": action.tenant})
        if self._on_outcome:
            self._on_outcome(final)
        if undo is not None:
            await self._roll_back(final, undo)
        elif action.rollback_of is not None:
            await self._mark_rolled_back(final)  # a rollback an operator asked for (rcaflow rollback)

    async def _settle_abandoned(self, running: ActionEvent) -> None:
        """A re-delivered approval whose run never ended: its executor died (or lost the partition) mid-run.

        Not run again (it may have taken effect). Once no live executor can still be on it (its confirm
        window and stop grace are over) and no outcome showed up, it is written ``failed`` so it never
        stays ``running``. Holding this record's offset meanwhile keeps the check across restarts.
        """
        deadline = _aware(running.at) + self._abandoned_after
        while (remaining := (deadline - self._clock()).total_seconds()) > 0:
            if self._ledger.still_running(running.action_id) is None:
                return  # the other executor finished it
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=min(remaining, 5.0))
                return  # stopping: the next owner of the partition checks again
            except TimeoutError:
                continue
        if self._ledger.still_running(running.action_id) is None:
            return
        logger.warning("executor: %s (%s) was left running since %s; recording it as interrupted",
                       running.action_id, running.name, running.at.isoformat(),
                       extra={"action_id": running.action_id, "tenant": running.tenant})
        await self._write(running.model_copy(update={
            "state": ActionState.FAILED, "at": self._clock(),
            "result": f"interrupted: the executor stopped while running this action (started "
                      f"{running.at.isoformat()}) and never recorded an outcome; not run again - it may have "
                      "taken effect, check the target"}))

    def _undo_for(self, action: ActionEvent, outcome: ExecutionOutcome) -> Rollback | None:
        """The inverse to run now: only for a real run that took effect and failed, when the policy allows it."""
        if outcome.ok or outcome.dry_run or outcome.rollback is None or action.rollback_of is not None:
            return None
        if action.on_failure != "undo":
            return None
        return outcome.rollback

    async def _roll_back(self, failed: ActionEvent, undo: Rollback) -> None:
        # Written "running" at once: the policy and the original approval authorise it, and no consumer acts on
        # a running record, so it cannot run twice.
        rollback = rollback_action(
            failed, state=ActionState.RUNNING, at=self._clock(),
            reason=f"automatic rollback of {failed.action_id} ({failed.name}) after it failed; policy on_failure: undo",
        )
        logger.warning("executor: rolling back %s (%s) with %s", failed.action_id, failed.name, undo.describe(),
                       extra={"action_id": failed.action_id, "tenant": failed.tenant})
        await self._write(rollback)
        outcome = await execute(rollback, registry=self._registry, dry_run=False, confirm=self._confirm)
        done = outcome.to_action_event(rollback, at=self._clock())
        await self._write(done)
        if self._on_outcome:
            self._on_outcome(done)
        await self._mark_rolled_back(done)

    async def _mark_rolled_back(self, done: ActionEvent) -> None:
        """After a rollback finished: the original's rolled_back record, or a loud log that a human must look."""
        if done.dry_run:
            return
        if done.state is not ActionState.SUCCEEDED:
            logger.error("executor: rollback %s of %s failed; the target needs a human: %s", done.action_id,
                         done.rollback_of, done.result, extra={"action_id": done.rollback_of, "tenant": done.tenant})
            return
        record = rolled_back(done, at=self._clock())
        await self._write(record)
        if self._on_outcome:
            self._on_outcome(record)

    async def _write(self, action: ActionEvent) -> None:
        self._ledger.see(action)
        await self._publisher.publish(ACTIONS, f"{action.tenant}:{action.action_id}", action)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
