"""A throttled tenant's Graph mails are not downloaded only to wait: before fetching a mail's MIME the intake asks
the quota whether the tenant could take even a one-alert mail now, and defers the mail unread if not. Each mail is
downloaded once and published once, on the spool drain and on the delta catch-up (which still resumes at its page);
the tenant over its fair share of the intake budget likewise, while the other tenant's mailbox flows. A digest
downloaded, counted and deferred is downloaded again only once its remembered count fits, not every round.

Graph is the local stand-in, which records every request: the MIME downloads (``GET .../messages/{id}/$value``) are
counted where Graph sees them, and by ``rcaflow_msgraph_bodies_fetched_total``. The test mails but the digest (a real
six-alert mail) are not alerts the parser reads: each costs one alert and is taken all the same (docs/tenants.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from producers.intake_budget import BudgetLimit, IntakeBudget
from producers.mail.alert_count import MailCost
from producers.msgraph import GraphIngest, MemorySpool, MsgraphConfig
from producers.msgraph.metrics import BodiesFetchedCollector
from producers.quota import QUOTA_EXCEEDED, IngestQuota, QuotaLimit
from schemas.records import RawMail
from streams.api.msgraph import create_msgraph_router
from tests.unit.producers.msgraph.conftest import (
    STATE,
    USER,
    RecordingPublisher,
    Sleeps,
    asgi_http,
    graph_client,
    mail,
    make_config,
)
from tests.unit.producers.msgraph.standin import GraphStandIn
from tests.unit.producers.msgraph.test_msgraph_digest_cost import DIGEST, DIGEST_ALERTS, with_id
from tests.unit.producers.msgraph.test_msgraph_quota import Clock
from tests.unit.producers.msgraph.test_msgraph_webhook import WEBHOOK, created

OTHER_USER = "alerts@globex.example"
OTHER_STATE = "globex-client-state-0002"
#: One alert a second for the tenant.
PER_MINUTE = 60


def one_tenant() -> MsgraphConfig:
    return make_config(mailboxes=[{"user": USER, "tenant": "acme", "client_state": STATE}])


def downloads(standin: GraphStandIn, user: str = USER) -> int:
    """MIME downloads of ``user``'s mails Graph has answered since the requests were last cleared."""
    return sum(1 for method, path in standin.requests
               if method == "GET" and path.startswith(f"/users/{user}/messages/") and path.endswith("/$value"))


def published_ids(publisher: RecordingPublisher, mailbox: str | None = None) -> list[str]:
    return [r.message_id for r in publisher.on("raw-mail")
            if isinstance(r, RawMail) and (mailbox is None or r.mailbox == mailbox)]


def fetched_metric(registry: CollectorRegistry, ingest: GraphIngest) -> float:
    mailbox = ingest.mailbox(f"msgraph://{USER}/inbox").mailbox_id
    return registry.get_sample_value("rcaflow_msgraph_bodies_fetched_total", {"mailbox": mailbox}) or 0.0


#: One round of the intake: a drain or a catch-up; returns nothing, the test reads what it did.
Round = Callable[[GraphIngest], Awaitable[object]]


def run(standin: GraphStandIn, config: MsgraphConfig, quota: IngestQuota, publisher: RecordingPublisher,
        spool: MemorySpool, prepare: Callable[[GraphIngest, httpx.AsyncClient], Awaitable[object]], one_round: Round,
        advances: list[float], clock: Clock) -> list[tuple[int, int, float]]:
    """``prepare`` (with the webhook, which drains after each notification it accepts), then one round after each
    clock advance. Per step (``prepare`` first): the MIME downloads of USER's mails, the mails of USER published
    in it, and the metric afterwards."""
    rounds: list[tuple[int, int, float]] = []
    registry = CollectorRegistry()
    mailbox = f"msgraph://{USER}/inbox"

    async def step(work: Awaitable[object], ingest: GraphIngest) -> None:
        standin.requests.clear()
        before = len(published_ids(publisher, mailbox))
        await work
        rounds.append((downloads(standin), len(published_ids(publisher, mailbox)) - before,
                       fetched_metric(registry, ingest)))

    async def go() -> None:
        async with asgi_http(standin) as http:
            ingest = GraphIngest(config, graph_client(standin, Sleeps(), http), publisher, spool, quota=quota)
            registry.register(BodiesFetchedCollector(ingest))
            app = FastAPI()
            app.include_router(create_msgraph_router(ingest))
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=WEBHOOK) as api:
                await step(prepare(ingest, api), ingest)
            for advance in advances:
                clock.now += advance
                await step(one_round(ingest), ingest)

    asyncio.run(go())
    return rounds


