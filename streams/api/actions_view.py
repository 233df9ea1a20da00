"""What the approval endpoints know about actions: the latest state per action id, read from ``actions``.

:class:`InMemoryPendingActions` is fed by :class:`ActionsFeed`, which reads
every partition of the actions topic from the beginning (no consumer group:
each API replica needs every action, not a share; ``partition_reader``). Limits, on purpose: the
whole view lives in memory (pruned by age), a fresh replica answers
``unknown action`` until it has caught up (see :attr:`ActionsFeed.caught_up`),
and a record produced a moment ago may not be visible yet.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from schemas.codec import Codec
from schemas.records import ActionEvent, ActionState, Record
from schemas.topics import ACTIONS
from streams.api.partition_reader import AllPartitionsReader

if TYPE_CHECKING:
    from streams.api.loops import LoopHandle

logger = logging.getLogger(__name__)

#: States after a decision; an older record re-read later must not move an action back.
_DECIDED = frozenset({
    ActionState.APPROVED, ActionState.REJECTED, ActionState.EXPIRED, ActionState.RUNNING,
    ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK, ActionState.WITHDRAWN,
})
#: States an action ends in. A later record that is not one of them is late, not news: an executor whose
#: partition moved writes its ``running`` after the new owner's outcome (tests/integration/flow/
#: test_executor_partition_moved.py), and a decider re-deciding after a crash re-writes ``approved``.
_FINISHED = frozenset({
    ActionState.REJECTED, ActionState.EXPIRED, ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK,
    ActionState.WITHDRAWN,
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
            if known is not None and (
                    (known.state in _DECIDED and action.state not in _DECIDED)
                    or (known.state in _FINISHED and action.state not in _FINISHED)):
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
    """Keeps an :class:`InMemoryPendingActions` up to date from the actions topic, every partition from the
    beginning (:class:`~streams.api.partition_reader.AllPartitionsReader`).

    Run as a supervised loop (:class:`streams.api.loops.Loops`): :meth:`run` raises when the
    topic or every broker is unavailable and is started again with backoff; it resumes from the
    offsets it had read, so the view is never rebuilt from older records over newer ones.
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
        self._pending = pending
        #: Called (from the feed's thread) with each record after the view took it.
        self.listeners: list[Callable[[ActionEvent], None]] = []
        self._reader = AllPartitionsReader(
            name="actions feed", group_label="approvals-view", bootstrap=bootstrap, codec=codec,
            topics={ACTIONS.full_name(topic_prefix): ActionEvent}, on_record=self._see, extra=extra,
            on_caught_up=lambda _s: f"actions feed caught up: {len(self._pending)} actions known")
        self.caught_up = self._reader.caught_up

    def _see(self, record: Record) -> None:
        if not isinstance(record, ActionEvent):
            return
        self._pending.see(record)
        for listener in self.listeners:
            listener(record)

    async def run(self, handle: LoopHandle | None = None) -> None:
        """Follow the topic until :meth:`stop` (or the supervisor stops); closes its consumer on the way out.

        Raises when the topic is missing or every broker is down, so its supervisor restarts it.
        """
        await self._reader.run(handle)

    def stop(self) -> None:
        self._reader.stop()
