"""A Graph mailbox storming past its tenant's fair share of the intake budget: Graph gets its 202 for every
notification, the mails over the share wait (in the spool, or unread by the delta catch-up whose deltaLink stays
before them, across a restart) and are published later, each once, never dead-lettered; the throttled counter
says why; the other tenant's mailbox keeps flowing meanwhile.

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
from prometheus_client import CollectorRegistry

from producers.imap.state import KafkaCheckpointReader
from producers.intake_budget import BudgetLimit, IntakeBudget
from producers.msgraph import GraphIngest, MemorySpool, MsgraphConfig
from producers.publisher import KafkaPublisher
from producers.quota import OVER_FAIR_SHARE, IngestQuota
from schemas.codec import Codec, make_codec
from schemas.records import DeadLetter, RawMail
from schemas.topics import DEAD_LETTER, INGEST_CHECKPOINTS, RAW_MAIL
from streams.api.msgraph import create_msgraph_router
from streams.wiring.topics_admin import ensure_topics
from tests.integration.flow.helpers import TopicReader
from tests.unit.producers.msgraph.conftest import STATE, USER, Sleeps, asgi_http, graph_client, mail, make_config
from tests.unit.producers.msgraph.standin import GraphStandIn
from tests.unit.producers.msgraph.test_msgraph_webhook import WEBHOOK, created, lifecycle

pytestmark = pytest.mark.integration

STORMY = f"msgraph://{USER}/inbox"
OTHER_USER = "alerts@globex.example"
OTHER_STATE = "globex-client-state-0002"
QUIET = f"msgraph://{OTHER_USER}/inbox"
#: 60 mails a minute, 4 at once: a window of 4 s whose budget of 4 the active tenants share.
BUDGET = BudgetLimit(per_minute=60, burst=4)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def kafka(broker: Any, topic_prefix: str) -> Iterator[tuple[str, str, Codec]]:
    ensure_topics(broker.bootstrap, topic_prefix, [RAW_MAIL, DEAD_LETTER, INGEST_CHECKPOINTS])
    yield broker.bootstrap, topic_prefix, make_codec(None)


def two_tenants() -> MsgraphConfig:
    return make_config(mailboxes=[{"user": USER, "tenant": "acme", "client_state": STATE},
                                  {"user": OTHER_USER, "tenant": "globex", "client_state": OTHER_STATE}])


def budget_quota(clock: Clock, registry: CollectorRegistry) -> IngestQuota:
    """No per-tenant quota: only the intake budget, shared by fair share, as `ingest.budget_*` builds it."""
    return IngestQuota.build({}, ["acme", "globex"], clock=clock, registry=registry, budget=IntakeBudget(BUDGET))


@asynccontextmanager
async def graph_api(
    standin: GraphStandIn, publisher: KafkaPublisher, quota: IngestQuota, spool: MemorySpool,
    reader: KafkaCheckpointReader | None = None,
) -> AsyncIterator[tuple[GraphIngest, httpx.AsyncClient]]:
    """The API's Graph part: the ingest (restored from the broker when ``reader``) and its webhook."""
    async with asgi_http(standin) as http:
        ingest = GraphIngest(two_tenants(), graph_client(standin, Sleeps(), http), publisher, spool, quota=quota)
        if reader is not None:
            await asyncio.to_thread(ingest.restore, reader)
        app = FastAPI()
        app.include_router(create_msgraph_router(ingest))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=WEBHOOK) as api:
            yield ingest, api


def raw_mail_ids(bootstrap: str, codec: Codec, prefix: str, count: int) -> dict[str, list[str]]:
    """Message-IDs on raw-mail by mailbox, once ``count`` are there (and a second for any stray one)."""
    reader = TopicReader(bootstrap, codec, RAW_MAIL, prefix)
    try:
        reader.wait_for(lambda rs: len(rs) >= count, timeout=60, what=f"{count} raw mails")
        reader.poll(1.0)
    finally:
        reader.close()
    by_mailbox: dict[str, list[str]] = {}
    for record in reader.records:
        assert isinstance(record, RawMail)
        by_mailbox.setdefault(record.mailbox, []).append(record.message_id)
    return by_mailbox


def dead_letters(bootstrap: str, codec: Codec, prefix: str) -> list[DeadLetter]:
    reader = TopicReader(bootstrap, codec, DEAD_LETTER, prefix)
    try:
        reader.poll(1.0)
    finally:
        reader.close()
    return [r for r in reader.records if isinstance(r, DeadLetter)]


def throttled(registry: CollectorRegistry, tenant: str) -> float:
    return registry.get_sample_value("rcaflow_ingest_throttled_total", {
        "tenant": tenant, "source": "msgraph", "reason": OVER_FAIR_SHARE}) or 0.0


