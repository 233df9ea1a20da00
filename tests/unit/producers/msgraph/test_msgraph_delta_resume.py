"""A delta catch-up its tenant's quota interrupts goes on, in the next round, from the delta page where it stopped,
instead of paging from the checkpoint again; a page link Graph no longer serves (410 SyncStateNotFound), or a new
process, pages from the checkpoint as before. Either way every mail is published once and none is skipped.

Graph is the local stand-in (delta paging of two messages a page with ``$skiptoken`` nextLinks, 410 for expired
sync state); the page requests are counted where Graph would see them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from prometheus_client import CollectorRegistry

from producers.msgraph import GraphIngest, MemorySpool
from producers.quota import IngestQuota, QuotaLimit
from schemas.records import RawMail
from tests.unit.producers.msgraph.conftest import (
    STATE,
    USER,
    MemoryCheckpoints,
    RecordingPublisher,
    Sleeps,
    asgi_http,
    graph_client,
    mail,
    make_config,
)
from tests.unit.producers.msgraph.standin import GraphStandIn
from tests.unit.producers.msgraph.test_msgraph_quota import Clock

MAILS = 10
#: One alert a second, three at once: a catch-up of ten one-alert mails takes four rounds, three seconds apart.
LIMIT = QuotaLimit(per_minute=60, burst=3)
ROUND_S = 3.0


def page_of(standin: GraphStandIn, query: dict[str, str]) -> int | str:
    """Which page a delta request asked for: the checkpoint's deltaLink (page 1 of a catch-up) or page n."""
    if "$skiptoken" in query:
        return int(query["$skiptoken"].split(".")[1]) // standin.page_size + 1
    return "checkpoint" if "$deltatoken" in query else "start"


#: Called before each round after the first with the rounds done, the ingest and a factory of new ones (a restart).
Between = Callable[[int, GraphIngest, Callable[[], GraphIngest]], GraphIngest]


def run_rounds(standin: GraphStandIn, publisher: RecordingPublisher, quota: IngestQuota, clock: Clock, *,
               between: Between | None = None, old_mail: bool = False) -> list[tuple[list[int | str], int]]:
    """A checkpoint on the empty folder, then ten mails (and, ``old_mail``, an eleventh received three days ago),
    then catch-ups ROUND_S apart until the deltaLink moves, then one more with two new mails: per round, the delta
    pages it requested and the mails it published."""
    rounds: list[tuple[list[int | str], int]] = []

    async def go() -> None:
        config = make_config(mailboxes=[{"user": USER, "tenant": "acme", "client_state": STATE}])
        async with asgi_http(standin) as http:
            def new_ingest() -> GraphIngest:
                return GraphIngest(config, graph_client(standin, Sleeps(), http), publisher, MemorySpool(),
                                   quota=quota)

            ingest = new_ingest()
            mailbox = ingest.mailbox(config.mailboxes[0].mailbox_id)
            assert await ingest.catch_up(mailbox) == 0  # initial_position new: records the folder's position
            checkpoint = ingest.delta_link(mailbox.mailbox_id)
            assert checkpoint is not None
            for n in range(MAILS):
                standin.add_message(USER, mail(f"<m{n}@x>"), f"<m{n}@x>")
            if old_mail:
                old = standin.add_message(USER, mail("<old@x>"), "<old@x>")
                standin.messages[old].received -= timedelta(days=3)
            while ingest.delta_link(mailbox.mailbox_id) == checkpoint:
                assert len(rounds) < 10, rounds
                if between is not None and rounds:
                    ingest = between(len(rounds), ingest, new_ingest)
                standin.delta_queries.clear()
                published = await ingest.catch_up(mailbox)
                rounds.append(([page_of(standin, q) for q in standin.delta_queries], published))
                clock.now += ROUND_S
            # The next catch-up, with two new mails, pages from the new checkpoint (nothing of the finished walk).
            for n in range(MAILS, MAILS + 2):
                standin.add_message(USER, mail(f"<m{n}@x>"), f"<m{n}@x>")
            standin.delta_queries.clear()
            published = await ingest.catch_up(mailbox)
            rounds.append(([page_of(standin, q) for q in standin.delta_queries], published))

    asyncio.run(go())
    return rounds


