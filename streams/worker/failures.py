"""Why a record could not be finished, typed: transient (wait and retry) or permanent (dead-letter the input).

The agents meet foreign errors (aiokafka's, from sending) and our own; this module
maps them once, so every agent applies the same rule.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from aiokafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from faust.exceptions import ProducerSendError
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from schemas.errors import RcaflowError, TransientError
from streams.errors import StreamsError

logger = logging.getLogger(__name__)

T = TypeVar("T")


class BrokerUnavailableError(StreamsError, TransientError):
    """The broker did not take an output now (no leader, timeout, connection lost); it may later."""

    retriable = True

    def __init__(self, message: str, *, topic: str) -> None:
        super().__init__(message)
        self.topic = topic


class OutputTooLargeError(StreamsError):
    """An output is larger than the broker accepts on its topic: the same input will always fail the same way."""

    retriable = False

    def __init__(self, message: str, *, topic: str, size: int) -> None:
        super().__init__(message)
        self.topic = topic
        self.size = size


class OutputRefusedError(StreamsError):
    """The broker refused an output for a reason retrying cannot change (authorization, invalid record)."""

    retriable = False

    def __init__(self, message: str, *, topic: str) -> None:
        super().__init__(message)
        self.topic = topic


_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)


def _broker_error(exc: BaseException) -> BaseException:
    """The Kafka client's own error under Faust's wrapper.

    Faust's producer raises ``ProducerSendError("Error while sending: KafkaTimeoutError()")`` from the
    aiokafka error (a topic's metadata or buffer space not there in time while the broker is away): judged
    by its wrapper it looked permanent, and the record that waited was dead-lettered, its incident lost.
    """
    if isinstance(exc, ProducerSendError) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def send_failure(exc: BaseException, *, topic: str, size: int) -> RcaflowError:
    """The typed error for a send to ``topic`` of a ``size``-byte value that failed with ``exc``."""
    exc = _broker_error(exc)
    if isinstance(exc, RcaflowError):
        return exc
    if isinstance(exc, _TOO_LARGE):
        return OutputTooLargeError(
            f"output too large for the broker: a {size}-byte record for {topic} was refused ({type(exc).__name__})",
            topic=topic, size=size,
        )
    if isinstance(exc, KafkaTimeoutError) or (isinstance(exc, KafkaError) and exc.retriable):
        return BrokerUnavailableError(f"broker did not take a record for {topic}: {type(exc).__name__}: {exc}",
                                      topic=topic)
    return OutputRefusedError(f"broker refused a record for {topic}: {type(exc).__name__}: {exc}", topic=topic)


def is_transient(exc: BaseException) -> bool:
    """Whether the same input may succeed later: our TransientErrors and any error that says it is retriable."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, RcaflowError):
        return exc.retriable
    exc = _broker_error(exc)
    return isinstance(exc, KafkaTimeoutError) or (isinstance(exc, KafkaError) and bool(exc.retriable))


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter, capped: retries spread out and never wait longer than ``cap_s``."""

    base_s: float = 0.2
    cap_s: float = 30.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap_s, self.base_s * (2 ** min(attempt, 30)))
        return random.uniform(ceiling / 2, ceiling)  # jitter, not cryptography


#: The stage whose record the current task works on (set by the agent's guard), so a retry deep in a send is
#: reported under the stage that waits for it.
CURRENT_STAGE: contextvars.ContextVar[str] = contextvars.ContextVar("rcaflow_stage", default="")

#: The first retry is logged at once; the next ones when the record has been retrying this long, doubling,
#: then every LOG_EVERY_MAX_S: an outage of hours leaves a few dozen lines, each with the backoff state.
LOG_FIRST_AFTER_S = 10.0
LOG_EVERY_MAX_S = 3600.0


@dataclass(slots=True)
class Retrying:
    """One record held in a transient retry: where, since when, how often, and why."""

    stage: str
    what: str
    since: float = field(default_factory=time.monotonic)
    attempts: int = 0
    error: str = ""
    next_delay_s: float = 0.0

    def seconds(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.since


class RetryBoard(Collector):
    """The records in transient retry right now, per stage: the gauges, the log's state and the worker's /readyz.

    Transient failures are never given up on (they must not become dead letters or skips); this is
    what makes a long outage visible instead: ``rcaflow_stage_retrying_records{stage}`` and
    ``rcaflow_stage_retrying_seconds{stage}`` (how long the oldest record of the stage has waited).
    """

    def __init__(self) -> None:
        self._held: dict[int, Retrying] = {}
        self._ids = itertools.count()

    @contextmanager
    def holding(self, stage: str, what: str) -> Iterator[Retrying]:
        key = next(self._ids)
        entry = self._held[key] = Retrying(stage or "unknown", what)
        try:
            yield entry
        finally:
            self._held.pop(key, None)

    def oldest(self) -> dict[str, Retrying]:
        """Per stage, the record that has been retrying longest."""
        oldest: dict[str, Retrying] = {}
        for entry in list(self._held.values()):  # read from the metrics thread too: iterate a copy
            if entry.stage not in oldest or entry.since < oldest[entry.stage].since:
                oldest[entry.stage] = entry
        return oldest

    def stuck(self, after_s: float) -> dict[str, Retrying]:
        """The stages whose oldest record has been retrying for ``after_s`` or longer."""
        now = time.monotonic()
        return {stage: e for stage, e in self.oldest().items() if e.seconds(now) >= after_s}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        records = GaugeMetricFamily("rcaflow_stage_retrying_records",
                                    "Records a stage holds in a transient retry (broker, registry, LLM down).",
                                    labels=["stage"])
        seconds = GaugeMetricFamily("rcaflow_stage_retrying_seconds",
                                    "How long the stage's oldest record in a transient retry has been retrying.",
                                    labels=["stage"])
        held = list(self._held.values())
        now = time.monotonic()
        for stage, entry in sorted(self.oldest().items()):
            records.add_metric([stage], sum(1 for e in held if e.stage == stage))
            seconds.add_metric([stage], entry.seconds(now))
        yield records
        yield seconds


#: The worker's board (one per process, like the Prometheus default registry it is shown on).
RETRIES = RetryBoard()


async def retry_transient(op: Callable[[], Awaitable[T]], what: str, *, backoff: Backoff | None = None,
                          on_retry: Callable[[BaseException], None] | None = None,
                          board: RetryBoard = RETRIES) -> T:
    """``op``'s result; transient failures are retried with capped backoff for as long as they last.

    Permanent failures are raised at once. Unbounded on purpose: the input waits (and the log and
    metrics say why) rather than being dead-lettered or skipped because a dependency was down. While it
    waits it is on ``board``, under the stage of :data:`CURRENT_STAGE`; the log says so at the first retry
    and then at growing intervals (10 s, 20 s, 40 s ... of retrying, then hourly).
    """
    try:
        return await op()
    except Exception as exc:  # classified right here: transient ones are retried, the rest re-raised
        if not is_transient(exc):
            raise
        failure = exc
    backoff = backoff or Backoff()
    with board.holding(CURRENT_STAGE.get(), what) as entry:
        log_after = 0.0
        while True:
            entry.attempts += 1
            entry.error = f"{type(failure).__name__}: {failure}"
            entry.next_delay_s = backoff.delay(entry.attempts - 1)
            if on_retry is not None:
                on_retry(failure)
            elapsed = entry.seconds()
            if elapsed >= log_after:
                logger.warning("%s failed (%s); retrying for %.0fs, attempt %d, next in %.1fs (stage %s)", what,
                               entry.error, elapsed, entry.attempts, entry.next_delay_s, entry.stage)
                log_after = min(max(LOG_FIRST_AFTER_S, 2 * elapsed), elapsed + LOG_EVERY_MAX_S)
            else:
                logger.debug("%s failed (%s); retry %d in %.1fs", what, entry.error, entry.attempts,
                             entry.next_delay_s)
            await asyncio.sleep(entry.next_delay_s)
            try:
                result = await op()
            except Exception as exc:  # as above
                if not is_transient(exc):
                    raise
                failure = exc
                continue
            if entry.seconds() >= LOG_FIRST_AFTER_S:
                logger.warning("%s succeeded after %.0fs and %d retries (stage %s)", what, entry.seconds(),
                               entry.attempts, entry.stage)
            return result


@dataclass(frozen=True, slots=True)
class Delivery:
    """One output handed to the producer and not yet acknowledged: the ack to wait for, and how to send it again."""

    topic: str
    size: int
    ack: Awaitable[object]
    #: Sends the same bytes again and returns once the broker acknowledged them (never into a collector).
    resend: Callable[[], Awaitable[object]]

    async def acked(self) -> None:
        """Returns once the broker has the record; raises the typed error (transient or not) otherwise."""
        try:
            await asyncio.shield(self.ack)  # a stopping worker must not cancel the producer's own future
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the broker boundary, as in the worker's sends
            raise send_failure(exc, topic=self.topic, size=self.size) from exc

    def abandon(self) -> None:
        """Nobody will wait for this ack any more (it was sent again): its failure is not an error to report."""
        if isinstance(self.ack, asyncio.Future):
            self.ack.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


#: Where the sends of the current record put their deliveries instead of awaiting them (a pipelined guard sets
#: it for one record); unset, a send returns only once the broker acknowledged it.
IN_FLIGHT: contextvars.ContextVar[list[Delivery] | None] = contextvars.ContextVar("rcaflow_in_flight", default=None)


async def acked_in_order(deliveries: list[Delivery], what: str, *, backoff: Backoff | None = None) -> None:
    """Returns once the broker acknowledged every delivery, waited for in the order they were sent.

    After a transient failure that record and every later one are sent again, in order, each waited for
    with backoff: the last copy of each key's records keeps the order of the sends (the copies before are
    duplicates that the ids derived from the input make harmless). A permanent failure is raised.
    """
    again = False
    for index, delivery in enumerate(deliveries):
        if not again:
            try:
                await delivery.acked()
                continue
            except Exception as exc:  # classified: transient ones are sent again, the rest raised
                if not is_transient(exc):
                    for rest in deliveries[index + 1:]:
                        rest.abandon()
                    raise
                again = True
        else:
            delivery.abandon()
        await retry_transient(delivery.resend, f"{what}: sending again to {delivery.topic}", backoff=backoff)
