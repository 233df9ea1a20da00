"""Table writes the broker has acknowledged before the input that made them is acked.

Faust only queues a table change on its changelog (``send_soon``) and nothing awaits it: a write that
failed when the broker went away was logged (``_on_published error``) and dropped while the input was
acked, and the next assignment of the partition rebuilt the row from the changelog as it was before.
Here every write an agent makes while it works on a record (inside :func:`collecting`) is collected, and
:func:`await_acked` waits for each one; a transient failure re-sends the row's current value, a permanent
one is raised for the agent's guard to dead-letter the input.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import faust
from faust.types import FutureMessage, RecordMetadata

from streams.worker.failures import BrokerUnavailableError, is_transient, retry_transient, send_failure

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChangelogWrite:
    """One table change queued on its changelog while an agent worked on a record: what to wait for or re-send."""

    table: AckedTable
    partition: int | None
    key: Any
    future: FutureMessage

    @property
    def topic(self) -> str:
        return self.table.changelog_topic.get_topic_name()

    @property
    def size(self) -> int:
        value = self.future.message.value
        return len(value) if isinstance(value, bytes) else 0


#: The changelog writes of the record this task works on (inside :func:`collecting`), else None.
_WRITES: contextvars.ContextVar[list[ChangelogWrite] | None] = contextvars.ContextVar(
    "rcaflow_changelog_writes", default=None)


class AckedTable(faust.Table[Any, Any]):
    """A Faust table whose changelog writes the agent that made them waits for.

    Guarantee: a write made inside :func:`collecting` is handed to the collector; one made outside (a
    table changed where no record is being worked on) is Faust's plain queued write, and says so once
    in the log, so an unprotected write does not go unnoticed.
    """

    _warned_outside = False

    def send_changelog(self, partition: int | None, key: Any, value: Any, key_serializer: Any = None,
                       value_serializer: Any = None) -> FutureMessage:
        future: FutureMessage = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        writes = _WRITES.get()
        if writes is not None:
            # eager_partitioning (Faust's send_changelog) has fixed the partition by now.
            writes.append(ChangelogWrite(self, future.message.partition, key, future))
        elif not self._warned_outside:
            self._warned_outside = True
            logger.warning("table %s changed outside an agent's record (key %r): that changelog write is not "
                           "awaited", self.name, key)
        return future

    async def resend(self, partition: int | None, key: Any) -> RecordMetadata:
        """Sends the row as the table holds it now (a tombstone if it is gone) and waits for the broker's ack.

        The current value, not the failed write's: a later change of the row, sent meanwhile, must not
        be overtaken by an older one. Sent directly (awaited), not through Faust's send buffer.
        """
        value, serializer = (self.data[key], None) if key in self.data else (None, "raw")
        delivery = await self.changelog_topic.send(
            key=key, value=value, partition=partition, key_serializer=self.key_serializer,
            value_serializer=serializer or self.value_serializer, callback=self._on_changelog_sent, force=True)
        return await delivery


@contextmanager
def collecting() -> Iterator[list[ChangelogWrite]]:
    """Collects the changelog writes this task's tables make inside the block."""
    writes: list[ChangelogWrite] = []
    token = _WRITES.set(writes)
    try:
        yield writes
    finally:
        _WRITES.reset(token)


async def await_acked(writes: list[ChangelogWrite], *, wait_s: float) -> None:
    """Returns once the broker has acknowledged every write (or a re-send of its row).

    A transient failure (broker gone, request timed out) re-sends the row's current value with the
    worker's capped backoff, for as long as it lasts; a write still unanswered after ``wait_s`` is waited
    for again the same way (on the retry board, in the log). A permanent failure (the row too large for
    the changelog topic, say) is raised as the worker's typed send error.
    """
    for write in writes:
        await retry_transient(partial(_acked, write, wait_s),
                              f"writing the {write.table.name} row {write.key!r} to {write.topic}")


async def _acked(write: ChangelogWrite, wait_s: float) -> None:
    try:
        await asyncio.wait_for(asyncio.shield(write.future), wait_s)
        return
    except asyncio.CancelledError:
        raise
    except TimeoutError as exc:  # still queued or in flight: waited for again, as a transient failure
        raise BrokerUnavailableError(f"the broker has not acknowledged a row for {write.topic} after "
                                     f"{wait_s:.0f}s", topic=write.topic) from exc
    except Exception as exc:  # the broker boundary, as in WorkerApp's sends: mapped to our typed errors
        failure = send_failure(exc, topic=write.topic, size=write.size)
        if not is_transient(failure):
            raise failure from exc
    # The queued write failed for good; the row goes again, as it is now.
    try:
        await write.table.resend(write.partition, write.key)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # as above
        raise send_failure(exc, topic=write.topic, size=write.size) from exc