def test_a_throttled_tenants_notified_mails_are_downloaded_once_each(standin: GraphStandIn) -> None:
    ids = [standin.add_message(USER, mail(f"<n{i}@x>"), f"<n{i}@x>") for i in range(6)]
    clock, publisher, spool = Clock(), RecordingPublisher(), MemorySpool()
    quota = IngestQuota.build({"acme": QuotaLimit(per_minute=PER_MINUTE, burst=2)}, ["acme"], clock=clock)

    async def notify(_ingest: GraphIngest, api: httpx.AsyncClient) -> None:
        for mid in ids:
            assert (await api.post(WEBHOOK, json=created(mid))).status_code == 202

    # Six notifications at once (each followed by a drain) with a full bucket of 2, another drain at once (the
    # bucket empty), then a drain a second (one alert's worth).
    rounds = run(standin, one_tenant(), quota, publisher, spool, notify, GraphIngest.drain,
                 [0.0, 1.0, 1.0, 1.0, 1.0], clock)
    # (MIME downloads, published, metric) per step: nothing downloaded while the tenant can take nothing, so the
    # four notifications after the bucket emptied and the drain at once download nothing. Fetching before asking
    # the quota, it was 6, 1, 2, 2, 2, 1: 14 downloads for 6 mails.
    assert rounds == [(2, 2, 2.0), (0, 0, 2.0), (1, 1, 3.0), (1, 1, 4.0), (1, 1, 5.0), (1, 1, 6.0)]
    assert published_ids(publisher) == [f"<n{i}@x>" for i in range(6)] and spool.pending() == []
    assert publisher.on("dead-letter") == []


def test_a_throttled_catch_up_downloads_each_mail_once_and_resumes_at_its_page(standin: GraphStandIn) -> None:
    clock, publisher = Clock(), RecordingPublisher()
    quota = IngestQuota.build({"acme": QuotaLimit(per_minute=PER_MINUTE, burst=3)}, ["acme"], clock=clock)
    config = one_tenant()
    mailbox_id = config.mailboxes[0].mailbox_id
    pages: list[int] = []

    async def position_then_mails(ingest: GraphIngest, _api: httpx.AsyncClient) -> None:
        assert await ingest.catch_up(ingest.mailbox(mailbox_id)) == 0  # initial_position new: the folder's position
        for n in range(10):  # ten mails on five delta pages
            standin.add_message(USER, mail(f"<m{n}@x>"), f"<m{n}@x>")

    async def catch_up(ingest: GraphIngest) -> None:
        standin.delta_queries.clear()
        await ingest.catch_up(ingest.mailbox(mailbox_id))
        pages.append(len(standin.delta_queries))

    # A catch-up with a full bucket (3), one more at once (empty), then three seconds apart (3 alerts' worth).
    rounds = run(standin, config, quota, publisher, MemorySpool(), position_then_mails, catch_up,
                 [0.0, 0.0, 3.0, 3.0, 3.0], clock)
    assert rounds == [(0, 0, 0.0), (3, 3, 3.0), (0, 0, 3.0), (3, 3, 6.0), (3, 3, 9.0), (1, 1, 10.0)]
    # Fetching before asking the quota, it was 0, 4, 1, 4, 4, 1: 14 downloads for 10 mails.
    # The empty round asked Graph only for the page it stopped on; the rounds resume at their page (1+1 pages,
    # then 1, 3, 2, 1), and the last one moved the checkpoint.
    assert pages == [2, 1, 3, 2, 1]
    assert sorted(published_ids(publisher)) == sorted(f"<m{n}@x>" for n in range(10))  # each once, none skipped
    assert ingest_checkpoints(publisher) == 2 and publisher.on("dead-letter") == []


def ingest_checkpoints(publisher: RecordingPublisher) -> int:
    return len(publisher.on("ingest-checkpoints"))


def test_a_tenant_over_its_fair_share_downloads_only_what_it_publishes(standin: GraphStandIn) -> None:
    stormy = [standin.add_message(USER, mail(f"<s{i}@acme>"), f"<s{i}@acme>") for i in range(8)]
    quiet = [standin.add_message(OTHER_USER, mail(f"<c{i}@globex>"), f"<c{i}@globex>") for i in range(2)]
    clock, publisher, spool = Clock(), RecordingPublisher(), MemorySpool()
    # No tenant quota: only the intake budget (60/min, 4 at once), shared by fair share.
    quota = IngestQuota.build({}, ["acme", "globex"], clock=clock,
                              budget=IntakeBudget(BudgetLimit(per_minute=60, burst=4)))
    config = make_config(mailboxes=[{"user": USER, "tenant": "acme", "client_state": STATE},
                                    {"user": OTHER_USER, "tenant": "globex", "client_state": OTHER_STATE}])
    other_downloads: list[int] = []

    async def notify(_ingest: GraphIngest, api: httpx.AsyncClient) -> None:
        for mid in stormy:
            assert (await api.post(WEBHOOK, json=created(mid))).status_code == 202
        for mid in quiet:
            assert (await api.post(WEBHOOK, json=created(mid, state=OTHER_STATE))).status_code == 202
        other_downloads.append(downloads(standin, OTHER_USER))

    async def drain(ingest: GraphIngest) -> None:
        await ingest.drain()
        other_downloads.append(downloads(standin, OTHER_USER))

    rounds = run(standin, config, quota, publisher, spool, notify, drain, [0.0, 4.0, 4.0], clock)
    # acme's downloads are its published mails, drain by drain: none for a mail that waits for its share.
    assert [d for d, _, _ in rounds] == [p for _, p, _ in rounds], rounds
    assert rounds[1][:2] == (0, 0)  # a drain at once after the storm: acme is over its share, nothing downloaded
    assert rounds[-1][2] == 8.0 and sum(d for d, _, _ in rounds) == 8  # fetching before asking: 15
    assert sorted(published_ids(publisher, f"msgraph://{USER}/inbox")) == sorted(f"<s{i}@acme>" for i in range(8))
    # globex's two mails went in as they were notified (its share was untouched), each downloaded once.
    assert other_downloads[0] == 2 and sum(other_downloads) == 2
    assert published_ids(publisher, f"msgraph://{OTHER_USER}/inbox") == ["<c0@globex>", "<c1@globex>"]
    assert spool.pending() == [] and publisher.on("dead-letter") == []


