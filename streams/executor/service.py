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

The group rebalances incrementally (``cooperative-sticky``): when an executor joins or leaves, only the
partitions that really move are revoked, and an action polled on a partition this executor keeps runs here as
if nothing happened. With the eager protocol every rebalance revoked every partition, and an approval whose
``running`` record was slow to be acked was left unrun even when its partition came straight back.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException, Message, TopicPartition
from pydantic import ValidationError

from executors import ConfirmPolicy, ExecutionOutcome, Rollback, ToolRegistry, execute
from executors.base import bound_output
from producers.kafka_clients import new_consumer
from producers.kafka_commits import AsyncCommits
from producers.publisher import Publisher, PublishError
from schemas.codec import Codec
from schemas.errors import CodecError
from schemas.records import ActionEvent, ActionState
from schemas.topics import ACTIONS, DEAD_LETTER
from streams.errors import StreamsError
from streams.executor.ledger import LEDGER_SCAN_CONFIG, ActionLedger, scan_targets, scan_to_end
from streams.executor.metrics import ExecutorMetrics, outcome_of
from streams.executor.offsets import OffsetTracker
from streams.executor.rollbacks import rollback_action, rollback_id, rolled_back
from streams.executor.verify import ActionRefusedError, ActionVerifier, RefusalReason

logger = logging.getLogger(__name__)

#: How far the ledger pre-scan reads back beyond the longest validity window: the deciders' clocks may differ.
CLOCK_SKEW = timedelta(minutes=5)
#: How often the ledger forgets the actions no valid approval can reach any more.
LEDGER_FORGET_EVERY_S = 60.0
#: How long a stopping executor waits for its last offset commits (the next owner re-reads what they missed).
FINAL_COMMIT_WAIT_S = 10.0


class NotSettledError(StreamsError):
    """The executor stops before the records for an input are acked: its offset stays uncommitted.

    The next owner of the partition reads the input again and settles it from what the topic shows.
    """

    def __init__(self, message: str, *, action_id: str, state: str) -> None:
        super().__init__(message)
        self.action_id = action_id
        self.state = state


class StateNotWrittenError(NotSettledError):
    """A state change the broker never acknowledged, retried until the process stopped."""


class PartitionMovedError(NotSettledError):
    """The action's partition was revoked before its ``running`` record was acked: its next owner may not have
    seen that record, so running the action here could make it run twice."""


@dataclass(frozen=True, slots=True)
class PolledIn:
    """Where a handler's input was polled from, and how often that partition had been revoked by then."""

    partition: tuple[str, int]
    revocations: int


#: The partition a handler's input was polled from (task-local: each handler runs in its own task).
_POLLED_IN: contextvars.ContextVar[PolledIn] = contextvars.ContextVar("polled_in")

#: Incremental rebalancing: only the partitions that move are revoked (see the module docstring). Every member of
#: the group must use it; eager and cooperative members cannot share a group (docs/upgrading.md).
ASSIGNMENT_STRATEGY = "cooperative-sticky"


