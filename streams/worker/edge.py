"""The agents' edge: Kafka events in, typed records out, decoded once; undecodable input is kept, not dropped."""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar, cast

import faust
import faust.streams
from faust.types import EventT
from pydantic import ValidationError

from schemas.codec import Codec
from schemas.errors import CodecError
from schemas.records import Record
from streams.stages.core import Position, StageContext
from streams.stages.metrics import record_in_hand

R = TypeVar("R", bound=Record)


def where(event: EventT[bytes]) -> Position:
    msg = event.message
    key = msg.key if isinstance(msg.key, bytes) else None
    return Position(msg.topic, msg.partition, msg.offset, key)


def key_text(where: Position) -> str:
    """The record key as text: the table key of the row the record belongs to."""
    return (where.key or b"").decode("utf-8", "replace")


def header(event: EventT[bytes], name: str) -> str | None:
    """A header's value as text (Faust hands headers over as a mapping or as (name, value) pairs)."""
    headers = event.message.headers or ()
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if key == name and isinstance(value, bytes):
            return value.decode("utf-8", "replace")
    return None


async def values(stream: faust.StreamT[bytes]) -> AsyncIterator[tuple[bytes, Position]]:
    """The stream's values with their positions; each is acked only once the agent's body finished it.

    Faust acks an event when the ``async for`` moves on, and also when the loop is left by an
    exception or a cancellation, so a crashing agent or a stopping worker would commit a record it
    never finished. Here acks are manual: the ack after ``yield`` runs only when the body returned.
    """
    manual = _manual(stream)
    async for event in manual.events():
        value = event.value if isinstance(event.value, bytes) else b""
        record_in_hand(event.message.key, event.message.timestamp)  # its metrics' tenant and wait
        yield value, where(event)
        await manual.ack(event)


async def events(stream: faust.StreamT[bytes]) -> AsyncIterator[EventT[bytes]]:
    """Like :func:`values`, for agents that need the whole event (headers)."""
    manual = _manual(stream)
    async for event in manual.events():
        record_in_hand(event.message.key, event.message.timestamp)
        yield event
        await manual.ack(event)


def _manual(stream: faust.StreamT[bytes]) -> faust.StreamT[bytes]:
    """The same stream with manual acks (``noack`` is on Faust's Stream, not on its StreamT interface)."""
    return cast("faust.Stream[bytes]", stream).noack()


def decode(codec: Codec, value: bytes, record_type: type[R], where: Position) -> R | None:
    """The record, or None when these bytes are not one (the caller decides whether that is a dead letter).

    Synchronous, for Faust's ``group_by`` key function only; agents use :meth:`Guard.decode`, which
    waits out a registry outage instead of taking good bytes for bad ones.
    """
    try:
        return codec.decode(value, record_type, topic=where.topic)
    except (CodecError, ValidationError):
        return None


@contextmanager
def processing(event: EventT[bytes]) -> Iterator[None]:
    """Faust's current event set to ``event``, for work done outside the agent's stream (a committer task).

    Faust puts a table row on the changelog partition of the current event, so a row written for an
    input outside its agent's loop must be written with that input as the current event.
    """
    token = faust.streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust.streams._current_event.reset(token)


@contextmanager
def timed(context: StageContext, stage: str) -> Iterator[None]:
    """Times a stage on the metrics, if there are any."""
    if context.metrics is None:
        yield
        return
    with context.metrics.timed(stage):
        yield