def assert_each_mail_once(publisher: RecordingPublisher) -> None:
    published = [r.message_id for r in publisher.on("raw-mail") if isinstance(r, RawMail)]
    assert sorted(published) == sorted(f"<m{n}@x>" for n in range(MAILS + 2))  # each once, none skipped
    assert publisher.on("dead-letter") == []


def quota_on(clock: Clock) -> IngestQuota:
    return IngestQuota.build({"acme": LIMIT}, ["acme"], clock=clock, registry=CollectorRegistry())


def test_the_next_round_requests_only_the_pages_from_where_the_last_one_stopped(standin: GraphStandIn) -> None:
    clock, publisher = Clock(), RecordingPublisher()
    rounds = run_rounds(standin, publisher, quota_on(clock), clock)
    # Ten mails on five pages. Each round takes three mails and stops at the fourth; the next round asks again
    # for the page holding that mail (its earlier mails were published: skipped, not fetched) and the rest.
    assert rounds == [(["checkpoint", 2], 3), ([2, 3, 4], 3), ([4, 5], 3), ([5], 1), (["checkpoint"], 2)]
    # The interrupted catch-up asked for 8 pages; paging from the checkpoint each round, it was 2 + 4 + 5 + 5 = 16.
    assert sum(len(pages) for pages, _ in rounds[:4]) == 8
    assert_each_mail_once(publisher)


def test_a_page_link_graph_no_longer_serves_falls_back_to_the_checkpoint(standin: GraphStandIn) -> None:
    clock, publisher = Clock(), RecordingPublisher()

    def expire_after_first(done: int, ingest: GraphIngest, _new: Callable[[], GraphIngest]) -> GraphIngest:
        if done == 1:
            standin.expire_skip_tokens()  # the nextLink the first round stopped on: 410 SyncStateNotFound
        return ingest

    rounds = run_rounds(standin, publisher, quota_on(clock), clock, between=expire_after_first)
    # Round 2 asks for page 2 where round 1 stopped, is refused, and pages from the checkpoint like before.
    assert rounds == [(["checkpoint", 2], 3), ([2, "checkpoint", 2, 3, 4], 3), ([4, 5], 3), ([5], 1),
                      (["checkpoint"], 2)]
    assert_each_mail_once(publisher)


def test_a_new_process_pages_from_the_checkpoint(standin: GraphStandIn) -> None:
    clock, publisher = Clock(), RecordingPublisher()

    def restart_after_first(done: int, ingest: GraphIngest, new: Callable[[], GraphIngest]) -> GraphIngest:
        if done != 1:
            return ingest
        # What a restarted process knows: the checkpoint and the Message-IDs on raw-mail, not where a round stopped.
        fresh = new()
        fresh.restore(MemoryCheckpoints(publisher))
        return fresh

    rounds = run_rounds(standin, publisher, quota_on(clock), clock, between=restart_after_first)
    assert rounds == [(["checkpoint", 2], 3), (["checkpoint", 2, 3, 4], 3), ([4, 5], 3), ([5], 1),
                      (["checkpoint"], 2)]
    assert_each_mail_once(publisher)


def test_a_resync_after_an_expired_checkpoint_resumes_with_its_cut_off(standin: GraphStandIn) -> None:
    """The checkpoint's own delta token has expired: the walk restarts the sync, taking only mails received since
    the checkpoint minus a day, and, interrupted, goes on from its own page with the same cut-off."""
    clock, publisher = Clock(), RecordingPublisher()
    standin.expired_delta_tokens.add("0")  # the checkpoint of the empty folder
    rounds = run_rounds(standin, publisher, quota_on(clock), clock, old_mail=True)
    # Eleven mails on six pages; the eleventh, received three days ago, is before the cut-off and not published.
    assert rounds == [(["checkpoint", "start", 2], 3), ([2, 3, 4], 3), ([4, 5], 3), ([5, 6], 1),
                      (["checkpoint"], 2)]
    assert_each_mail_once(publisher)
