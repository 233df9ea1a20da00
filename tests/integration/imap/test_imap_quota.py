"""A tenant over its ingest quota: the IMAP producer leaves the mails unread and the checkpoint before them, then
takes them once the quota allows — nothing dropped, nothing twice. Real dovecot, real broker."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from producers.imap.producer import ImapProducer
from producers.imap.state import KafkaCheckpointReader
from producers.publisher import KafkaPublisher
from producers.quota import IngestQuota, QuotaLimit
from schemas.records import RawMail
from tests.integration.imap.imap_helpers import (
    Clock,
    Dovecot,
    KafkaForImap,
    imap_config,
    make_mail,
    wait_until_the_topics_answer,
)
from tests.integration.imap.test_imap_producer import FOLDER

pytestmark = pytest.mark.integration


def test_mails_over_the_quota_stay_unread_until_the_quota_allows(dovecot: Dovecot, kafka: KafkaForImap) -> None:
    dovecot.create_folder(FOLDER)
    dovecot.append_many([make_mail(n) for n in range(5)], FOLDER)
    # Topics created a moment ago may have no leader yet: the start-up checkpoint read would fail
    # (NOT_LEADER_FOR_PARTITION) and a producer with ``once`` stops on that, before any quota pause.
    wait_until_the_topics_answer(kafka)
    clock, registry = Clock(), CollectorRegistry()
    quota = IngestQuota.build({"acme": QuotaLimit(per_minute=60, burst=2)}, ["acme"], clock=clock, registry=registry)
    at_pauses: list[tuple[int, int, list[int]]] = []
    producer: ImapProducer | None = None

    async def sleep(seconds: float) -> None:
        assert producer is not None
        published = len(await asyncio.to_thread(kafka.read, kafka.raw_mail, RawMail))
        unread = await asyncio.to_thread(dovecot.uids, FOLDER, "UNSEEN")
        at_pauses.append((producer.last_uid, published, unread))
        clock.now += seconds

    async def scenario() -> None:
        nonlocal producer
        publisher = KafkaPublisher(kafka.bootstrap, kafka.codec, prefix=kafka.prefix)
        reader = KafkaCheckpointReader(kafka.bootstrap, kafka.codec, prefix=kafka.prefix)
        producer = ImapProducer(imap_config(dovecot, initial_position="all", after_ingest="seen"), publisher, reader,
                                topic_prefix=kafka.prefix, once=True, sleep=sleep, quota=quota)
        try:
            await asyncio.wait_for(producer.run(), 120)
        finally:
            await publisher.close()

    asyncio.run(scenario())
    # The first pause: the burst of 2 went in; mails 3..5 are still unread and the checkpoint is before them.
    assert at_pauses[0] == (2, 2, [3, 4, 5])
    assert producer is not None and producer.stats.deferred == len(at_pauses) == 3
    subjects = sorted(r.subject or "" for _key, r in kafka.read(kafka.raw_mail, RawMail))
    assert subjects == sorted(f"Control Cluster Details #{n}" for n in range(5))  # each once, none dropped
    assert dovecot.uids(FOLDER, "UNSEEN") == []
    assert registry.get_sample_value("rcaflow_ingest_throttled_total", {"tenant": "acme", "source": "imap",
                                                                 "reason": "quota_exceeded"}) == 3.0
