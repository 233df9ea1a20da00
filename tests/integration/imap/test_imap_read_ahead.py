"""A throttled tenant's mails are downloaded once, however many rounds they wait: the bodies a round read ahead
(fetched in the same group as a mail its quota then deferred, after it in UID order) and the deferred mail's own
body are kept for the next round instead of being thrown away and downloaded again; and a round reads ahead no
further than the alerts the tenant can take, a digest counting its remembered alerts. Counted by the producer's
``rcaflow_imap_bodies_fetched_total`` and by dovecot itself. Every mail is still published once, in UID order, the
checkpoint before the ones that wait; a recreated folder's mails are never served from the old folder's bodies.
Real dovecot, real broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from producers.publisher import KafkaPublisher
from producers.quota import QUOTA_EXCEEDED, IngestQuota, QuotaLimit
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
from tests.integration.imap.test_imap_throttled_fetch import (
    FOLDER,
    Pauses,
    make_producer,
    run_once,
    wait_for_server_count,
)

pytestmark = pytest.mark.integration

#: One alert a second, four at once: less than the digest's six.
LIMIT = QuotaLimit(per_minute=60, burst=4)


def test_mails_read_ahead_of_a_deferred_digest_are_downloaded_once(dovecot: Dovecot, kafka: KafkaForImap) -> None:
    """A one-alert mail, a six-alert digest, four more one-alert mails. The first round may take four one-alert
    mails, so it downloads mails 1-4; the digest does not fit (3 alerts left, 4 needed) and the pass stops there.
    Before, mails 2-4 were thrown away, downloaded again with mail 5 on the next round, thrown away again when the
    digest left the bucket in debt, and downloaded once more one by one: 12 downloads for 6 mails. Now each mail's
    body is downloaded once: 6."""
    dovecot.create_folder(FOLDER)
    digest = copy_of(DIGEST, 1, "acme")
    mails = [make_mail(0), digest, *(make_mail(n) for n in range(2, 6))]
    dovecot.append_many(mails, FOLDER)
    wait_until_the_topics_answer(kafka)
    clock, registry = Clock(), CollectorRegistry()
    quota = IngestQuota.build({"acme": LIMIT}, ["acme"], clock=clock, registry=registry)
    mailbox = imap_config(dovecot, folder=FOLDER).mailbox_id
    pauses = Pauses(clock, registry, mailbox, kafka, dovecot)

    run_once(dovecot, kafka, quota, pauses, registry)
    # Round 1 downloads mails 1-4 and takes mail 1. Round 2 takes the digest from what round 1 kept (no download,
    # and no read-ahead past it: its six alerts are all the room there is); rounds 3 and 4 take mails 3 and 4
    # from what was kept; rounds 5 and 6 download mails 5 and 6. Each pause: the mails before it published, the
    # ones from it on unread.
    assert pauses.seen == [
        {"bodies_fetched": 4, "published": 1, "unread": [2, 3, 4, 5, 6]},
        {"bodies_fetched": 4, "published": 2, "unread": [3, 4, 5, 6]},
        {"bodies_fetched": 4, "published": 3, "unread": [4, 5, 6]},
        {"bodies_fetched": 4, "published": 4, "unread": [5, 6]},
        {"bodies_fetched": 5, "published": 5, "unread": [6]},
    ]
    assert pauses.bodies_fetched() == len(mails) == 6  # before: 12
    assert wait_for_server_count(dovecot, 6) == 6  # dovecot's own count: each body sent once
    published = [r.raw for _k, r in kafka.read(kafka.raw_mail, RawMail)]
    assert sorted(published) == sorted(mails)  # each mail once, byte for byte, the digest whole
    assert dovecot.uids(FOLDER, "UNSEEN") == [] and kafka.read(kafka.dead_letter, DeadLetter) == []
    # Deferrals counted as before: the digest's six alerts once, then one alert for each one-alert mail that waited.
    assert registry.get_sample_value("rcaflow_ingest_throttled_total", {
        "tenant": "acme", "source": "imap", "reason": QUOTA_EXCEEDED}) == DIGEST_ALERTS + 4


def test_a_recreated_folders_mails_are_not_served_from_the_old_folders_bodies(
        dovecot: Dovecot, kafka: KafkaForImap) -> None:
    """The digest is deferred with mails 2-4 of the folder kept; while the tenant waits the server restarts and
    the folder is recreated (new UIDVALIDITY) with other mails at UIDs 1-4. The producer reconnects, re-reads the
    new folder from UID 1 and publishes the new mails' own bytes, none of the old ones kept under the same UIDs."""
    dovecot.create_folder(FOLDER)
    old = [make_mail(0), copy_of(DIGEST, 1, "acme"), make_mail(2), make_mail(3)]
    dovecot.append_many(old, FOLDER)
    new = [make_mail(n, body="the recreated folder's mail") for n in range(10, 14)]
    wait_until_the_topics_answer(kafka)
    clock, registry = Clock(), CollectorRegistry()
    quota = IngestQuota.build({"acme": LIMIT}, ["acme"], clock=clock, registry=registry)
    mailbox = imap_config(dovecot, folder=FOLDER).mailbox_id
    pauses = Pauses(clock, registry, mailbox, kafka, dovecot)

    def recreate() -> None:
        dovecot.stop()  # the producer's connection goes with it
        dovecot.start()
        with dovecot.client() as c:
            c.delete_folder(FOLDER)
            c.create_folder(FOLDER)
        dovecot.append_many(new, FOLDER)

    async def waits(seconds: float) -> None:
        if not pauses.seen:
            assert pauses.bodies_fetched() == 4  # mail 1 published, the digest deferred, mails 2-4 kept
            await asyncio.to_thread(recreate)
        await pauses(seconds)

    async def until(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.05)

    async def scenario() -> None:
        publisher = KafkaPublisher(kafka.bootstrap, kafka.codec, prefix=kafka.prefix)
        producer = make_producer(dovecot, kafka, publisher, quota, waits, registry, once=False)
        task = asyncio.create_task(producer.run())
        try:
            await until(lambda: producer.stats.published == 1 + len(new) and producer.idling.is_set(),
                        "the recreated folder's mails published")
        finally:
            producer.stop()
            try:
                await asyncio.wait_for(task, 30)
            finally:
                await publisher.close()

    asyncio.run(scenario())
    published = [r.raw for _k, r in kafka.read(kafka.raw_mail, RawMail)]
    assert sorted(published) == sorted([old[0], *new])  # the new mails' own bytes, each once
    assert kafka.read(kafka.dead_letter, DeadLetter) == []
