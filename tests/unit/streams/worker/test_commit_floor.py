"""No partition is committed past a record that no agent has finished.

Faust (no broker) delivers records through its own conductor and streams; its consumer decides what a
commit would write (``_new_offset``, which ``Consumer.commit`` calls for every partition with acks).
Each test names the Faust rule that committed past an unfinished record before
:mod:`streams.worker.commit_floor` and :mod:`streams.worker.cleared_queues`.
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
from streams.worker.commit_floor import commit_floor
from streams.worker.edge import events

TOPIC = "normalized-like"
PARTITION = TP(TOPIC, 0)


def _app(tmp_path: Path) -> faust.App:
    worker = WorkerApp(Settings(worker=WorkerSettings(data_dir=tmp_path)), "127.0.0.1:9", make_codec(None))
    worker.app.finalize()
    worker.app.flow_control.resume()
    return worker.app


async def _joined(app: faust.App) -> Any:
    """The consumer as it is after the worker joined the group (Faust's revocation signal at every join)."""
    await app.on_partitions_revoked.send(set())
    return app.consumer


async def _channel(app: faust.App) -> Any:
    topic = app.topic(TOPIC, key_type=bytes, value_type=bytes, acks=True)
    channel = topic.clone(is_iterator=True)
    app.topics.add(channel)  # type: ignore[arg-type]
    await app.topics._update_indices()  # type: ignore[attr-defined]  # what Faust does at an assignment
    return channel


async def _deliver(app: faust.App, channel: Any, *offsets: int) -> list[ConsumerMessage]:
    """Records handed to the channel the way Faust's consumer does (its conductor's callback)."""
    deliver = ConductorCompiler().build(app.topics, PARTITION, {channel})  # type: ignore[arg-type]
    messages = []
    for offset in offsets:
        message = ConsumerMessage(TOPIC, 0, offset, 0.0, 0, [], b"acme:a", b"v", None, 1, 1, tp=PARTITION,
                                  generation_id=app.consumer_generation_id)
        await deliver(message)
        messages.append(message)
    return messages


async def _take(app: faust.App, channel: Any, count: int) -> list[EventT[bytes]]:
    """An agent takes ``count`` records (it holds the last one: the body is still running on it)."""
    reader: AsyncIterator[EventT[bytes]] = events(app.stream(channel))
    return [await reader.__anext__() for _ in range(count)]


def _finished(consumer: Any, *messages: ConsumerMessage) -> None:
    """Agents finished these records (Faust's final ack: the record's last reader is done)."""
    for message in messages:
        message.ack(consumer)


def test_a_fresh_partition_is_not_committed_past_its_first_record(tmp_path: Path) -> None:
    # Faust checks for a gap at the head only when the committed offset is neither None nor 0.
    app = _app(tmp_path)

    async def run() -> None:
        consumer = await _joined(app)
        channel = await _channel(app)
        messages = await _deliver(app, channel, 0, 1, 2, 3)
        await _take(app, channel, 1)  # the sensor sees offset 0 handed over first
        _finished(consumer, *messages[1:])
        assert consumer._new_offset(PARTITION) is None  # Faust: 4, past the unfinished 0
        _finished(consumer, messages[0])
        assert consumer._new_offset(PARTITION) == 4

    asyncio.run(run())


def test_a_committed_partition_is_not_committed_past_the_record_at_its_committed_offset(tmp_path: Path) -> None:
    # Faust lets the run of acked offsets start one above the committed offset (``> 1``).
    app = _app(tmp_path)

    async def run() -> None:
        consumer = await _joined(app)
        channel = await _channel(app)
        consumer._committed_offset[PARTITION] = 5  # sought to its committed offset 5 (perform_seek)
        messages = await _deliver(app, channel, 5, 6, 7)
        await _take(app, channel, 1)
        _finished(consumer, *messages[1:])
        assert consumer._new_offset(PARTITION) is None  # Faust: 8, past the unfinished 5
        _finished(consumer, messages[0])
        assert consumer._new_offset(PARTITION) == 8

    asyncio.run(run())


def test_the_commit_at_a_revocation_does_not_pass_an_unfinished_record(tmp_path: Path) -> None:
    # Faust drops the revoked partitions' committed offsets before it commits what their records ack.
    app = _app(tmp_path)

    async def run() -> None:
        consumer = await _joined(app)
        channel = await _channel(app)
        consumer._committed_offset[PARTITION] = 10
        messages = await _deliver(app, channel, 10, 11, 12)
        await _take(app, channel, 1)
        await consumer.on_partitions_revoked({PARTITION})  # Faust's own bookkeeping, then wait_empty + commit
        _finished(consumer, messages[1], messages[2])
        assert consumer._new_offset(PARTITION) is None  # Faust: 13, past the unfinished 10

    asyncio.run(run())


def test_a_record_cleared_at_a_revocation_holds_the_commit_below_it(tmp_path: Path) -> None:
    # A cleared copy is never acked: the commit stops below it until the partition is sought again.
    app = _app(tmp_path)

    async def run() -> None:
        consumer = await _joined(app)
        channel = await _channel(app)
        messages = await _deliver(app, channel, 0, 1, 2)
        await _take(app, channel, 1)
        _finished(consumer, messages[0])
        app.consumer.stop_flow()
        app.flow_control.suspend()
        app.flow_control.clear()  # Faust's steps at a revocation: records 1 and 2 leave the queue
        assert consumer._new_offset(PARTITION) == 1
        assert commit_floor(consumer).holes() == {PARTITION: 1}

    asyncio.run(run())


class _Broker:
    """aiokafka's side of Faust's seeks: what the group committed and where the log starts; records seeks."""

    def __init__(self, consumer: Any, *, committed: int | None, log_start: int) -> None:
        self.seeks: list[tuple[TP, int]] = []

        async def seek_to_committed() -> dict[TP, int | None]:
            return {PARTITION: committed}  # aiokafka leaves a never-committed partition where its fetcher was

        async def earliest_offsets(*tps: TP) -> dict[TP, int]:
            return {tp: log_start for tp in tps}

        async def seek(tp: TP, offset: int) -> None:
            self.seeks.append((tp, offset))

        consumer.assignment = lambda: {PARTITION}
        consumer.seek_to_committed = seek_to_committed
        consumer.earliest_offsets = earliest_offsets
        consumer._seek = seek


def test_a_partition_never_committed_is_read_from_its_log_start_after_a_rebalance(tmp_path: Path) -> None:
    # A worker that kept such a partition went on where its fetcher was, after the records it had cleared.
    app = _app(tmp_path)

    async def run() -> None:
        consumer = await _joined(app)
        await _channel(app)
        broker = _Broker(consumer, committed=None, log_start=0)
        await consumer.perform_seek()  # what Faust's recovery does after every assignment
        assert broker.seeks == [(PARTITION, 0)]

    asyncio.run(run())


def test_records_that_never_reached_an_agent_after_a_seek_are_read_again(tmp_path: Path) -> None:
    # Sought to 5, the first record handed over is 9: 5-8 are read again, and no commit passes them meanwhile.
    app = _app(tmp_path)

    async def run() -> None:
        consumer = await _joined(app)
        channel = await _channel(app)
        broker = _Broker(consumer, committed=5, log_start=0)
        await consumer.perform_seek()
        assert broker.seeks == []  # aiokafka sought it to its committed offset itself
        messages = await _deliver(app, channel, 9, 10)
        await _take(app, channel, 1)
        await asyncio.sleep(0.1)  # the partition is sought again with the fetcher stopped, then resumed
        assert broker.seeks == [(PARTITION, 5)]
        assert consumer.flow_active
        _finished(consumer, *messages)
        assert consumer._new_offset(PARTITION) is None

    asyncio.run(run())