def test_notified_mails_over_the_share_wait_in_the_spool_while_the_other_mailbox_flows(
        kafka: tuple[str, str, Codec]) -> None:
    bootstrap, prefix, codec = kafka
    standin = GraphStandIn()
    stormy = [standin.add_message(USER, mail(f"<storm{i}@acme>"), f"<storm{i}@acme>") for i in range(8)]
    quiet = [standin.add_message(OTHER_USER, mail(f"<calm{i}@globex>"), f"<calm{i}@globex>") for i in range(2)]
    clock, registry, spool = Clock(), CollectorRegistry(), MemorySpool()
    quota = budget_quota(clock, registry)
    publisher = KafkaPublisher(bootstrap, codec, prefix=prefix)

    def waiting() -> dict[str, int]:
        counts: dict[str, int] = {}
        for _key, entry in spool.pending():
            counts[entry["mailbox"]] = counts.get(entry["mailbox"], 0) + 1
        return counts

    async def go() -> dict[str, int]:
        async with graph_api(standin, publisher, quota, spool) as (ingest, api):
            # Graph gets its answer at once for every notification, whatever the budget says: a subscription
            # whose notifications fail is throttled, then dropped by Graph.
            for message_id in stormy:
                assert (await api.post(WEBHOOK, json=created(message_id))).status_code == 202
            for message_id in quiet:
                assert (await api.post(WEBHOOK, json=created(message_id, state=OTHER_STATE))).status_code == 202
            during = waiting()
            for _ in range(30):  # later drains, each after the Retry-After the budget gave (the clock is ours)
                if not spool.pending():
                    break
                clock.now += 4.0
                await ingest.drain()
            return during

    try:
        during_storm = asyncio.run(go())
    finally:
        publisher.close_sync()
    # While acme was over its share, its last 4 mails waited in the spool; globex's 2 did not wait at all.
    assert during_storm == {STORMY: 4}
    assert throttled(registry, "acme") >= 4 and throttled(registry, "globex") == 0
    published = raw_mail_ids(bootstrap, codec, prefix, 10)
    assert sorted(published[STORMY]) == sorted(f"<storm{i}@acme>" for i in range(8))  # each once, none dropped
    assert sorted(published[QUIET]) == ["<calm0@globex>", "<calm1@globex>"]
    assert spool.pending() == [] and dead_letters(bootstrap, codec, prefix) == []


def test_a_catch_up_over_the_share_keeps_its_delta_link_and_resumes_after_a_restart(
        kafka: tuple[str, str, Codec]) -> None:
    bootstrap, prefix, codec = kafka
    standin = GraphStandIn()
    checkpoints = KafkaCheckpointReader(bootstrap, codec, prefix=prefix, timeout_seconds=30)
    registry = CollectorRegistry()

    async def first_life(publisher: KafkaPublisher) -> str | None:
        async with graph_api(standin, publisher, budget_quota(Clock(), registry), MemorySpool()) as (ingest, api):
            await ingest.catch_up_all()  # first start: records each folder's position, publishes nothing
            start_link = ingest.delta_link(STORMY)
            # While notifications were lost, acme's mailbox stormed and globex's got two mails.
            for i in range(12):
                standin.add_message(USER, mail(f"<storm{i}@acme>"), f"<storm{i}@acme>")
            for i in range(2):
                standin.add_message(OTHER_USER, mail(f"<calm{i}@globex>"), f"<calm{i}@globex>")
            assert (await api.post(WEBHOOK, json=lifecycle("missed"))).status_code == 202
            assert ingest.delta_link(STORMY) == start_link  # stopped before the mails it may not take
            missed_globex = lifecycle("missed")
            missed_globex["value"][0]["clientState"] = OTHER_STATE
            assert (await api.post(WEBHOOK, json=missed_globex)).status_code == 202
            assert ingest.delta_link(QUIET) is not None
            return start_link

    publisher = KafkaPublisher(bootstrap, codec, prefix=prefix)
    try:
        start_link = asyncio.run(first_life(publisher))
    finally:
        publisher.close_sync()
    first = raw_mail_ids(bootstrap, codec, prefix, 6)
    assert len(first[STORMY]) == 4 and sorted(first[QUIET]) == ["<calm0@globex>", "<calm1@globex>"]
    assert throttled(registry, "acme") >= 1 and throttled(registry, "globex") == 0
    stored = checkpoints.load(STORMY)
    assert stored is not None and stored.delta_link == start_link  # what a restarted process starts from

    # The next process (a fresh budget) starts with a catch-up, as the API does, and its maintenance rounds take
    # the rest, each round once the budget's Retry-After has passed instead of the 60 s interval.
    clock, registry = Clock(), CollectorRegistry()
    waits: list[float] = []

    async def second_life(publisher: KafkaPublisher) -> str | None:
        async with graph_api(standin, publisher, budget_quota(clock, registry), MemorySpool(),
                             reader=checkpoints) as (ingest, _api):
            assert await ingest.catch_up_all() == 4
            stop = asyncio.Event()

            async def wait(seconds: float) -> None:
                waits.append(seconds)
                if seconds == 60.0 or len(waits) > 20:  # a round that deferred nothing: caught up
                    stop.set()
                clock.now += seconds

            await ingest.maintain(stop, 60.0, ensure_subscriptions=False, initial_delay_seconds=0.0, wait=wait)
            return ingest.delta_link(STORMY)

    publisher = KafkaPublisher(bootstrap, codec, prefix=prefix)
    try:
        end_link = asyncio.run(second_life(publisher))
    finally:
        publisher.close_sync()
    assert waits[0] == 0.0 and waits[-1] == 60.0 and all(1.0 <= w < 60.0 for w in waits[1:-1]) and len(waits) > 2
    published = raw_mail_ids(bootstrap, codec, prefix, 14)
    assert sorted(published[STORMY]) == sorted(f"<storm{i}@acme>" for i in range(12))  # each once, none dropped
    assert sorted(published[QUIET]) == ["<calm0@globex>", "<calm1@globex>"]
    assert end_link is not None and end_link != start_link
    stored = checkpoints.load(STORMY)
    assert stored is not None and stored.delta_link == end_link
    assert throttled(registry, "acme") >= 1 and dead_letters(bootstrap, codec, prefix) == []
