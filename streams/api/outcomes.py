"""Waiting for the executor's answer: futures per action, resolved by the actions feed.

Writes asked for through ``/tools`` run in the executor (one execution path, issue 11
item 3); the API replica that asked learns the outcome the way everyone else does,
from the actions topic. The feed calls :meth:`ActionOutcomes.see` from its thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from schemas.records import ActionEvent, ActionState

#: States after which nothing more happens to an action on its own: what a caller waits for.
FINAL_STATES = frozenset({ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK,
                          ActionState.REJECTED, ActionState.EXPIRED, ActionState.WITHDRAWN})


class ActionOutcomes:
    """``(tenant, action_id)`` → the futures of the requests waiting for that action's final record."""

    def __init__(self) -> None:
        self._waiting: dict[tuple[str, str], list[tuple[asyncio.AbstractEventLoop, asyncio.Future[ActionEvent]]]]
        self._waiting = {}
        self._lock = threading.Lock()

    def see(self, action: ActionEvent) -> None:
        """Take one record from the feed (any thread); settles the waiters of a final state."""
        if action.state not in FINAL_STATES:
            return
        with self._lock:
            waiters = self._waiting.pop((action.tenant, action.action_id), [])
        for loop, future in waiters:
            loop.call_soon_threadsafe(_settle, future, action)

    @contextlib.contextmanager
    def waiter(self, tenant: str, action_id: str) -> Iterator[asyncio.Future[ActionEvent]]:
        """Register before publishing (so an outcome that comes quickly is not missed); leave to forget it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ActionEvent] = loop.create_future()
        key = (tenant, action_id)
        with self._lock:
            self._waiting.setdefault(key, []).append((loop, future))
        try:
            yield future
        finally:
            with self._lock:
                left = [w for w in self._waiting.get(key, []) if w[1] is not future]
                if left:
                    self._waiting[key] = left
                else:
                    self._waiting.pop(key, None)


def _settle(future: asyncio.Future[ActionEvent], action: ActionEvent) -> None:
    if not future.done():
        future.set_result(action)
