"""A digest mail costs its tenant the alerts it carries: a tenant sending digests is deferred by alert count (its
later digests stay unread in the folder, the checkpoint before them, and are taken later, each once), while the
other tenant's single-alert mails, read by the same process, flow. A digest larger than the tenant's whole burst
still gets in, from a full bucket. Real dovecot, real broker; the count is the product's own parser."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from producers.imap.producer import ImapProducer
from producers.imap.state import KafkaCheckpointReader
from producers.publisher import KafkaPublisher
from producers.quota import QUOTA_EXCEEDED, IngestQuota, QuotaLimit
from schemas.records import DeadLetter, RawMail
from tests.integration.imap.imap_helpers import Clock, Dovecot, KafkaForImap, imap_config, wait_until_the_topics_answer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
DIGEST = ROOT / "tests" / "fixtures" / "mail" / "dce5_control_cluster_details" / "rowspan-cluster-digest.eml"
SINGLE = ROOT / "samples" / "jenkins_restart.eml"
#: The digest's alerts as the worker reads them: more than either tenant's burst.
DIGEST_ALERTS = 6
DIGESTS = "INBOX/AcmeDigests"
SINGLES = "INBOX/GlobexSingles"
#: One alert a second, four at once, for each tenant.
LIMIT = QuotaLimit(per_minute=60, burst=4)


def copy_of(path: Path, n: int, tenant: str) -> bytes:
    """The mail with its own Message-ID and a numbered subject, CRLF line ends (as IMAP holds it)."""
    raw = path.read_bytes().replace(b"\r\n", b"\n")
    head, _, body = raw.partition(b"\n\n")
    lines = [line for line in head.split(b"\n")
             if not line.lower().startswith((b"message-id:", b"subject:"))]
    lines += [f"Subject: Control Cluster Details {tenant} #{n}".encode(),
              f"Message-ID: <{tenant}-{n}@insight.dce5.example.test>".encode()]
    return (b"\n".join(lines) + b"\n\n" + body).replace(b"\n", b"\r\n")


def test_a_tenant_sending_digests_waits_by_alert_count_while_the_other_tenants_mails_flow(
        dovecot: Dovecot, kafka: KafkaForImap) -> None:
    for folder in (DIGESTS, SINGLES):
        dovecot.create_folder(folder)
    dovecot.append_many([copy_of(DIGEST, n, "acme") for n in range(3)], DIGESTS)
    dovecot.append_many([copy_of(SINGLE, n, "globex") for n in range(3)], SINGLES)
    wait_until_the_topics_answer(kafka)
    clock, registry = Clock(), CollectorRegistry()
    quota = IngestQuota.build({"acme": LIMIT, "globex": LIMIT}, ["acme", "globex"], clock=clock, registry=registry)
    at_pauses: list[dict[str, object]] = []

    async def scenario() -> None:
        publisher = KafkaPublisher(kafka.bootstrap, kafka.codec, prefix=kafka.prefix)
        reader = KafkaCheckpointReader(kafka.bootstrap, kafka.codec, prefix=kafka.prefix)

        async def never(seconds: float) -> None:
            raise AssertionError(f"globex, within its quota, was made to wait {seconds}s")

        singles = ImapProducer(imap_config(dovecot, folder=SINGLES, tenant="globex", initial_position="all",
                                           after_ingest="seen"),
                               publisher, reader, topic_prefix=kafka.prefix, once=True, sleep=never, quota=quota)

        async def digests_wait(seconds: float) -> None:
            if not at_pauses:
                # acme's first digest took more than its burst; now globex's three single mails go in.
                await asyncio.wait_for(singles.run(), 120)
            at_pauses.append({
                "wait": seconds,
                "checkpoint": digests.last_uid,
                "unread": await asyncio.to_thread(dovecot.uids, DIGESTS, "UNSEEN"),
                "published": sorted((r.subject or "").rsplit(" #", 1)[0].rsplit(" ", 1)[1] for _k, r in
                                    await asyncio.to_thread(kafka.read, kafka.raw_mail, RawMail)),
            })
            clock.now += seconds

        digests = ImapProducer(imap_config(dovecot, folder=DIGESTS, tenant="acme", initial_position="all",
                                           after_ingest="seen"),
                               publisher, reader, topic_prefix=kafka.prefix, once=True, sleep=digests_wait,
                               quota=quota)
        try:
            await asyncio.wait_for(digests.run(), 120)
        finally:
            await publisher.close()

    asyncio.run(scenario())
    # The first digest (6 alerts > the burst of 4) went in from the full bucket, 2 in debt: the second waits
    # for 6 alerts' worth (6 s), unread, the checkpoint before it; globex's single mails went in meanwhile.
    assert at_pauses[0] == {"wait": DIGEST_ALERTS, "checkpoint": 1, "unread": [2, 3],
                            "published": ["acme"] + ["globex"] * 3}
    assert at_pauses[1]["checkpoint"] == 2 and at_pauses[1]["unread"] == [3]
    assert len(at_pauses) == 2
    subjects = sorted(r.subject or "" for _k, r in kafka.read(kafka.raw_mail, RawMail))
    assert subjects == sorted([f"Control Cluster Details acme #{n}" for n in range(3)]
                              + [f"Control Cluster Details globex #{n}" for n in range(3)])  # each once
    assert dovecot.uids(DIGESTS, "UNSEEN") == [] and dovecot.uids(SINGLES, "UNSEEN") == []
    assert kafka.read(kafka.dead_letter, DeadLetter) == []

    def throttled(tenant: str) -> float:
        return registry.get_sample_value("rcaflow_ingest_throttled_total", {
            "tenant": tenant, "source": "imap", "reason": QUOTA_EXCEEDED}) or 0.0

    assert throttled("acme") == 2 * DIGEST_ALERTS  # counted in alerts: two deferrals of a 6-alert digest
    assert throttled("globex") == 0
