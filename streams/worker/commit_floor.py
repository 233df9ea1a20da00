"""Each partition's commit floor: Faust never commits past a record that no agent has finished.

Faust (faust-streaming 0.11) commits a partition up to the end of the first run of consecutive acked
offsets (``Consumer._new_offset``), and checks that the run starts where the partition's committed
offset is only in one case. Three cases let the group commit past records that no agent processed.
The scale-out case (tests/faults/test_scale_out.py) lost ``normalized`` events this way: offsets from 0
up, with every input topic committed to its end.

- **No check at a partition's start.** The check runs only when the committed offset is neither
  ``None`` nor ``0`` (``if committed_offset:``), and ``perform_seek`` turns a committed ``0`` into
  ``None``. So a fresh partition with offsets 1–3 acked and 0 still in an agent's queue commits 4.
- **An off-by-one.** The committed offset is the next one to read, but the check lets a run start one
  above it (``min(acked) - committed > 1``): committed 5 with 6 and 7 acked commits 8.
- **At a revocation** Faust drops the partitions' committed offsets *before* it waits for their
  in-flight records and commits what they ack (``Consumer.on_partitions_revoked``). Every partition
  is then "fresh" for that last commit, and the first case applies to it.

A record cleared from an agent's queue at a rebalance (:mod:`streams.worker.cleared_queues`) is never
acked. Here it is a *hole*: no commit of its partition passes it until the partition is sought again, and
the next owner, or this worker after its next assignment, reads it again.

Each partition here has a *floor*: the next offset that must be done before its commit may move. The
floor is the committed offset Faust sought the partition to, or the log start of a partition never
committed (the broker's, asked at each seek; without it, the first record handed to an agent). A
commit moves the floor. The floor is dropped only when the partition is sought again.

Two more ways records were skipped without any commit at all, both closed here:

- **A partition never committed keeps its fetch position over a rebalance.** aiokafka's seek to the
  committed offset does nothing for it, so a worker that kept it went on after the records its
  revocation had cleared from the agents' queues, and began the commits after them. Such a partition
  is now sought to its log start, where a new consumer of it begins.
- **A first record above the floor.** When the first record handed to an agent after a seek is above
  the floor, and the broker's log start says the records below it exist, they never reached an agent:
  the partition is sought back to the floor once (fetcher stopped, as Faust does), and its commits
  wait below them.

Test: tests/unit/streams/worker/test_commit_floor.py (and tests/faults/test_scale_out.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from faust.sensors import Sensor
from faust.types import TP, ConsumerT, Message
from faust.utils.functional import consecutive_numbers

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Partition:
    """What one partition's commits may not pass."""

    #: The next offset that must be done before the partition's commit may move (None: not known yet).
    floor: int | None = None
    #: The next delivered record is the first since the partition was sought.
    sought: bool = True
    #: Offsets of records that were cleared from an agent's queue: never done until read again.
    holes: set[int] = field(default_factory=set)
    #: The floor takes the broker's log start into account (so a first record above it was skipped).
    exact: bool = False
    #: The partition was sought back to its floor once in this assignment.
    reread: bool = False