class ExecutorService:
    def __init__(
        self,
        *,
        bootstrap: str,
        extra: Mapping[str, Any] | None = None,
        codec: Codec,
        publisher: Publisher,
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
        abandon_margin_s: float = 60.0,
        write_retry_s: tuple[float, float] = (0.5, 30.0),
        verifier: ActionVerifier,
        metrics: ExecutorMetrics | None = None,
    ) -> None:
        self._verifier = verifier
        self._metrics = metrics if metrics is not None else ExecutorMetrics.on(tenants=verifier.tenants)
        #: Where the cluster is and how to log in (streams.settings.client_config); both consumers get it.
        self._client: dict[str, Any] = {"bootstrap.servers": bootstrap, **(extra or {})}
        self._codec = codec
        self._publisher = publisher
        self._registry = registry
        self._topic = ACTIONS.full_name(topic_prefix)
        self._group = f"{topic_prefix}{group_id}"
        self._dry_run = dry_run
        self._clock = clock
        self._ledger = ActionLedger()
        ledger = weakref.ref(self._ledger)  # the gauge must not keep a stopped executor alive
        self._metrics.ledger_actions.set_function(lambda: float(len(known)) if (known := ledger()) else 0.0)
        me = weakref.ref(self)
        self._metrics.commit_wait.set_function(lambda: service.commit_waiting_s() if (service := me()) else 0.0)
        self._on_outcome = on_outcome
        self._confirm = confirm if confirm is not None else ConfirmPolicy()
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._offsets = OffsetTracker()
        #: Offset commits, asynchronous and one at a time (see _commit_handled).
        self._commits = AsyncCommits("executor")
        self._stop_grace_s = stop_grace_s
        #: After this, a run without an outcome cannot belong to a live executor any more.
        self._abandoned_after = timedelta(seconds=self._confirm.within_s + stop_grace_s + abandon_margin_s)
        #: First and longest wait between attempts to write a state change the broker did not take.
        self._write_retry_s = write_retry_s
        #: How often each partition was revoked from this consumer, bumped for the revoked partitions only (on the
        #: poll thread); a handler compares its partition's count with the one at its input's poll.
        self._revocations: dict[tuple[str, int], int] = {}
        config: dict[str, Any] = {
            **self._client,
            "group.id": self._group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "partition.assignment.strategy": ASSIGNMENT_STRATEGY,
            "on_commit": self._commits.on_commit,  # answers to the asynchronous commits (_commit_handled)
            # The loop stops polling while every slot watches a rollout (or waits out an abandoned run); a
            # group that expels us then would only re-deliver to a peer that has to wait as long.
            "max.poll.interval.ms": max(300_000, int((self._abandoned_after.total_seconds() * 2 + 60) * 1000)),
        }
        if fast_rebalance:
            config.update({"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        self._consumer = new_consumer(config)  # its lines through logging, rate-limited
        self._commits.bind(self._consumer)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    # ------------------------------------------------------------------ ledger pre-scan
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Pre-scan the partitions added to the assignment before any of their records is handed out.

        Incremental: ``partitions`` are only the ones added; the partitions kept keep being read, and their
        actions keep running in the event loop meanwhile. Nothing here assumes they were revoked: the scan reads
        only the added partitions (an action's records, keyed by its id, are all on one partition), their offsets
        start afresh (revoked ones were forgotten), and the ledger takes in the scan's records while handlers
        write theirs (each record updates one action's entry; iterating the ledger, ``forget_before``, runs only
        between polls). Once this returns, confluent-kafka's rebalance callback adds the partitions to the
        assignment itself (``incremental_assign``).
        """
        if not partitions:
            return  # a cooperative rebalance that added nothing here
        committed = consumer.committed(partitions, timeout=10)
        scanner = new_consumer({**self._client, "group.id": f"{self._group}-scan",
                            **LEDGER_SCAN_CONFIG})
        try:
            # Runs on the poll thread before any record of these partitions is handed out, so nothing acts
            # on them before the scan reached the end; it waits out a slow broker rather than guess.
            while True:
                try:
                    # Back over every run a still-valid approval could have started, not only from the commit.
                    since = self._clock() - self._verifier.max_valid_for - CLOCK_SKEW
                    targets = scan_targets(scanner, committed, since_ms=int(since.timestamp() * 1000))
                    break
                except KafkaException as exc:
                    if self._stopping.is_set():
                        return
                    logger.warning("executor: cannot read the end offsets of %s yet: %s", self._topic, exc)
            if scan_to_end(scanner, targets, self._see, stopping=self._stopping.is_set):
                logger.info("executor assigned %s; ledger pre-scan done", [tp.partition for tp in partitions])
            else:
                logger.info("executor stopping during the ledger pre-scan; acting on nothing")
        finally:
            scanner.close()

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Revoked partitions belong to another executor now: their offsets are its to commit, and an action
        polled from one of them whose ``running`` record is not acked yet must not run here (see
        :meth:`_ensure_still_owner`). Incremental: only the partitions that move are revoked (also when the
        assignment is lost), so actions on the partitions kept go on."""
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self._revocations[key] = self._revocations.get(key, 0) + 1
        self._offsets.forget(partitions)
        self._commits.forget(partitions)  # a commit asked again must not carry them: the next owner commits them

    def _see(self, msg: Message) -> ActionEvent | None:
        try:
            action = self._codec.decode(msg.value() or b"", ActionEvent, topic=self._topic)
        except (CodecError, ValidationError) as exc:
            logger.warning("executor: undecodable record at %s/%s: %s", msg.partition(), msg.offset(), exc)
            return None
        kind, ms = msg.timestamp()
        self._ledger.see(action, datetime.fromtimestamp(ms / 1000, UTC) if kind != TIMESTAMP_NOT_AVAILABLE else None)
        if action.state is ActionState.RUNNING:
            self._ledger.started_at(action.action_id, msg.partition() or 0, msg.offset() or 0, action.signature)
        return action

    # ------------------------------------------------------------------ main loop
    async def run(self) -> None:
        self._consumer.subscribe([self._topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        logger.info("executor consuming %s as %s (dry_run=%s)", self._topic, self._group, self._dry_run)
        tasks: set[asyncio.Task[None]] = set()
        try:
            forgot_at = time.monotonic()
            while not self._stopping.is_set():
                msg = await asyncio.to_thread(self._consumer.poll, 0.2)
                await self._commit_handled()
                if time.monotonic() - forgot_at >= LEDGER_FORGET_EVERY_S:
                    forgot_at = time.monotonic()
                    self._forget_expired()
                if msg is None:
                    continue
                if self._stopping.is_set():
                    break  # not started, so not committed: the partition's next owner handles it
                error = msg.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        logger.warning("executor: consumer error %s", error)
                    continue
                # Revocations run inside poll(), so none can come between the poll and this count, nor before the
                # input's offset entry exists: started in the handler's task, it could be made after the next
                # poll's revocation forgot the partition, and then commit on a partition another executor owns.
                key = (msg.topic() or self._topic, msg.partition() or 0)
                polled = PolledIn(key, self._revocations.get(key, 0))
                entry = self._offsets.start(key[0], key[1], msg.offset() or 0)
                await self._slots.acquire()
                task = asyncio.create_task(self._handle_one(msg, polled, entry))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                logger.info("executor stopping: giving %d running action(s) %g s to finish", len(tasks),
                            self._stop_grace_s)
                _done, left = await asyncio.wait(tasks, timeout=self._stop_grace_s)
                for task in left:
                    task.cancel()
                await asyncio.gather(*left, return_exceptions=True)
            await self._last_commits()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.to_thread(self._consumer.close)

    def _forget_expired(self) -> None:
        """The ledger keeps only what a still-valid approval can reach (ActionLedger.forget_before)."""
        gone = self._ledger.forget_before(self._clock() - self._verifier.max_valid_for - CLOCK_SKEW)
        if gone:
            logger.info("executor: forgot %d actions whose approvals have all expired; %d known", gone,
                        len(self._ledger))

    async def _handle_one(self, msg: Message, polled: PolledIn, entry: list[int | bool]) -> None:
        """Handle one input; its offset may be committed only once every record it led to is acked.

        Stopped (or moved) before that, the offset stays where it is, so the partition's next owner reads the
        input again and settles it from what the actions topic shows.
        """
        topic, partition, offset = msg.topic() or self._topic, msg.partition() or 0, msg.offset() or 0
        _POLLED_IN.set(polled)
        settled = False
        try:
            await self._handle(msg)
            settled = True
        except NotSettledError as exc:
            logger.warning("executor: %s/%s@%s left for the partition's next owner: %s", topic, partition, offset,
                           exc, extra={"action_id": exc.action_id})
        except Exception:
            # A bug must not wedge the partition's offsets or kill the other actions: log it loudly and move on.
            # (A bug inside a run is already recorded as that action's failure, see _run.)
            logger.exception("executor: handling %s/%s@%s failed", topic, partition, offset)
            settled = True
        finally:
            if settled:
                self._offsets.done(topic, partition, entry)
            self._slots.release()

    async def _commit_handled(self) -> None:
        """Commit the offsets handled since the last commit, asynchronously, one commit at a time (AsyncCommits).

        A synchronous commit can wait for good (confluent-kafka-python #1801) and confluent-kafka serialises a
        consumer's calls, so every approval behind it waited too, with the executor looking healthy. Running on
        while a commit waits is safe: offsets only decide what a restarted executor reads again, its ledger
        pre-scan sees what already ran, and a commit carries only prefixes already settled.
        """
        self._commits.commit(self._offsets.take)

    async def _last_commits(self) -> None:
        """On stop: commit what was handled and wait, a bounded time, for the answers (served by polls, whose
        records are left for the partitions' next owner: not handled, so not committed; its ledger sees what ran
        here)."""
        await self._commits.finish(self._offsets.take, self._consumer.poll, FINAL_COMMIT_WAIT_S)

    def commit_waiting_s(self) -> float:
        """How long the offset commit in flight has waited (0 when none): ``rcaflow_executor_commit_wait_seconds``."""
        return self._commits.waiting_s()

    async def _handle(self, msg: Message) -> None:
        action = self._see(msg)
        if action is not None and action.state is ActionState.RUNNING and action.rollback_of is not None:
            await self._settle_rollback(action)
            return
        if action is None or action.state is not ActionState.APPROVED:
            return
        if self._ledger.already_started(action.action_id):
            if await self._refused_after_start(action, msg):
                return
            logger.info("executor: %s already ran; not running it again", action.action_id,
                        extra={"action_id": action.action_id, "tenant": action.tenant})
            left = self._ledger.still_running(action.action_id)
            if left is not None:
                await self._settle_abandoned(left)
            return
        try:  # nothing runs that a decider did not sign and the policy does not allow (verify.py)
            self._verifier.check(action, self._clock())
        except ActionRefusedError as refused:
            letter, rejected = self._verifier.refusal(refused, action, msg, at=self._clock())
            await self._write(rejected)  # first: the refusal itself must reach the audit trail
            await self._publisher.publish(DEAD_LETTER, letter.source_topic, letter)
            return
        running = action.model_copy(update={"state": ActionState.RUNNING, "at": self._clock(),
                                             "dry_run": self._dry_run, "reason": "executor started"})
        await self._write(running)
        self._ensure_still_owner(running)
        self._metrics.start(running)
        started = time.monotonic()
        try:
            outcome = await self._run(running, dry_run=self._dry_run)
        except asyncio.CancelledError:
            # Stopped mid-action (usually while watching a rollout): say so instead of leaving "running" forever.
            # It is not run again after a restart (the ledger sees it started), so a human must look. Once that
            # record is acked the input is settled, so the stop ends this task here rather than re-raising.
            interrupted = running.model_copy(update={
                "state": ActionState.FAILED, "at": self._clock(),
                "result": "interrupted: the executor stopped before this action finished or was confirmed; "
                          "it may have taken effect - check the target"})
            await self._write(interrupted)
            self._metrics.finish(interrupted, time.monotonic() - started, interrupted=True)
            return
        final = outcome.to_action_event(running, at=self._clock())
        self._metrics.finish(final, time.monotonic() - started, outcome.error_type)
        undo = self._undo_for(running, outcome)
        if undo is not None:
            final = final.model_copy(update={"result": bound_output(
                f"{final.result}\nrolling back by itself (policy on_failure: undo) as action "
                f"{rollback_id(action.action_id)}")})
        await self._write(final)
        # A preview logs "dry_run", never "succeeded": it changed nothing (the metrics say the same).
        logger.info("executor: %s %s -> %s", action.name, action.action_id, outcome_of(final),
                    extra={"action_id": action.action_id, "tenant": action.tenant})
        if self._on_outcome:
            self._on_outcome(final)
        if undo is not None:
            await self._roll_back(final, undo)
        elif action.rollback_of is not None:
            await self._mark_rolled_back(final)  # a rollback an operator asked for (rcaflow rollback)

    async def _refused_after_start(self, action: ActionEvent, msg: Message) -> bool:
        """An approved record written after its action's run started is not the approval that started it
        (re-delivered after a crash, which settles a run left behind). A copy of that approval (same signature)
        is a replay, one that does not verify a forgery: never run, kept in dead-letter with the reason, and
        audited under a refusal id of its own. A valid decision with a signature of its own is the decider
        deciding again (the worker after a crash): not run again, only logged. True when handled here."""
        partition, offset = msg.partition() or 0, msg.offset() or 0
        if not self._ledger.after_start(action.action_id, partition, offset):
            return False
        try:
            self._verifier.check(action, self._clock())
            if self._ledger.started_by_another(action.action_id, action.signature):
                # A decision of its own, signed by a decider after the run started: the worker deciding the same
                # analysis again after a crash (at-least-once). Not an attack (that needs the key); not run twice.
                logger.info("executor: %s was decided again after its run started (a decider's redelivery); it "
                            "runs once", action.action_id, extra={"action_id": action.action_id,
                                                                 "tenant": action.tenant})
                return True
            refused = ActionRefusedError(
                RefusalReason.REPLAYED, "a copy of its approval written after the action had started "
                "(replayed, or asked for again); an action runs once", tenant=action.tenant,
                action_id=action.action_id)
        except ActionRefusedError as forged:
            refused = forged
        letter, audited = self._verifier.refusal(refused, action, msg, at=self._clock(), started=True)
        await self._write(audited)
        await self._publisher.publish(DEAD_LETTER, letter.source_topic, letter)
        return True

    async def _run(self, running: ActionEvent, *, dry_run: bool) -> ExecutionOutcome:
        """``execute``, with a bug in rcaflow recorded as the action's failure instead of leaving it ``running``."""
        try:
            return await execute(running, registry=self._registry, dry_run=dry_run,
                                 confirm=None if dry_run else self._confirm)
        except Exception as exc:
            logger.exception("executor: running %s (%s) raised", running.action_id, running.name,
                             extra={"action_id": running.action_id, "tenant": running.tenant})
            return ExecutionOutcome(
                action_id=running.action_id, name=f"{running.tool}.{running.operation}", state=ActionState.FAILED,
                output=bound_output(f"executor error while running it: {type(exc).__name__}: {exc}; it may have "
                                    "taken effect - check the target"),
                dry_run=dry_run, error_type=type(exc).__name__)

    def _ensure_still_owner(self, running: ActionEvent) -> None:
        """Run only if the input's partition was not revoked since the input was polled.

        A new owner reads the partition's end only after our revocation of that partition (cooperative: it is
        assigned to the new owner in a later rebalance, once we gave it up); if none happened by now, our acked
        ``running`` record is below that end and its scan sees it. After a revocation it may not have: the
        action is left to the owner (which runs it, or settles the ``running`` record as interrupted). A
        revocation of other partitions says nothing about this one: the action runs here.
        """
        polled = _POLLED_IN.get(None)
        if polled is not None and self._revocations.get(polled.partition, 0) != polled.revocations:
            raise PartitionMovedError(
                f"{running.action_id}: its partition was revoked before it started; not running it here",
                action_id=running.action_id, state=running.state.value)

    async def _settle_rollback(self, running: ActionEvent) -> None:
        """An automatic rollback is written ``running`` without an approval of its own, so its ``running``
        record is the input that settles it: held (uncommitted) until its outcome shows, it is read again after
        a crash and written ``failed: interrupted`` instead of staying ``running``."""
        left = self._ledger.still_running(running.action_id)
        if left is not None:
            await self._settle_abandoned(left)

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
            except TimeoutError:
                continue
            raise NotSettledError(  # the offset stays uncommitted: the next owner of the partition checks again
                f"{running.action_id} is still running elsewhere or abandoned; stopping before it is settled",
                action_id=running.action_id, state=running.state.value)
        if self._ledger.still_running(running.action_id) is None:
            return
        logger.warning("executor: %s (%s) was left running since %s; recording it as interrupted",
                       running.action_id, running.name, running.at.isoformat(),
                       extra={"action_id": running.action_id, "tenant": running.tenant})
        interrupted = running.model_copy(update={
            "state": ActionState.FAILED, "at": self._clock(),
            "result": f"interrupted: the executor stopped, or this action's partition moved to another "
                      f"executor, after it was started ({running.at.isoformat()}) and before an outcome was "
                      "recorded; not run again - it may have taken effect, check the target (if the partition "
                      "moved just before the run began, it did not run: that executor logged 'left for the "
                      "partition's next owner')"})
        await self._write(interrupted)
        self._metrics.finish(interrupted, None, interrupted=True)

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
            failed, state=ActionState.RUNNING, at=self._clock(), keys=self._verifier.keys,
            reason=f"automatic rollback of {failed.action_id} ({failed.name}) after it failed; policy on_failure: undo",
        )
        logger.warning("executor: rolling back %s (%s) with %s", failed.action_id, failed.name, undo.describe(),
                       extra={"action_id": failed.action_id, "tenant": failed.tenant})
        await self._write(rollback)
        outcome = await self._run(rollback, dry_run=False)
        done = outcome.to_action_event(rollback, at=self._clock())
        await self._write(done)
        self._metrics.rolled_back(failed, done)
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
        """Write one state change and wait for the broker's ack, retrying with capped backoff until it is acked.

        The ledger learns it first, so a second approval of the same action in this process sees it started.
        A write the broker keeps refusing is tried until the process stops; then :class:`StateNotWrittenError`
        keeps the input's offset uncommitted, so the next owner settles the action from what did get written.
        """
        self._ledger.see(action)
        key = f"{action.tenant}:{action.action_id}"
        delay, longest = self._write_retry_s
        attempt = 0
        while True:
            attempt += 1
            try:
                delivery = await self._publisher.publish(ACTIONS, key, action)
                if action.state is ActionState.RUNNING:
                    self._ledger.started_at(action.action_id, delivery.partition, delivery.offset, action.signature)
                if attempt > 1:
                    logger.info("executor: %s %s written after %d attempts", action.action_id, action.state.value,
                                attempt, extra={"action_id": action.action_id, "tenant": action.tenant})
                return
            except PublishError as exc:
                if self._stopping.is_set():
                    raise StateNotWrittenError(
                        f"{action.action_id} ({action.name}): {action.state.value} not acked after {attempt} "
                        f"attempt(s) before the executor stopped: {exc}",
                        action_id=action.action_id, state=action.state.value) from exc
                logger.warning("executor: %s %s not written (attempt %d, next in %g s): %s", action.action_id,
                               action.state.value, attempt, delay, exc,
                               extra={"action_id": action.action_id, "tenant": action.tenant})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            delay = min(delay * 2, longest)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
