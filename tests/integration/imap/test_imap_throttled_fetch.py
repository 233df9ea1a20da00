"""A tenant over its ingest quota costs the IMAP server no downloads for the mails that wait: the producer asks the
quota before fetching a body (a tenant that cannot take even a one-alert mail is deferred with its mails unread and
undownloaded) and fetches no more bodies at once than the tenant could take; a digest downloaded and deferred
once is not downloaded again (its body kept for the next round; when it is not kept, not before its remembered
count fits). Counted twice: by the producer's
``rcaflow_imap_bodies_fetched_total`` and by dovecot itself (the ``body_count`` of its logout lines). Each mail is
still taken once, in order, the checkpoint before the ones that wait. Real dovecot, real broker."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

import pytest
from prometheus_client import CollectorRegistry

from producers.imap.metrics import ImapStatsCollector
from producers.imap.producer import ImapProducer
from producers.imap.state import KafkaCheckpointReader
from producers.intake_budget import BudgetLimit, IntakeBudget
from producers.mail.alert_count import MailCost
from producers.publisher import KafkaPublisher
from producers.quota import OVER_FAIR_SHARE, QUOTA_EXCEEDED, IngestQuota, QuotaLimit
from schemas.records import DeadLetter, RawMail
from tests.integration.imap.imap_helpers import (
    Clock,
    Dovecot,
    KafkaForImap,
    imap_config,
    make_mail,
    wait_until_the_topics_answer,
)
from tests.integration.imap.test_imap_digest_cost import DIGEST, DIGEST_ALERTS, copy_of

pytestmark = pytest.mark.integration

FOLDER = "INBOX/Storm"
#: One alert a second, two at once.
LIMIT = QuotaLimit(per_minute=60, burst=2)


def server_body_fetches(dovecot: Dovecot) -> int:
    """Bodies dovecot sent, summed over the sessions that logged out (its default ``imap_logout_format``)."""
    log = (dovecot.base / "dovecot.log").read_text(errors="replace")
    return sum(int(n) for n in re.findall(r"\bbody_count=(\d+)", log))


def wait_for_server_count(dovecot: Dovecot, expected: int) -> int:
    """dovecot writes a session's counts when it logs out, which may land a moment after the client closed."""
    deadline = time.monotonic() + 30
    while (count := server_body_fetches(dovecot)) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return count


class Pauses:
    """The producer's injected sleep: notes what the user could see at each quota pause (acme's bodies fetched,
    acme's mails on raw-mail, the folder's unread mails), then lets the (fake) quota clock run for the wait."""

    def __init__(self, clock: Clock, registry: CollectorRegistry, mailbox: str, kafka: KafkaForImap,
                 dovecot: Dovecot) -> None:
        self.clock, self.registry, self.mailbox = clock, registry, mailbox
        self.kafka, self.dovecot = kafka, dovecot
        self.seen: list[dict[str, object]] = []

    def bodies_fetched(self) -> float:
        return self.registry.get_sample_value("rcaflow_imap_bodies_fetched_total", {"mailbox": self.mailbox}) or 0.0

    async def __call__(self, seconds: float) -> None:
        self.seen.append({
            "bodies_fetched": self.bodies_fetched(),
            "published": sum(r.tenant == "acme" for _k, r in
                             await asyncio.to_thread(self.kafka.read, self.kafka.raw_mail, RawMail)),
            "unread": await asyncio.to_thread(self.dovecot.uids, FOLDER, "UNSEEN"),
        })
        self.clock.now += seconds


def make_producer(dovecot: Dovecot, kafka: KafkaForImap, publisher: KafkaPublisher, quota: IngestQuota,
                  sleep: Callable[[float], Awaitable[None]], registry: CollectorRegistry, *,
                  once: bool, **overrides: object) -> ImapProducer:
    config = imap_config(dovecot, folder=FOLDER, tenant="acme", initial_position="all", after_ingest="seen",
                         **overrides)
    reader = KafkaCheckpointReader(kafka.bootstrap, kafka.codec, prefix=kafka.prefix)
    producer = ImapProducer(config, publisher, reader, topic_prefix=kafka.prefix, once=once, sleep=sleep,
                            quota=quota)
    registry.register(ImapStatsCollector(producer, config.mailbox_id))
    return producer


def run_once(dovecot: Dovecot, kafka: KafkaForImap, quota: IngestQuota, pauses: Pauses, registry: CollectorRegistry,
             **overrides: object) -> None:
    """One ``ingest imap --once`` pass of the folder under ``quota``; ``pauses`` answers (and records) its waits."""
    async def scenario() -> None:
        publisher = KafkaPublisher(kafka.bootstrap, kafka.codec, prefix=kafka.prefix)
        try:
            producer = make_producer(dovecot, kafka, publisher, quota, pauses, registry, once=True, **overrides)
            await asyncio.wait_for(producer.run(), 120)
        finally:
            await publisher.close()

    asyncio.run(scenario())