class CommitFloor:
    """The floors of one consumer's partitions; see the module docstring."""

    def __init__(self, consumer: ConsumerT) -> None:
        self._consumer = consumer
        self._partitions: dict[TP, _Partition] = {}
        self._tasks: set[asyncio.Future[None]] = set()  # read-agains in progress (kept from the collector)

    def partition(self, tp: TP) -> _Partition:
        state = self._partitions.get(tp)
        if state is None:
            state = self._partitions[tp] = _Partition()
        return state

    def sought(self, tps: set[TP], earliest: Mapping[TP, int | None] | None = None) -> None:
        """The partitions will be read again from their committed offsets: new floors, no holes.

        ``earliest`` are the partitions' log start offsets, when the broker told them: a partition never
        committed is read from there, and one whose committed offset retention deleted, too.
        """
        committed = cast(Any, self._consumer)._committed_offset
        starts = earliest or {}
        for tp in tps:
            offset = committed.get(tp)
            floor = offset if offset is not None and offset >= 0 else None
            start = starts.get(tp)
            if start is not None and start >= 0:
                floor = start if floor is None else max(floor, start)
            self._partitions[tp] = _Partition(floor=floor, exact=start is not None)

    def delivered(self, message: Message) -> None:
        """A record is handed to the agents: the first one after a seek fixes an unknown floor."""
        state = self.partition(message.tp)
        if not state.sought:
            return
        state.sought = False
        if state.floor is None:
            state.floor = message.offset
        elif message.offset > state.floor:
            tp = message.tp
            if state.exact:
                # The broker has these records, yet none of them reached an agent: the partition is read again
                # from the floor, once; its commits wait below them meanwhile (and for good if that fails too).
                again = not state.reread
                logger.warning("%s[%s]: records %d-%d never reached an agent after the partition was sought; %s",
                               tp.topic, tp.partition, state.floor, message.offset - 1,
                               "reading them again" if again else "its commits wait below them until it is "
                               "sought again (a rebalance or a restart)")
                if again:
                    state.reread = True
                    task = asyncio.ensure_future(self._read_again(tp, state, state.floor))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                return
            # No log start was known: the broker has nothing between the committed offset and this record
            # (deleted by retention, or a transaction marker), so nothing there can hold the commit.
            logger.warning("%s[%s]: reading resumed at offset %d, above the committed offset %d: offsets %d-%d "
                           "are no longer on the broker", tp.topic, tp.partition, message.offset, state.floor,
                           state.floor, message.offset - 1)
            state.floor = message.offset

    async def _read_again(self, tp: TP, state: _Partition, offset: int) -> None:
        """Seeks ``tp`` back to ``offset`` with the fetcher stopped, as Faust does for its own seeks."""
        consumer: Any = self._consumer
        try:
            consumer.stop_flow()
            await consumer.wait_for_stopped_flow()  # no fetched batch still on its way to the agents
            if self._partitions.get(tp) is state:  # not sought again meanwhile (a rebalance does it for us)
                await consumer.seek(tp, offset)
                state.sought = True
        finally:
            if not consumer.app.rebalancing:  # a rebalance resumes the flow itself once it has sought
                consumer.resume_flow()

    def forgotten(self, message: Message) -> None:
        """A record was cleared from an agent's queue: its partition's commits stop below it."""
        state = self.partition(message.tp)
        if state.floor is None or message.offset >= state.floor:
            state.holes.add(message.offset)

    def holes(self) -> dict[TP, int]:
        """The lowest hole of each partition that has one."""
        return {tp: min(state.holes) for tp, state in self._partitions.items() if state.holes}

    def new_offset(self, tp: TP) -> int | None:
        """The offset to commit for ``tp``, or None; Faust's ``_new_offset`` with the floor applied."""
        consumer = cast(Any, self._consumer)
        acked: list[int] = consumer._acked[tp]
        if not acked:
            return None
        _merge_gaps(consumer, tp, acked)
        acked.sort()
        state = self.partition(tp)
        floor = state.floor
        if floor is None:
            return None  # nothing delivered since the seek: an ack here is not this assignment's
        index: set[int] = consumer._acked_index[tp]
        stale = 0
        while stale < len(acked) and acked[stale] < floor:
            stale += 1
        if stale:  # acks of records already committed (re-delivered after a seek, or acked twice)
            index.difference_update(acked[:stale])
            del acked[:stale]
        if not acked or acked[0] != floor:
            return None  # the record at the floor is not done yet
        batch = next(consecutive_numbers(acked))
        end = batch[-1] + 1
        if state.holes:
            state.holes.difference_update(acked)  # read again since, and done
            state.holes.difference_update([hole for hole in state.holes if hole < floor])
        if state.holes:
            hole = min(state.holes)
            if hole < end:
                batch = [offset for offset in batch if offset < hole]
                end = hole
                if not batch:
                    return None
        del acked[: len(batch)]
        index.difference_update(batch)
        state.floor = end
        return end


def _merge_gaps(consumer: Any, tp: TP, acked: list[int]) -> None:
    """Faust's own step: offsets it found missing between deliveries count as acked (its ``_new_offset``)."""
    gaps = consumer._gap[tp]
    if not gaps:
        return
    max_offset = max(acked)
    candidates = sorted(gaps.overlap(0, max_offset), key=lambda interval: interval.begin)
    if not candidates:
        return
    added: list[int] = []
    for interval in candidates:
        added.extend(range(interval.begin, interval.end))
    acked.extend(added)
    gaps.chop(0, max(added[-1], max_offset + 1))


def commit_floor(consumer: ConsumerT) -> CommitFloor:
    """The consumer's commit floor, installed on its first use (see the module docstring)."""
    existing = getattr(consumer, "_rcaflow_commit_floor", None)
    if isinstance(existing, CommitFloor):
        return existing
    floor = CommitFloor(consumer)
    internal = cast(Any, consumer)
    internal._rcaflow_commit_floor = floor
    internal._new_offset = floor.new_offset
    perform_seek = consumer.perform_seek

    async def perform_seek_and_floor() -> None:
        await perform_seek()
        acking = cast(Any, consumer).app.topics.acks_enabled_for
        tps = {tp for tp in consumer.assignment() if acking(tp.topic)}  # the agents' inputs, not changelogs
        try:
            earliest = await consumer.earliest_offsets(*tps) if tps else {}
        except Exception as exc:  # noqa: BLE001 - without them a never-committed partition starts at its first record
            logger.warning("log start offsets not available (%s): partitions never committed start their "
                           "commit floor at their first record", exc)
            earliest = {}
        committed = cast(Any, consumer)._committed_offset
        for tp in tps:
            start = earliest.get(tp)
            if committed.get(tp) is None and start is not None and start >= 0:
                # Never committed: aiokafka's seek to the committed offset leaves such a partition where its
                # fetcher was (a worker that kept it over a rebalance went on after the records it had
                # cleared), so it is sought to its log start, where a new consumer of it begins.
                await consumer.seek(tp, start)
        floor.sought(tps, earliest)

    internal.perform_seek = perform_seek_and_floor
    return floor


class _Deliveries(Sensor):
    """Faust's hook for a record's first hand-over to an agent: it fixes an unknown floor."""

    def __init__(self, app: faust.App) -> None:
        super().__init__()
        self._app = app

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        commit_floor(self._app.consumer).delivered(message)


def guard_commits(app: faust.App) -> None:
    """Makes ``app``'s consumer commit no partition past its floor (see the module docstring)."""
    app.sensors.add(_Deliveries(app))

    @app.on_partitions_revoked.connect
    async def install(sender: Any, /, *revoked: Any, signal: Any, **_: Any) -> None:
        # Sent at every join, the first one included, so before any partition is sought or committed.
        commit_floor(app.consumer)
