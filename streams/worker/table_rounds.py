"""The stateful agents' group commit: a round of inputs per broker round trip, each table row after its outputs.

Dedup, correlate and decide used to finish one input at a time: send its outputs and wait for their acks,
then write its table row and wait for that changelog ack, then take the next input: at least two producer
lingers and round trips per alert and agent, which bounded one worker at a few thousand alerts a minute
while its CPU was half idle. Here the agent only takes its inputs (holding each Faust event, so the
agent's own ack does not finish it) and a committer task works through them in *rounds*:

1. every input taken so far (up to ``worker.round_size``, 512 by default) is worked on in arrival order,
   reading and writing its table through a :class:`RoundRows` view: the rows this round changed, else the
   table's, so a later input of the same key sees what an earlier one made of it, exactly as one at a time;
2. the outputs of the whole round are handed to the producer as they are made and only then waited for,
   all at once, in order (a transient failure sends that output and every later one again, in order);
3. only then are the round's rows written to the table (the last value per key) and their changelog
   acks waited for;
4. then the round's inputs are acked, in arrival order.

What this keeps, and why it is built so:

- **A row on the changelog never claims outputs the broker does not have** (step 3 after step 2). A crash
  before the rows leaves the old rows: the re-delivered inputs are worked on again from them and send the
  same records again (their ids derive from the inputs), as a crash between output and row always did.
  Writing rows as each input finished, before the round's outputs were acknowledged, would let a row
  land without its outputs, and the re-delivered input would then look done: an alert with no incident.
- **An input is acked only after its outputs and every row up to it are acknowledged** (step 4, in
  arrival order, because Faust commits up to the first unacked offset).
- **One input's failure is its own.** An input whose work fails for good is kept in dead-letter with the
  reason, and what it changed in the view is dropped, as if it had not been taken; the inputs after it go
  on. An output the broker refuses for good (too large for its topic) leaves the rows unwritten and the
  round is done again one input at a time through the agent's guard, which dead-letters exactly the input
  whose output is refused (outputs of the round already on their topics are sent again: the same ids).
  A row its changelog refuses for good dead-letters the inputs that wrote rows in the round.
- **A rebalance waits for the round**: the inputs are Faust events held unacked, and Faust waits for its
  agents' unacked events before it gives their partitions up, as for an agent that works one at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from faust.types import EventT, TableT

from schemas.errors import RcaflowError
from streams.stages.core import Position
from streams.stages.metrics import record_in_hand
from streams.worker.app import WorkerApp
from streams.worker.edge import processing, where
from streams.worker.failures import IN_FLIGHT, Delivery, acked_in_order, is_transient
from streams.worker.guard import Guard
from streams.worker.held_rounds import HeldRounds

logger = logging.getLogger(__name__)

#: What a deleted row reads as in a round, until the round writes the deletion to the table.
_GONE = object()


class Rows(Protocol):
    """What an agent's work reads and writes of its table: the table itself, or a round's view of it."""

    def get(self, key: str, /) -> Any: ...

    def __contains__(self, key: object, /) -> bool: ...

    def __setitem__(self, key: str, value: Any, /) -> None: ...

    def __delitem__(self, key: str, /) -> None: ...


#: An agent's work on one input: its bytes, where it came from, and the rows it reads and writes.
Work = Callable[[bytes, Position, Rows], Awaitable[object]]


@dataclass(slots=True)
class Taken:
    """One input the agent has taken: its event (held until acked), bytes and position."""

    event: EventT[bytes]
    value: bytes
    where: Position
    #: What this input left in dead-letter instead of outputs; None while it has not failed.
    failure: BaseException | None = None
    #: Whether it wrote a row in its round (a row refused for good is then its failure too).
    wrote: bool = False


@dataclass(slots=True)
class RoundRows:
    """A table as one round sees it: the rows the round changed (by the inputs that finished), else the table's.

    The input being worked on writes into its own layer, which joins the round only when its work
    succeeded (:meth:`keep`); a failed or retried attempt leaves nothing behind (:meth:`begin` again).
    """

    table: TableT[str, Any]
    changed: dict[Any, tuple[Taken, Any]] = field(default_factory=dict)
    _layer: dict[Any, Any] = field(default_factory=dict)
    _taken: Taken | None = None

    def begin(self, taken: Taken) -> None:
        self._taken = taken
        self._layer = {}

    def keep(self) -> None:
        assert self._taken is not None
        if self._layer:
            self._taken.wrote = True
        for key, value in self._layer.items():
            self.changed[key] = (self._taken, value)
        self._layer = {}

    def _current(self, key: Any) -> Any:
        if key in self._layer:
            return self._layer[key]
        if key in self.changed:
            return self.changed[key][1]
        return self.table.get(key, _GONE)

    def get(self, key: Any, default: Any = None) -> Any:
        value = self._current(key)
        return default if value is _GONE or value is None else value

    def __contains__(self, key: object) -> bool:
        return self._current(key) is not _GONE

    def __setitem__(self, key: Any, value: Any) -> None:
        self._layer[key] = value

    def __delitem__(self, key: Any) -> None:
        self._layer[key] = _GONE


class TableRounds(HeldRounds[Taken]):
    """One stateful agent's queue of taken inputs and the committer task that works, sends and acks them in rounds.

    ``work`` is the agent's work on one input; run with the table itself (one at a time, under the guard
    and :meth:`WorkerApp.acked`) when a round cannot go as a batch.
    """

    def __init__(self, worker: WorkerApp, guard: Guard, table: TableT[str, Any], work: Work, *,
                 timed: Callable[[], AbstractContextManager[object]] | None = None) -> None:
        super().__init__(guard.stage, round_size=worker.settings.worker.round_size,
                         max_held=worker.settings.worker.max_held)
        self._worker = worker
        self._guard = guard
        self._table = table
        self._work = work
        self._timed = timed

    async def take(self, event: EventT[bytes]) -> None:
        """Queues ``event`` for the next round (its event held), once there is room."""
        await self.room()
        self.push(Taken(event, event.value if isinstance(event.value, bytes) else b"", where(event)))

    async def finish(self, items: list[Taken]) -> None:
        rows = RoundRows(self._table)
        deliveries: list[Delivery] = []
        token = IN_FLIGHT.set(deliveries)
        try:
            for item in items:
                await self._attempt(item, rows)
        finally:
            IN_FLIGHT.reset(token)
        for item in items:
            if item.failure is not None:
                await self._guard.keep(item.value, item.where, item.failure)
        try:
            await acked_in_order(deliveries, self._guard.stage)
        except Exception as exc:  # refused for good (transient ones are sent again inside)
            if not isinstance(exc, RcaflowError):
                logger.exception("%s: unexpected error waiting for a round's outputs", self._guard.stage)
            logger.warning("%s: a round of %d inputs cannot go as a batch (%s: %s); working on them one by one",
                           self._guard.stage, len(items), type(exc).__name__, exc)
            await self._one_by_one([item for item in items if item.failure is None])
            return
        if not rows.changed:
            return
        try:
            await self._worker.acked(partial(self._store, rows))()
        except Exception as exc:  # permanent (transient ones are re-sent inside): kept as a failed step would be
            if not isinstance(exc, RcaflowError):
                logger.exception("%s: unexpected error storing a round's table rows", self._guard.stage)
            for item in items:
                if item.failure is None and item.wrote:
                    await self._guard.keep(item.value, item.where, exc)

    async def _attempt(self, item: Taken, rows: RoundRows) -> None:
        """Works on one input into the round (its outputs queued, its rows in the view); a failure is its own."""
        record_in_hand(item.event.message.key, item.event.message.timestamp)  # its metrics' tenant and wait

        async def once() -> None:
            rows.begin(item)  # a retried attempt starts from the round's rows again
            await self._work(item.value, item.where, rows)

        try:
            with processing(item.event), self._timing():
                await self._guard.retrying("processing", item.where, once)
            rows.keep()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the agent boundary: this input is kept in dead-letter, the round goes on
            if not isinstance(exc, RcaflowError):
                logger.exception("%s: unexpected error on %s[%s]@%s", self._guard.stage, item.where.topic,
                                 item.where.partition, item.where.offset)
            elif is_transient(exc):  # retrying gives up on nothing transient; kept like any failure if it did
                logger.warning("%s: transient failure escaped its retries: %s", self._guard.stage, exc)
            rows.begin(item)
            item.failure = exc

    @contextmanager
    def _timing(self) -> Iterator[None]:
        if self._timed is None:
            yield
            return
        with self._timed():
            yield

    async def _one_by_one(self, items: list[Taken]) -> None:
        for item in items:
            with processing(item.event):  # its rows go where the agent would have written them
                await self._guard.run(item.value, item.where,
                                      self._worker.acked(partial(self._work, item.value, item.where, self._table)))

    async def _store(self, rows: RoundRows) -> None:
        for key, (item, value) in rows.changed.items():
            # Faust puts a row on the changelog partition of the event being processed: the input's, as when
            # the agent wrote it itself.
            with processing(item.event):
                if value is _GONE:
                    if key in self._table:
                        del self._table[key]
                else:
                    self._table[key] = value
