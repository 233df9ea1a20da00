"""Records cleared from the agents' queues at a rebalance: released from Faust's wait, never committed.

A record of a topic read by several agents (``actions``: pending, notify-outcomes, audit-actions) is
one Faust message counted once per agent; its offset becomes committable when the last agent acks it,
and the consumer waits for it at a revocation (``Consumer.wait_empty``) once any agent has taken it.
At a revocation, and when the flow resumes after one, Faust clears the agents' queues
(``FlowControlEvent.clear``) without counting the cleared copies down. A message that one agent had
taken while it still sat in another agent's queue could then never reach zero: the revoking worker
waited in ``wait_empty`` for ever (it logged ``wait_empty: Waiting for tasks [(1, <ConsumerMessage ...>)]``
every 10 s) and the whole group stopped with it. Faust relies on the garbage collector to drop such a
message from its weak set of in-flight messages, but the stream that processed it last still holds it
while it waits for the next record, and no next record comes while the flow is stopped.

Here each cleared copy is counted down, and the message is marked *forgotten*: when its last holder (an
agent still working on it) acks it, the consumer drops it from the in-flight set without recording the
offset as done — an agent whose copy was cleared never processed it. So ``wait_empty`` still waits for
agents that are working on a record, and the group commits nothing past a record some agent skipped; the
next owner of the partition reads it again from the committed offset (an agent that had finished it sees
it twice, which every agent already tolerates after a crash). The partition's commits stop below it
(:mod:`streams.worker.commit_floor`): Faust's own commit rule would pass it.

Test: tests/unit/streams/worker/test_cleared_queues.py (and tests/faults/test_scale_out.py).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, cast
from weakref import WeakSet

import faust
from faust.types import ConsumerT, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify
from mode.utils.queues import FlowControlEvent

from streams.worker.commit_floor import commit_floor


def forget_cleared_messages(app: faust.App) -> None:
    """Makes ``app`` count down the messages its flow control clears from the agents' queues."""
    flow: FlowControlEvent = app.flow_control
    clear = flow.clear
    forgotten: WeakSet[Message] = WeakSet()

    def clear_and_forget() -> None:
        # Both of Faust's clears (at a revocation, and when the flow resumes) call this method by name.
        consumer = app.consumer
        _release_forgotten_on_ack(consumer, forgotten)
        current = app.consumer_generation_id
        cleared: Counter[Message] = Counter()
        for queue in list(flow._queues):
            for item in list(getattr(queue, "_queue", ())):
                message = getattr(item, "message", None)
                if isinstance(message, Message) and message.use_tracking:
                    cleared[message] += 1
        clear()
        if not cleared:
            return
        floor = commit_floor(consumer)
        for message, copies in cleared.items():
            with ack_lock:
                if message.acked:
                    continue
                forgotten.add(message)
                if message.generation_id == current:
                    floor.forgotten(message)  # this assignment does not read it again: no commit passes it
                if message.decref(copies) == 0:
                    # No agent holds it any more: out of the in-flight set, offset not done.
                    _release(consumer, message)

    flow.clear = clear_and_forget  # type: ignore[method-assign]


def _release_forgotten_on_ack(consumer: ConsumerT, forgotten: WeakSet[Message]) -> None:
    """The final ack of a forgotten message releases it instead of marking its offset as done."""
    if getattr(consumer, "_rcaflow_ack_rule", False):
        return
    ack = consumer.ack

    def ack_unless_forgotten(message: Message) -> bool:
        if message in forgotten:
            with ack_lock:
                _release(consumer, message)
            return False
        return ack(message)

    internal = cast(Any, consumer)
    internal.ack = ack_unless_forgotten
    internal._rcaflow_ack_rule = True


def _release(consumer: ConsumerT, message: Message) -> None:
    message.acked = True  # later acks of this message object are no-ops
    internal = cast(Any, consumer)
    internal._unacked_messages.discard(message)
    notify(internal._waiting_for_ack)
