"""The queue both round agents share: inputs held unacked, a committer task working through them in rounds.

An agent that commits in rounds (the audit agent, the stateful agents) takes each input, holds its Faust
event (its reference count raised, so the agent's own ack does not finish it) and goes on; one committer
task takes everything queued so far as a round, finishes it (the agent's own work: :meth:`finish`) and
then acks the round's inputs in arrival order, because Faust commits up to the first unacked offset.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from typing import Generic, Protocol, TypeVar

from faust.types import EventT

from streams.errors import ConfigurationError
from streams.worker.failures import CURRENT_STAGE


class Held(Protocol):
    """An input in the queue: its Faust event, held until its round acks it."""

    @property
    def event(self) -> EventT[bytes]: ...


H = TypeVar("H", bound=Held)


class HeldRounds(Generic[H]):
    """The held inputs of one agent and its committer task; subclasses say how a round is finished."""

    def __init__(self, stage: str, *, round_size: int, max_held: int) -> None:
        if round_size < 1 or max_held < round_size:
            # A round of 0 would never ack anything: settings refuse it first (WorkerSettings), this is the backstop.
            raise ConfigurationError(f"{stage}: worker.round_size must be at least 1 and worker.max_held at least "
                                     f"worker.round_size (got {round_size} and {max_held})")
        self._stage = stage
        #: Inputs one round finishes at most (``worker.round_size``): bounds one round's work (and a fallback's)
        #: while the broker answers.
        self.round_size = round_size
        #: Inputs held (taken, not yet acked) before :meth:`room` waits (``worker.max_held``): the queue behind a
        #: slow round.
        self.max_held = max_held
        self._queue: deque[H] = deque()
        self._space = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None

    async def room(self) -> None:
        """Returns once the agent may take another input (fewer than :attr:`max_held` held)."""
        while len(self._queue) >= self.max_held:
            self._space.clear()
            await self._space.wait()

    def push(self, item: H) -> None:
        """Holds ``item``'s event (the agent's own ack will not finish it) and queues it for the next round.

        No await between the hold and the queueing: an input is never held without being queued.
        """
        item.event.message.incref()
        self._queue.append(item)
        if self._committer is None or self._committer.done():
            # Its own context: its sends are its own (no pipelined guard's list), its retries name its stage.
            self._committer = asyncio.get_running_loop().create_task(
                self._commit_rounds(), name=f"rcaflow-rounds-{self._stage}", context=contextvars.Context())

    async def _commit_rounds(self) -> None:
        CURRENT_STAGE.set(self._stage)
        while self._queue:
            size = min(len(self._queue), self.round_size)
            await self.finish([self._queue[i] for i in range(size)])
            for _ in range(size):
                done = self._queue.popleft()
                done.event.ack()  # the last holder: the consumer may now commit past this input
            self._space.set()

    async def finish(self, items: list[H]) -> None:
        """Everything the round's inputs lead to, acknowledged by the broker (or kept in dead-letter)."""
        raise NotImplementedError