def assert_each_mail_once(kafka: KafkaForImap, dovecot: Dovecot, n: int) -> None:
    subjects = [r.subject or "" for _k, r in kafka.read(kafka.raw_mail, RawMail)]
    assert sorted(subjects) == sorted(f"Control Cluster Details #{i}" for i in range(n))
    assert dovecot.uids(FOLDER, "UNSEEN") == [] and kafka.read(kafka.dead_letter, DeadLetter) == []


def test_a_throttled_tenants_waiting_mails_are_not_downloaded(dovecot: Dovecot, kafka: KafkaForImap) -> None:
    dovecot.create_folder(FOLDER)
    dovecot.append_many([make_mail(n) for n in range(6)], FOLDER)
    wait_until_the_topics_answer(kafka)
    clock, registry = Clock(), CollectorRegistry()
    quota = IngestQuota.build({"acme": LIMIT}, ["acme"], clock=clock, registry=registry)
    mailbox = imap_config(dovecot, folder=FOLDER).mailbox_id
    pauses = Pauses(clock, registry, mailbox, kafka, dovecot)

    run_once(dovecot, kafka, quota, pauses, registry)
    # The burst of 2 went in; mails 3..6 wait unread and were not downloaded. Each later round downloads the one
    # mail the refilled bucket takes, and none of those that wait.
    assert pauses.seen[0] == {"bodies_fetched": 2, "published": 2, "unread": [3, 4, 5, 6]}
    assert [p["bodies_fetched"] for p in pauses.seen] == [p["published"] for p in pauses.seen] == [2, 3, 4, 5]
    assert pauses.bodies_fetched() == 6
    assert wait_for_server_count(dovecot, 6) == 6  # dovecot's own count: each body sent once
    assert_each_mail_once(kafka, dovecot, 6)
    assert registry.get_sample_value("rcaflow_ingest_throttled_total", {
        "tenant": "acme", "source": "imap", "reason": QUOTA_EXCEEDED}) == 4  # one per deferral of a one-alert mail


def test_new_mail_for_a_tenant_with_an_empty_bucket_is_not_downloaded_until_it_can_pass(
        dovecot: Dovecot, kafka: KafkaForImap) -> None:
    """The storm keeps coming: the bucket was emptied by the last round, IDLE announces more mail, and the round it
    wakes defers without a download (before, it fetched the whole batch and took none of it, every round)."""
    dovecot.create_folder(FOLDER)
    dovecot.append_many([make_mail(n) for n in range(2)], FOLDER)
    wait_until_the_topics_answer(kafka)
    clock, registry = Clock(), CollectorRegistry()
    quota = IngestQuota.build({"acme": LIMIT}, ["acme"], clock=clock, registry=registry)
    mailbox = imap_config(dovecot, folder=FOLDER).mailbox_id
    pauses = Pauses(clock, registry, mailbox, kafka, dovecot)

    async def until(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.05)

    async def scenario() -> None:
        publisher = KafkaPublisher(kafka.bootstrap, kafka.codec, prefix=kafka.prefix)
        producer = make_producer(dovecot, kafka, publisher, quota, pauses, registry, once=False)
        task = asyncio.create_task(producer.run())
        try:
            # The first two mails take the whole burst (no deferral); the producer idles with an empty bucket.
            await until(lambda: producer.stats.published == 2 and producer.idling.is_set(), "first two published")
            await asyncio.to_thread(dovecot.append_many, [make_mail(n) for n in range(2, 5)], FOLDER)
            await until(lambda: producer.stats.published == 5 and producer.idling.is_set(), "all five published")
        finally:
            producer.stop()
            try:
                await asyncio.wait_for(task, 30)
            finally:
                await publisher.close()

    asyncio.run(scenario())
    assert pauses.seen[0] == {"bodies_fetched": 2, "published": 2, "unread": [3, 4, 5]}
    assert all(p["bodies_fetched"] == p["published"] for p in pauses.seen), pauses.seen
    assert pauses.bodies_fetched() == 5
    assert wait_for_server_count(dovecot, 5) == 5
    assert_each_mail_once(kafka, dovecot, 5)


