"""Graph producer end to end on the real broker: webhook → raw-mail byte-exact; missed → delta catch-up.

Graph and the identity platform are the local stand-in; Kafka is the session broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from producers.imap.state import KafkaCheckpointReader
from producers.msgraph import GraphIngest, MemorySpool
from producers.publisher import KafkaPublisher
from schemas.codec import Codec, make_codec
from schemas.records import RawMail
from schemas.topics import INGEST_CHECKPOINTS, RAW_MAIL
from streams.api.msgraph import create_msgraph_router
from streams.wiring.topics_admin import ensure_topics
from tests.integration.flow.helpers import TopicReader
from tests.unit.producers.msgraph.conftest import STATE, USER, Sleeps, asgi_http, graph_client, mail, make_config
from tests.unit.producers.msgraph.standin import GraphStandIn
from tests.unit.producers.msgraph.test_msgraph_webhook import WEBHOOK, created, lifecycle

MAILBOX = f"msgraph://{USER}/inbox"
SAMPLES = ("etcd_latency.eml", "log_flood.eml", "jenkins_restart.eml")


@pytest.fixture
def kafka(broker: Any, topic_prefix: str) -> Iterator[tuple[str, str, Codec]]:
    ensure_topics(broker.bootstrap, topic_prefix, [RAW_MAIL, INGEST_CHECKPOINTS])
    yield broker.bootstrap, topic_prefix, make_codec(None)


@asynccontextmanager
async def webhook(standin: GraphStandIn, publisher: KafkaPublisher, reader: KafkaCheckpointReader | None = None,
                  spool: MemorySpool | None = None) -> AsyncIterator[tuple[GraphIngest, httpx.AsyncClient]]:
    config = make_config(mailboxes=[{"user": USER, "tenant": "acme", "client_state": STATE}])
    async with asgi_http(standin) as http:
        ingest = GraphIngest(config, graph_client(standin, Sleeps(), http), publisher, spool or MemorySpool())
        if reader is not None:
            await asyncio.to_thread(ingest.restore, reader)
        app = FastAPI()
        app.include_router(create_msgraph_router(ingest))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=WEBHOOK) as api:
            yield ingest, api


def mail_ids(reader: TopicReader) -> list[str]:
    return [r.message_id for r in reader.records if isinstance(r, RawMail)]


def test_notification_puts_the_mail_bytes_on_raw_mail(kafka: tuple[str, str, Codec]) -> None:
    bootstrap, prefix, codec = kafka
    from tests.unit.producers.msgraph.conftest import sample_mail

    standin = GraphStandIn()
    mimes = {name: sample_mail(name) for name in SAMPLES}
    ids = {name: standin.add_message(USER, mime, f"<{name}>") for name, mime in mimes.items()}
    publisher = KafkaPublisher(bootstrap, codec, prefix=prefix)

    async def go() -> None:
        async with webhook(standin, publisher) as (_, api):
            for name in SAMPLES:
                response = await api.post(WEBHOOK, json=created(ids[name]))
                assert response.status_code == 202

    try:
        asyncio.run(go())
    finally:
        publisher.close_sync()
    reader = TopicReader(bootstrap, codec, RAW_MAIL, prefix)
    try:
        records = reader.wait_for(lambda rs: len(rs) >= 3, timeout=60, what="three raw mails")
        reader.poll(1.0)
    finally:
        reader.close()
    assert len(records) == 3
    by_raw = {r.raw for r in records if isinstance(r, RawMail)}
    assert by_raw == set(mimes.values())  # byte-exact, nothing re-encoded
    assert all(isinstance(r, RawMail) and r.mailbox == MAILBOX and r.source.value == "msgraph" for r in records)


def test_missed_catch_up_publishes_exactly_the_missing_mails_across_a_restart(kafka: tuple[str, str, Codec]) -> None:
    bootstrap, prefix, codec = kafka
    standin = GraphStandIn()
    for i in range(3):
        standin.add_message(USER, mail(f"<old{i}@x>"), f"<old{i}@x>")
    checkpoints = KafkaCheckpointReader(bootstrap, codec, prefix=prefix, timeout_seconds=30)

    async def first_life(publisher: KafkaPublisher) -> str | None:
        async with webhook(standin, publisher) as (ingest, api):
            await ingest.catch_up_all()  # first start: records the folder position, publishes nothing
            new = [standin.add_message(USER, mail(f"<new{i}@x>"), f"<new{i}@x>") for i in range(4)]
            assert (await api.post(WEBHOOK, json=created(new[2]))).status_code == 202
            assert (await api.post(WEBHOOK, json=lifecycle("missed"))).status_code == 202
            return ingest.delta_link(MAILBOX)

    async def second_life(publisher: KafkaPublisher) -> None:
        async with webhook(standin, publisher, reader=checkpoints) as (ingest, api):
            # Down for a while: two mails arrived, and one already published comes back under a new id.
            standin.add_message(USER, mail("<late0@x>"), "<late0@x>")
            standin.add_message(USER, mail("<new1@x>"), "<new1@x>")
            standin.add_message(USER, mail("<late1@x>"), "<late1@x>")
            assert (await api.post(WEBHOOK, json=lifecycle("missed"))).status_code == 202
            assert ingest.delta_link(MAILBOX) != first_link

    publisher = KafkaPublisher(bootstrap, codec, prefix=prefix)
    try:
        first_link = asyncio.run(first_life(publisher))
    finally:
        publisher.close_sync()
    stored = checkpoints.load(MAILBOX)
    assert stored is not None and stored.delta_link == first_link

    publisher = KafkaPublisher(bootstrap, codec, prefix=prefix)
    try:
        asyncio.run(second_life(publisher))
    finally:
        publisher.close_sync()

    reader = TopicReader(bootstrap, codec, RAW_MAIL, prefix)
    try:
        reader.wait_for(lambda rs: len(rs) >= 6, timeout=60, what="six raw mails")
        reader.poll(1.0)
    finally:
        reader.close()
    assert sorted(mail_ids(reader)) == sorted(
        ["<new0@x>", "<new1@x>", "<new2@x>", "<new3@x>", "<late0@x>", "<late1@x>"]
    )
