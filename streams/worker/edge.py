"""The agents' edge: Kafka events in, typed records out, decoded once; undecodable input is kept, not dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

import faust
from faust.types import EventT
from pydantic import ValidationError

from schemas.codec import Codec
from schemas.errors import CodecError
from schemas.records import Record
from streams.stages.core import Position, StageContext, dead_letter
from streams.worker.app import WorkerApp

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
    async for event in stream.events():
        value = event.value if isinstance(event.value, bytes) else b""
        yield value, where(event)


def decode(codec: Codec, value: bytes, record_type: type[R], where: Position) -> R | None:
    """The record, or None when these bytes are not one (the caller decides whether that is a dead letter)."""
    try:
        return codec.decode(value, record_type, topic=where.topic)
    except (CodecError, ValidationError):
        return None


async def decoded(
    worker: WorkerApp, value: bytes, record_type: type[R], where: Position, stage: str, context: StageContext
) -> R | None:
    """The record, or None once the undecodable bytes are kept in dead-letter with the reason."""
    try:
        return worker.codec.decode(value, record_type, topic=where.topic)
    except (CodecError, ValidationError) as exc:
        context.count(stage, "dead_letter")
        await worker.send([dead_letter(stage, value, where, exc, context=context)])
        return None


@contextmanager
def timed(context: StageContext, stage: str) -> Iterator[None]:
    """Times a stage on the metrics, if there are any."""
    if context.metrics is None:
        yield
        return
    with context.metrics.timed(stage):
        yield