def digest_rounds(standin: GraphStandIn, one_round: str) -> None:
    """A one-alert mail, then a digest of six, for a tenant with a burst of 4 and one alert a second: the digest is
    downloaded, counted and deferred (3 alerts in the bucket, 4 needed), then rounds come every quarter second (a
    drain runs on every notification of any mailbox; a catch-up on every round that finds the mailbox due)."""
    single = standin.add_message(USER, mail("<s0@x>"), "<s0@x>")
    digest = standin.add_message(USER, with_id(DIGEST, "<digest@x>"), "<digest@x>")
    clock, publisher, spool, registry = Clock(), RecordingPublisher(), MemorySpool(), CollectorRegistry()
    quota = IngestQuota.build({"acme": QuotaLimit(per_minute=PER_MINUTE, burst=4)}, ["acme"], clock=clock,
                              registry=registry)
    config = make_config(mailboxes=[{"user": USER, "tenant": "acme", "client_state": STATE,
                                     "initial_position": "all"}])
    mailbox_id = config.mailboxes[0].mailbox_id
    digest_downloads: list[int] = []

    def count_digest_downloads(rounds: int) -> None:
        digest_downloads.append(standin.requests.count(("GET", f"/users/{USER}/messages/{digest}/$value")))
        assert len(digest_downloads) == rounds

    async def notify(ingest: GraphIngest, api: httpx.AsyncClient) -> None:
        if one_round == "drain":
            for mid in (single, digest):
                assert (await api.post(WEBHOOK, json=created(mid))).status_code == 202
        else:
            assert await ingest.catch_up(ingest.mailbox(mailbox_id)) == 1
        count_digest_downloads(1)

    async def round_(ingest: GraphIngest) -> None:
        if one_round == "drain":
            await ingest.drain()
        else:
            await ingest.catch_up(ingest.mailbox(mailbox_id))
        count_digest_downloads(len(digest_downloads) + 1)

    rounds = run(standin, config, quota, publisher, spool, notify, round_, [0.25, 0.25, 0.25, 0.25], clock)
    # (MIME downloads, published, metric) per step: the single mail and the digest are downloaded, the single
    # published; the digest's six alerts do not fit until a second later, and the rounds meanwhile do not download
    # it again (before, each did: 1, 1, 1, 1, 6 downloads in all). Then it is downloaded once more and published.
    assert rounds == [(2, 1, 2.0), (0, 0, 2.0), (0, 0, 2.0), (0, 0, 2.0), (1, 1, 3.0)]
    assert digest_downloads == [1, 0, 0, 0, 1]
    raw = [r.raw for r in publisher.on("raw-mail") if isinstance(r, RawMail) and r.message_id == "<digest@x>"]
    assert raw == [with_id(DIGEST, "<digest@x>")] and MailCost()(raw[0]) == DIGEST_ALERTS  # once, all its alerts
    assert published_ids(publisher) == ["<s0@x>", "<digest@x>"] and spool.pending() == []
    assert publisher.on("dead-letter") == []
    # Each round the digest waited counts its six deferred alerts, as when it was downloaded every round.
    assert registry.get_sample_value("rcaflow_ingest_throttled_total", {
        "tenant": "acme", "source": "msgraph", "reason": QUOTA_EXCEEDED}) == 4 * DIGEST_ALERTS


def test_a_deferred_digest_is_downloaded_again_only_when_it_fits_on_the_drain(standin: GraphStandIn) -> None:
    digest_rounds(standin, "drain")


def test_a_deferred_digest_is_downloaded_again_only_when_it_fits_on_the_catch_up(standin: GraphStandIn) -> None:
    digest_rounds(standin, "catch_up")
