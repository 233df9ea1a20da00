"""A record cleared from some agents' queues at a rebalance neither wedges the revocation nor gets committed.

Faust (no broker) delivers one ``actions``-like record to three agents' queues through its own conductor
callback; the agents read it through the worker's edge (manual acks). At a revocation Faust clears the
queues; the consumer then waits (``wait_empty``) until its set of in-flight messages is empty. Before
:mod:`streams.worker.cleared_queues` the cleared copies were never counted down: the record stayed in
flight for ever (the scale-out case's wedged group). Now it stays in flight exactly while an agent still
works on it, and its offset is never marked done (an agent whose copy was cleared never processed it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import faust
from faust.transport.conductor import ConductorCompiler
from faust.types import TP, EventT
from faust.types.tuples import ConsumerMessage

from schemas.codec import make_codec
from streams.settings import Settings, WorkerSettings
from streams.worker.app import WorkerApp
from streams.worker.edge import events

TOPIC = "actions-like"


def _worker(tmp_path: Path) -> WorkerApp:
    worker = WorkerApp(Settings(worker=WorkerSettings(data_dir=tmp_path)), "127.0.0.1:9", make_codec(None))
    worker.app.finalize()
    worker.app.flow_control.resume()
    return worker


async def _delivered(app: faust.App, channels: list[Any], offset: int) -> ConsumerMessage:
    """One record handed to every channel the way Faust's consumer does (its conductor's callback)."""
    for channel in channels:
        app.topics.add(channel)
    conductor: Any = app.topics
    await conductor._update_indices()  # what Faust does at an assignment: marks the topic as acking
    tp = TP(TOPIC, 0)
    deliver = ConductorCompiler().build(app.topics, tp, set(channels))  # type: ignore[arg-type]
    message = ConsumerMessage(TOPIC, 0, offset, 0.0, 0, [], b"acme:a-1", b"value", None, 5, 5, tp=tp,
                              generation_id=app.consumer_generation_id)
    await deliver(message)
    return message


def _done(app: faust.App, message: ConsumerMessage) -> set[int]:
    """The offsets of ``message``'s partition that the consumer counts as done (committable)."""
    consumer: Any = app.consumer
    return set(consumer._acked_index[message.tp])


def _revoke(app: faust.App) -> None:
    """Faust's own steps at a revocation, before it waits for the in-flight messages."""
    app.consumer.stop_flow()
    app.flow_control.suspend()
    app.flow_control.clear()


def test_a_record_cleared_from_the_other_agents_queues_leaves_the_in_flight_set(tmp_path: Path) -> None:
    worker = _worker(tmp_path)
    app = worker.app

    async def run() -> None:
        topic = app.topic(TOPIC, key_type=bytes, value_type=bytes, acks=True)
        done, waiting = topic.clone(is_iterator=True), topic.clone(is_iterator=True)
        message = await _delivered(app, [done, waiting], offset=7)
        reader: AsyncIterator[EventT[bytes]] = events(app.stream(done))
        await reader.__anext__()  # the first agent takes the record (Faust tracks it as in flight) ...
        next_one = asyncio.ensure_future(reader.__anext__())  # ... finishes it and waits for the next
        await asyncio.sleep(0.05)
        assert message in app.consumer.unacked  # the second agent has not processed it yet
        _revoke(app)
        assert message not in app.consumer.unacked  # nothing else holds it: wait_empty may return
        assert 7 not in _done(app, message)  # the second agent never processed it
        next_one.cancel()

    asyncio.run(run())


def test_a_record_an_agent_still_works_on_stays_in_flight_until_it_is_done_then_is_not_committed(
    tmp_path: Path,
) -> None:
    worker = _worker(tmp_path)
    app = worker.app

    async def run() -> None:
        topic = app.topic(TOPIC, key_type=bytes, value_type=bytes, acks=True)
        busy, done, queued = (topic.clone(is_iterator=True) for _ in range(3))
        message = await _delivered(app, [busy, done, queued], offset=3)
        finished: AsyncIterator[EventT[bytes]] = events(app.stream(done))
        await finished.__anext__()
        after_done = asyncio.ensure_future(finished.__anext__())
        working: AsyncIterator[EventT[bytes]] = events(app.stream(busy))
        await working.__anext__()  # this agent's body is running on the record
        _revoke(app)
        assert message in app.consumer.unacked  # the revocation must wait for that agent
        after_busy = asyncio.ensure_future(working.__anext__())  # its body returns: the edge acks
        await asyncio.sleep(0.05)
        assert message not in app.consumer.unacked
        assert 3 not in _done(app, message)  # the queued agent never processed it
        after_done.cancel()
        after_busy.cancel()

    asyncio.run(run())