def test_a_tenant_above_its_fair_share_downloads_nothing_while_it_waits(dovecot: Dovecot, kafka: KafkaForImap) -> None:
    """Only the intake budget (60/min, 4 at once), shared with another tenant's mailbox: while acme is above its
    share, its rounds download none of its waiting mails (globex takes the budget meanwhile)."""
    quiet_folder = "INBOX/Globex"
    for folder in (FOLDER, quiet_folder):
        dovecot.create_folder(folder)
    dovecot.append_many([make_mail(n) for n in range(8)], FOLDER)
    dovecot.append_many([make_mail(n, subject="globex") for n in range(2)], quiet_folder)
    wait_until_the_topics_answer(kafka)
    clock, registry = Clock(), CollectorRegistry()
    quota = IngestQuota.build({}, ["acme", "globex"], clock=clock, registry=registry,
                              budget=IntakeBudget(BudgetLimit(per_minute=60, burst=4)))
    mailbox = imap_config(dovecot, folder=FOLDER).mailbox_id
    pauses = Pauses(clock, registry, mailbox, kafka, dovecot)

    async def scenario() -> None:
        publisher = KafkaPublisher(kafka.bootstrap, kafka.codec, prefix=kafka.prefix)
        reader = KafkaCheckpointReader(kafka.bootstrap, kafka.codec, prefix=kafka.prefix)
        quiet = ImapProducer(imap_config(dovecot, folder=quiet_folder, tenant="globex", initial_position="all",
                                         after_ingest="seen"),
                             publisher, reader, topic_prefix=kafka.prefix, once=True, quota=quota)

        async def stormy_waits(seconds: float) -> None:
            if not pauses.seen:
                await asyncio.wait_for(quiet.run(), 120)  # globex's two mails take the rest of the budget
            await pauses(seconds)

        try:
            stormy = make_producer(dovecot, kafka, publisher, quota, stormy_waits, registry, once=True)
            await asyncio.wait_for(stormy.run(), 120)
        finally:
            await publisher.close()

    asyncio.run(scenario())
    acme = pauses.seen
    assert acme[0] == {"bodies_fetched": 4, "published": 4, "unread": [5, 6, 7, 8]}
    # The next round begins with the budget emptied by globex and acme above its share: nothing downloaded.
    assert acme[1] == {"bodies_fetched": 4, "published": 4, "unread": [5, 6, 7, 8]}
    assert all(p["bodies_fetched"] == p["published"] for p in acme), acme
    assert pauses.bodies_fetched() == 8
    assert wait_for_server_count(dovecot, 10) == 10  # acme's eight and globex's two, each sent once
    assert len(kafka.read(kafka.raw_mail, RawMail)) == 10 and dovecot.uids(FOLDER, "UNSEEN") == []
    assert registry.get_sample_value("rcaflow_ingest_throttled_total", {
        "tenant": "acme", "source": "imap", "reason": OVER_FAIR_SHARE}) == len(pauses.seen)


@pytest.mark.parametrize(("budget", "digest_downloads"), [
    (32 * 1024 * 1024, 1),  # the default fetch_budget_bytes: the digest's body is kept for the round it fits
    (4096, 2),  # a budget smaller than the digest (7 KB): its body is not kept, its remembered count is
], ids=["body-kept", "body-not-kept"])
def test_a_deferred_digest_is_not_downloaded_again_before_it_fits(
        dovecot: Dovecot, kafka: KafkaForImap, budget: int, digest_downloads: int) -> None:
    """A one-alert mail, then a digest of six, for a tenant with a quota (60/min, 4 at once) and an intake budget
    (30/min, 4 at once), as ``rcaflow ingest imap`` runs a mailbox: the digest is downloaded, counted and deferred
    for the quota (3 in the bucket, 4 needed); a second later the quota could take it but the budget not (its
    share spent until its refill), and a second after that both. The round in between does not download it again
    (before, every round did: 3 downloads of the digest). The body downloaded to count it is kept for the round
    it fits, within ``fetch_budget_bytes``: downloaded once; a body above that is downloaded once more then."""
    dovecot.create_folder(FOLDER)
    digest = copy_of(DIGEST, 0, "acme")
    dovecot.append_many([make_mail(0), digest], FOLDER)
    wait_until_the_topics_answer(kafka)
    clock, registry = Clock(), CollectorRegistry()
    quota = IngestQuota.build({"acme": QuotaLimit(per_minute=60, burst=4)}, ["acme"], clock=clock, registry=registry,
                              budget=IntakeBudget(BudgetLimit(per_minute=30, burst=4)))
    mailbox = imap_config(dovecot, folder=FOLDER).mailbox_id
    pauses = Pauses(clock, registry, mailbox, kafka, dovecot)

    run_once(dovecot, kafka, quota, pauses, registry, fetch_budget_bytes=budget)
    # Both bodies in the first round (the tenant could take 4 one-alert mails); the single mail went in, the
    # digest waits unread for the quota, then for the budget, without a download; then it went in.
    assert pauses.seen == [{"bodies_fetched": 2, "published": 1, "unread": [2]},
                           {"bodies_fetched": 2, "published": 1, "unread": [2]}]
    assert pauses.bodies_fetched() == 1 + digest_downloads
    assert wait_for_server_count(dovecot, 1 + digest_downloads) == 1 + digest_downloads  # dovecot's own count
    records = [r for _k, r in kafka.read(kafka.raw_mail, RawMail)]
    digests = [r.raw for r in records if r.subject == "Control Cluster Details acme #0"]
    assert len(records) == 2 and digests == [digest] and MailCost()(digest) == DIGEST_ALERTS  # once, all alerts
    assert dovecot.uids(FOLDER, "UNSEEN") == [] and kafka.read(kafka.dead_letter, DeadLetter) == []

    def throttled(reason: str) -> float | None:
        return registry.get_sample_value("rcaflow_ingest_throttled_total", {
            "tenant": "acme", "source": "imap", "reason": reason})

    # Each deferral counts the digest's six alerts, as when it was downloaded every round.
    assert (throttled(QUOTA_EXCEEDED), throttled(OVER_FAIR_SHARE)) == (DIGEST_ALERTS, DIGEST_ALERTS)
