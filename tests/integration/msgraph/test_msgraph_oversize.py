"""A Graph mail bigger than raw-mail can hold (11-25 MiB: Graph has it, we cannot publish it) on the real broker.

It is dead-lettered once with its size and Message-ID, the notification is done with, the next drain
does not download it again, and a delta catch-up moves the folder checkpoint past it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from producers.imap.state import KafkaCheckpointReader
from producers.msgraph import MemorySpool
from producers.publisher import KafkaPublisher
from schemas.codec import Codec, make_codec
from schemas.limits import MAX_MAIL_BYTES, MiB
from schemas.records import DeadLetter
from schemas.topics import DEAD_LETTER, INGEST_CHECKPOINTS, RAW_MAIL
from streams.wiring.topics_admin import ensure_topics
from tests.integration.flow.helpers import TopicReader
from tests.integration.msgraph.test_msgraph_kafka import MAILBOX, mail_ids, webhook
from tests.unit.producers.msgraph.conftest import USER, mail
from tests.unit.producers.msgraph.standin import GraphStandIn
from tests.unit.producers.msgraph.test_msgraph_webhook import WEBHOOK, created, lifecycle

BIG = 12 * MiB  # above raw-mail's record limit, below Graph's 25 MiB


@pytest.fixture
def kafka(broker: Any, topic_prefix: str) -> Iterator[tuple[str, str, Codec]]:
    ensure_topics(broker.bootstrap, topic_prefix, [RAW_MAIL, INGEST_CHECKPOINTS, DEAD_LETTER])
    yield broker.bootstrap, topic_prefix, make_codec(None)


def big_mail(message_id: str) -> bytes:
    return mail(message_id) + b"x" * BIG


def _fetches(standin: GraphStandIn, graph_id: str) -> int:
    return sum(1 for method, path in standin.requests if method == "GET" and path.endswith(f"/{graph_id}/$value"))


def _letters(bootstrap: str, codec: Codec, prefix: str, expected: int) -> list[DeadLetter]:
    reader = TopicReader(bootstrap, codec, DEAD_LETTER, prefix)
    try:
        reader.wait_for(lambda rs: len(rs) >= expected, timeout=60, what=f"{expected} dead letters")
        reader.poll(1.0)
    finally:
        reader.close()
    return [r for r in reader.records if isinstance(r, DeadLetter)]


def test_an_oversize_mail_from_a_notification_is_dead_lettered_once(kafka: tuple[str, str, Codec]) -> None:
    bootstrap, prefix, codec = kafka
    standin = GraphStandIn()
    big = standin.add_message(USER, big_mail("<big@x>"), "<big@x>")
    small = standin.add_message(USER, mail("<small@x>"), "<small@x>")
    publisher = KafkaPublisher(bootstrap, codec, prefix=prefix)
    spool = MemorySpool()

    async def go() -> None:
        async with webhook(standin, publisher, spool=spool) as (ingest, api):
            for graph_id in (big, small):
                assert (await api.post(WEBHOOK, json=created(graph_id))).status_code == 202
            await ingest.drain()
            await ingest.drain()  # nothing left to do: the big mail is not fetched again
            assert spool.pending() == []

    try:
        asyncio.run(go())
    finally:
        publisher.close_sync()
    assert _fetches(standin, big) == 1
    [letter] = _letters(bootstrap, codec, prefix, 1)
    assert letter.stage == "msgraph" and letter.tenant == "acme" and letter.truncated
    assert letter.payload_size == len(big_mail("<big@x>"))
    assert f"{letter.payload_size} bytes, above the {MAX_MAIL_BYTES}-byte mail limit" in letter.reason
    assert "Message-ID <big@x>" in letter.reason and big[:20] in letter.reason
    assert letter.payload.startswith(b"Message-ID: <big@x>")
    reader = TopicReader(bootstrap, codec, RAW_MAIL, prefix)
    try:
        reader.wait_for(lambda rs: len(rs) >= 1, timeout=60, what="the small mail")
        reader.poll(1.0)
    finally:
        reader.close()
    assert mail_ids(reader) == ["<small@x>"]


def test_a_catch_up_moves_the_checkpoint_past_an_oversize_mail(kafka: tuple[str, str, Codec]) -> None:
    bootstrap, prefix, codec = kafka
    standin = GraphStandIn()
    checkpoints = KafkaCheckpointReader(bootstrap, codec, prefix=prefix, timeout_seconds=30)
    publisher = KafkaPublisher(bootstrap, codec, prefix=prefix)

    async def go() -> tuple[str | None, str | None]:
        async with webhook(standin, publisher) as (ingest, api):
            await ingest.catch_up_all()  # first start: records the folder position
            before = ingest.delta_link(MAILBOX)
            standin.add_message(USER, mail("<a@x>"), "<a@x>")
            standin.add_message(USER, big_mail("<big@x>"), "<big@x>")
            standin.add_message(USER, mail("<b@x>"), "<b@x>")
            assert (await api.post(WEBHOOK, json=lifecycle("missed"))).status_code == 202
            await ingest.drain()
            after = ingest.delta_link(MAILBOX)
            assert (await api.post(WEBHOOK, json=lifecycle("missed"))).status_code == 202  # nothing new
            await ingest.drain()
            return before, after

    try:
        before, after = asyncio.run(go())
    finally:
        publisher.close_sync()
    assert after is not None and after != before
    stored = checkpoints.load(MAILBOX)
    assert stored is not None and stored.delta_link == after
    [letter] = _letters(bootstrap, codec, prefix, 1)
    assert "Message-ID <big@x>" in letter.reason
    reader = TopicReader(bootstrap, codec, RAW_MAIL, prefix)
    try:
        reader.wait_for(lambda rs: len(rs) >= 2, timeout=60, what="the two small mails")
        reader.poll(1.0)
    finally:
        reader.close()
    assert sorted(mail_ids(reader)) == ["<a@x>", "<b@x>"]
