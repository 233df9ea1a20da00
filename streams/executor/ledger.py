"""What the executor knows of each action from the actions topic: has it started, is it still running.

The ledger is only as good as the read that fills it: :func:`scan_to_end` reads
the assigned partitions up to the end the broker reports *after* the
assignment, including records that sit behind an open transaction, and never
gives up early because the broker was slow to answer.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from schemas.records import ActionEvent, ActionState

logger = logging.getLogger(__name__)

_AFTER_APPROVAL = frozenset(
    {ActionState.RUNNING, ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK}
)
_FINISHED = frozenset({ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK})

#: Settings the ledger scanner needs on top of the connection settings. ``read_uncommitted``: a read_committed
#: reader stops at the last stable offset, so a ``running`` record written (non-transactionally) after another
#: client's still-open transaction would be invisible to the scan, and the approval before it would run again.
LEDGER_SCAN_CONFIG: dict[str, str | bool] = {"isolation.level": "read_uncommitted", "enable.auto.commit": False}


def signature_digest(signature: str | None) -> bytes | None:
    """What the ledger keeps of a decider's signature: enough to tell another decision from a copy of this one.

    Eight bytes instead of the ~80-character signature, for every started action of the validity window. Two
    different signatures with one digest (one chance in 2**64) would only audit a re-decision as a replay: neither
    runs the action again.
    """
    if signature is None:
        return None
    return hashlib.blake2b(signature.encode("utf-8"), digest_size=8).digest()


class _Started:
    """What the ledger knows of one action that started: its latest state, when its latest record was written,
    where its first ``running`` record lies and which approval started it."""

    __slots__ = ("last_at", "offset", "partition", "signature", "state")

    def __init__(self, state: ActionState, last_at: float) -> None:
        self.state = state
        #: When its latest record was written (broker time when known), in epoch seconds.
        self.last_at = last_at
        self.partition = -1
        self.offset = -1
        self.signature: bytes | None = None


class ActionLedger:
    """What the executor must know of each action that started (read from the actions topic or written here).

    Only started actions are kept: a record of an action that never ran (proposed, approved, rejected...) tells
    the executor nothing it needs, since running is decided by the verifier and by whether the action started.
    The ledger holds every action started within the longest validity window (:meth:`forget_before`), so its
    size is that window's started actions: one small entry each (``rcaflow_executor_ledger_actions``).
    """

    def __init__(self) -> None:
        self._started: dict[str, _Started] = {}
        #: The ``running`` record of each action without an outcome yet (few: the runs in progress or abandoned).
        self._running: dict[str, ActionEvent] = {}

    def see(self, action: ActionEvent, at: datetime | None = None) -> None:
        """Takes in one record of the actions topic; ``at`` is when it was written (broker time), if known, else
        the record's own time (a record this executor writes)."""
        when = (at if at is not None else _aware(action.at)).timestamp()
        entry = self._started.get(action.action_id)
        if entry is None:
            if action.state not in _AFTER_APPROVAL:
                return  # not started: nothing to remember
            entry = self._started[action.action_id] = _Started(action.state, when)
        else:
            entry.last_at = max(entry.last_at, when)
            if action.state not in _AFTER_APPROVAL:
                return  # an old approval re-read after the run started must not hide the run
            if entry.state in _FINISHED and action.state is ActionState.RUNNING:
                return  # its running record re-read after the pre-scan saw the outcome: it is not running again
            entry.state = action.state
        if action.state is ActionState.RUNNING:
            self._running[action.action_id] = action
        else:
            self._running.pop(action.action_id, None)

    def already_started(self, action_id: str) -> bool:
        return action_id in self._started

    def started_at(self, action_id: str, partition: int, offset: int, signature: str | None = None) -> None:
        """The topic position of a ``running`` record of ``action_id``; the first one is where the run started."""
        entry = self._started.get(action_id)
        if entry is None:  # seen before it was taken in: only a running record has a position to note
            entry = self._started[action_id] = _Started(ActionState.RUNNING, time.time())
        if entry.partition < 0:
            entry.partition, entry.offset = partition, offset
            entry.signature = signature_digest(signature)

    def started_by_another(self, action_id: str, signature: str | None) -> bool:
        """Whether the run was started by an approval with a known signature other than ``signature`` (a decider
        deciding again), as opposed to a copy of that approval or an unknown start."""
        entry = self._started.get(action_id)
        return entry is not None and entry.signature is not None and entry.signature != signature_digest(signature)

    def after_start(self, action_id: str, partition: int, offset: int) -> bool:
        """Whether a record at ``partition``/``offset`` was written after the action's run started (so it is not the
        approval that started it, re-delivered, but a copy or a forgery written later). False when unknown."""
        entry = self._started.get(action_id)
        return entry is not None and entry.partition >= 0 and entry.partition == partition and offset > entry.offset

    def still_running(self, action_id: str) -> ActionEvent | None:
        """The ``running`` record of an action that has no outcome yet, if that is where it stands."""
        return self._running.get(action_id)

    def forget_before(self, cutoff: datetime) -> int:
        """Forgets the actions whose latest record was written before ``cutoff``, except those still running.

        The ledger grew by every action for as long as the executor ran. With ``cutoff`` the oldest moment a
        still-valid approval can have been written (now − the longest validity − clock skew), a forgotten
        action's approvals have all expired, and the verifier refuses any copy of them whatever the ledger
        says: what is forgotten is exactly what a restarted executor's pre-scan does not read back either.
        A run without an outcome is kept until it is settled. Returns how many were forgotten.
        """
        limit = cutoff.timestamp()
        old = [action_id for action_id, entry in self._started.items()
               if entry.last_at < limit and action_id not in self._running]
        for action_id in old:
            del self._started[action_id]
        return len(old)

    def __len__(self) -> int:
        """The started actions known (the ``rcaflow_executor_ledger_actions`` gauge)."""
        return len(self._started)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ScanTarget:
    """One partition to read: from ``start`` (an offset or a logical one) until the position reaches ``end``."""

    topic: str
    partition: int
    start: int
    end: int


