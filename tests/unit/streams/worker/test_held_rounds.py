"""The round agents' queue honours ``worker.round_size`` and ``worker.max_held``, and acks every input in order.

The queue (streams/worker/held_rounds.py) is driven as an agent drives it (``room``, then ``push``) with
Faust's own events; the round's work is the one step a subclass fills in, here one that notes each round.
The agents that commit in rounds (dedup, correlate, decide, audit) take both sizes from the worker's settings.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.types import EventT
from faust.types.tuples import Message

from schemas.codec import make_codec
from streams.errors import ConfigurationError
from streams.settings import Settings, WorkerSettings
from streams.wiring.runtime import build_stages
from streams.worker.app import WorkerApp
from streams.worker.audit_rounds import AuditRounds
from streams.worker.guard import Guard
from streams.worker.held_rounds import HeldRounds
from streams.worker.table_rounds import TableRounds


@dataclass
class Input:
    event: EventT[bytes]


class NotedRounds(HeldRounds[Input]):
    """Notes each round's inputs and how many inputs were held while it ran; lets the agent go on meanwhile."""

    def __init__(self, *, round_size: int, max_held: int, events: list[EventT[bytes]]) -> None:
        super().__init__("test", round_size=round_size, max_held=max_held)
        self.rounds: list[list[int]] = []
        self.most_held = 0
        self._events = events

    async def finish(self, items: list[Input]) -> None:
        self.rounds.append([item.event.message.offset for item in items])
        for _ in range(3):  # the agent takes more while the round waits for the broker
            await asyncio.sleep(0)
            self.most_held = max(self.most_held, sum(1 for e in self._events if e.message.refcount > 0))


def _events(app: faust.App, count: int) -> list[EventT[bytes]]:
    return [faust.Event(app, b"k", b"v", [], Message("in", 0, offset, 0.0, 0, [], b"k", b"v", None))
            for offset in range(count)]


def _feed(rounds: NotedRounds, events: list[EventT[bytes]]) -> None:
    async def agent() -> None:
        for event in events:
            await rounds.room()
            rounds.push(Input(event))
        while not all(e.message.acked for e in events):
            await asyncio.sleep(0)

    asyncio.run(asyncio.wait_for(agent(), timeout=30))


@pytest.fixture
def app() -> faust.App:
    return faust.App("held-rounds-test", broker="kafka://127.0.0.1:9", web_enabled=False)


@pytest.mark.parametrize(("round_size", "max_held"), [(3, 5), (7, 7), (1, 4), (512, 2048)])
def test_a_round_never_takes_more_than_round_size_and_the_agent_never_holds_more_than_max_held(
    app: faust.App, round_size: int, max_held: int
) -> None:
    events = _events(app, 40)
    rounds = NotedRounds(round_size=round_size, max_held=max_held, events=events)
    _feed(rounds, events)
    assert max(len(r) for r in rounds.rounds) <= round_size
    assert [offset for r in rounds.rounds for offset in r] == list(range(40))  # every input once, in order
    assert all(e.message.acked and e.message.refcount == 0 for e in events)
    assert rounds.most_held <= max_held
    if round_size < 40:
        # A backlog: the rounds fill up to the size they are given, not to a fixed size.
        assert max(len(r) for r in rounds.rounds) == round_size


@pytest.mark.parametrize(("round_size", "max_held"), [(0, 5), (6, 5)])
def test_a_queue_that_could_never_ack_is_refused(round_size: int, max_held: int) -> None:
    with pytest.raises(ConfigurationError, match=r"worker\.round_size"):
        NotedRounds(round_size=round_size, max_held=max_held, events=[])


def test_the_round_agents_take_their_sizes_from_the_worker_settings(tmp_path: Path) -> None:
    settings = Settings(worker=WorkerSettings(data_dir=tmp_path, round_size=5, max_held=9))
    worker = WorkerApp(settings, "127.0.0.1:9", make_codec(None))
    stages = build_stages(settings)

    async def work(*_: Any) -> None:
        return None

    table = TableRounds(worker, Guard(worker, "dedup", stages.dedup.context), worker.tables.dedup_state, work)
    audit = AuditRounds(worker, stages.audit, Guard(worker, "audit", stages.audit.context),
                        worker.tables.audit_head, work)
    assert (table.round_size, table.max_held) == (5, 9)
    assert (audit.round_size, audit.max_held) == (5, 9)
