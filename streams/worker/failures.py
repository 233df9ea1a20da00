"""Why a record could not be finished, typed: transient (wait and retry) or permanent (dead-letter the input).

The agents meet foreign errors (aiokafka's, from sending) and our own; this module
maps them once, so every agent applies the same rule.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aiokafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

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


def send_failure(exc: BaseException, *, topic: str, size: int) -> RcaflowError:
    """The typed error for a send to ``topic`` of a ``size``-byte value that failed with ``exc``."""
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
    return isinstance(exc, KafkaTimeoutError) or (isinstance(exc, KafkaError) and bool(exc.retriable))


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter, capped: retries spread out and never wait longer than ``cap_s``."""

    base_s: float = 0.2
    cap_s: float = 30.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap_s, self.base_s * (2 ** min(attempt, 30)))
        return random.uniform(ceiling / 2, ceiling)  # jitter, not cryptography


async def retry_transient(op: Callable[[], Awaitable[T]], what: str, *, backoff: Backoff | None = None,
                          on_retry: Callable[[BaseException], None] | None = None) -> T:
    """``op``'s result; transient failures are retried with capped backoff for as long as they last.

    Permanent failures are raised at once. Unbounded on purpose: the input waits (and the log and
    metrics say why) rather than being dead-lettered or skipped because a dependency was down.
    """
    backoff = backoff or Backoff()
    attempt = 0
    while True:
        try:
            return await op()
        except Exception as exc:  # classified right here: transient ones are retried, the rest re-raised
            if not is_transient(exc):
                raise
            delay = backoff.delay(attempt)
            attempt += 1
            if on_retry is not None:
                on_retry(exc)
            logger.warning("%s failed (%s: %s); retry %d in %.1fs", what, type(exc).__name__, exc, attempt, delay)
            await asyncio.sleep(delay)