def scan_targets(scanner: Consumer, committed: list[TopicPartition], timeout_s: float = 10.0, *,
                 since_ms: int | None = None) -> list[ScanTarget]:
    """Where each partition's scan starts (the group's committed offset, or the first record written at or after
    ``since_ms`` if that is earlier) and ends (its high watermark now).

    ``since_ms``: a signed approval stays valid for a while, so a genuine one re-published after its run fell
    below the committed offset would run again unless the scan also reads back over every run that approval
    could have started: from the start of the longest validity window (``offsets_for_times``).
    The end is asked of the broker through ``scanner`` (read_uncommitted, so the real high watermark, not the
    last stable offset) after the partitions were assigned to us: every record a previous owner had acked by
    then is below it.
    """
    back: dict[tuple[str, int], int] = {}
    if since_ms is not None:
        asked = [TopicPartition(tp.topic, tp.partition, since_ms) for tp in committed]
        # -1: nothing was written since then, so the committed offset is the start.
        back = {(tp.topic, tp.partition): tp.offset
                for tp in scanner.offsets_for_times(asked, timeout=timeout_s) if tp.offset >= 0}
    targets = []
    for tp in committed:
        low, high = scanner.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=timeout_s,
                                                  cached=False)
        by_time = back.get((tp.topic, tp.partition))
        first = tp.offset if by_time is None or tp.offset < 0 else min(tp.offset, by_time)
        start = max(first, low)  # no commit yet (negative: from the oldest record), or records deleted by retention
        if start < high:
            targets.append(ScanTarget(tp.topic, tp.partition, start, high))
    return targets


def scan_to_end(
    scanner: Consumer,
    targets: list[ScanTarget],
    see: Callable[[Message], object],
    *,
    stopping: Callable[[], bool],
    poll_s: float = 0.5,
    report_every_s: float = 30.0,
) -> bool:
    """Feed every record of ``targets`` to ``see``; True once each partition's position reached its end.

    An empty poll is not the end: the loop goes on until the consumer's position (which also steps over
    transaction markers) reaches the end offset, however slow the broker is. It returns False only when
    ``stopping()`` says the process is going away, and then nothing may act on these partitions.
    """
    if not targets:
        return True
    scanner.assign([TopicPartition(t.topic, t.partition, t.start) for t in targets])
    remaining = {(t.topic, t.partition): t.end for t in targets}
    last_report = time.monotonic()
    while remaining:
        if stopping():
            return False
        msg = scanner.poll(poll_s)
        if msg is not None:
            error = msg.error()
            if error is None:
                see(msg)
            elif error.code() != KafkaError._PARTITION_EOF:
                logger.warning("executor ledger scan: %s", error)
        for tp in scanner.position([TopicPartition(topic, partition) for topic, partition in remaining]):
            if tp.offset >= 0 and tp.offset >= remaining[(tp.topic, tp.partition)]:
                remaining.pop((tp.topic, tp.partition), None)
        if remaining and time.monotonic() - last_report >= report_every_s:
            last_report = time.monotonic()
            logger.warning("executor ledger scan still reading %s; not acting on these partitions until it is done",
                           sorted(f"{topic}[{partition}] to {end}" for (topic, partition), end in remaining.items()))
    return True
