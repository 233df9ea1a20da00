"""A tenant's mailbox storming past its fair share of the intake budget: its mails over the share stay in the
folder (not moved, not flagged, the checkpoint before them) and are taken later, each once, never dead-lettered;
the throttled counter says why; meanwhile the other tenant's mailbox, read by the same process, flows.
Real dovecot, real broker."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from producers.imap.producer import ImapProducer
from producers.imap.state import KafkaCheckpointReader
from producers.intake_budget import BudgetLimit, IntakeBudget
from producers.publisher import KafkaPublisher
from producers.quota import OVER_FAIR_SHARE, IngestQuota
from schemas.records import DeadLetter, RawMail
from tests.integration.imap.imap_helpers import (
    Clock,
    Dovecot,
    KafkaForImap,
    imap_config,
    make_mail,
    wait_until_the_topics_answer,
)

pytestmark = pytest.mark.integration

STORMY = "INBOX/Acme"
QUIET = "INBOX/Globex"
DONE = "INBOX/Done"


def test_mails_over_the_share_stay_in_the_folder_while_the_other_tenant_flows(
        dovecot: Dovecot, kafka: KafkaForImap) -> None:
    for folder in (STORMY, QUIET, DONE):
        dovecot.create_folder(folder)
    dovecot.append_many([make_mail(n, subject="acme storm") for n in range(8)], STORMY)
    dovecot.append_many([make_mail(n, subject="globex") for n in range(2)], QUIET)
    wait_until_the_topics_answer(kafka)
    clock, registry = Clock(), CollectorRegistry()
    # Only the intake budget, as `ingest.budget_*` builds it: 60 mails a minute, 4 at once (a 4 s window).
    quota = IngestQuota.build({}, ["acme", "globex"], clock=clock, registry=registry,
                              budget=IntakeBudget(BudgetLimit(per_minute=60, burst=4)))
    seen_at_first_pause: dict[str, object] = {}

    async def scenario() -> None:
        publisher = KafkaPublisher(kafka.bootstrap, kafka.codec, prefix=kafka.prefix)
        reader = KafkaCheckpointReader(kafka.bootstrap, kafka.codec, prefix=kafka.prefix)

        async def never(seconds: float) -> None:
            raise AssertionError(f"globex, within its share, was made to wait {seconds}s")

        quiet = ImapProducer(imap_config(dovecot, folder=QUIET, tenant="globex", initial_position="all",
                                         after_ingest=f"move:{DONE}"),
                             publisher, reader, topic_prefix=kafka.prefix, once=True, sleep=never, quota=quota)

        async def stormy_waits(seconds: float) -> None:
            if not seen_at_first_pause:
                # acme is over its share and waits; now globex's mailbox delivers, into the emptied budget.
                await asyncio.wait_for(quiet.run(), 120)
                seen_at_first_pause.update(
                    checkpoint=stormy.last_uid,
                    left=await asyncio.to_thread(dovecot.uids, STORMY, "ALL"),
                    unread=await asyncio.to_thread(dovecot.uids, STORMY, "UNSEEN"),
                    published=sorted((r.subject or "").split(" #")[0] for _k, r in
                                     await asyncio.to_thread(kafka.read, kafka.raw_mail, RawMail)),
                )
            clock.now += seconds

        stormy = ImapProducer(imap_config(dovecot, folder=STORMY, tenant="acme", initial_position="all",
                                          after_ingest=f"move:{DONE}"),
                              publisher, reader, topic_prefix=kafka.prefix, once=True, sleep=stormy_waits,
                              quota=quota)
        try:
            await asyncio.wait_for(stormy.run(), 120)
        finally:
            await publisher.close()

    asyncio.run(scenario())
    # At acme's first wait its mails 5..8 were still in its folder, unread, the checkpoint before them; globex's
    # two mails went in meanwhile.
    assert seen_at_first_pause == {"checkpoint": 4, "left": [5, 6, 7, 8], "unread": [5, 6, 7, 8],
                                   "published": ["acme storm"] * 4 + ["globex"] * 2}
    subjects = sorted(r.subject or "" for _k, r in kafka.read(kafka.raw_mail, RawMail))
    assert subjects == sorted([f"acme storm #{n}" for n in range(8)] + [f"globex #{n}" for n in range(2)])
    assert dovecot.uids(STORMY) == [] and len(dovecot.uids(DONE)) == 10  # each taken once, then moved
    assert kafka.read(kafka.dead_letter, DeadLetter) == []
    throttled = {tenant: registry.get_sample_value("rcaflow_ingest_throttled_total", {
        "tenant": tenant, "source": "imap", "reason": OVER_FAIR_SHARE}) or 0.0 for tenant in ("acme", "globex")}
    assert throttled["acme"] >= 1 and throttled["globex"] == 0
