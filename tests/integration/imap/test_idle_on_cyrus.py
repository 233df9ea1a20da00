"""The IMAP producer against a second real server, Cyrus IMAP 3.x, whose idled pushes IDLE updates at once.

Dovecot holds IDLE notifications back 500 ms; Cyrus does not. How fast is measured by
``benchmarks/bench_imap.py --server cyrus``; here we check that mail appended during IDLE arrives by
the server's push: the launcher leaves Cyrus's fallback poll (imapidlepoll) at 60 s, and the test waits
at most 30 s, so a mail that only arrives through a poll fails it.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from producers.imap import ImapProducer
from schemas.records import RawMail, SourceKind
from tests.integration.imap.imap_helpers import KafkaForImap, imap_config, make_mail, running
from tests.support.cyrus import Cyrus, make_cyrus

pytestmark = pytest.mark.integration

FOLDER = "INBOX/Alerts"
TENANT = "acme"
HERE = Path(__file__).parent
#: Shorter than the launcher's imapidlepoll (60 s): only a pushed IDLE update arrives in time.
PUSH_WAIT_S = 30.0


@pytest.fixture
def cyrus() -> Iterator[Cyrus]:
    yield from make_cyrus(idle=True)


@pytest.fixture
def cyrus_no_idle() -> Iterator[Cyrus]:
    yield from make_cyrus(idle=False)


class RawMailTail:
    """raw-mail read from the start: record value and broker CreateTime (s), by key."""

    def __init__(self, kafka: KafkaForImap) -> None:
        self._kafka = kafka
        self._consumer = Consumer(
            {
                "bootstrap.servers": kafka.bootstrap,
                "group.id": f"cyrus-test-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        topic = kafka.raw_mail
        meta = self._consumer.list_topics(topic, timeout=10).topics[topic]
        self._consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        self.seen: dict[str, tuple[RawMail, float]] = {}

    def wait_for(self, key: str, timeout: float = 60.0) -> tuple[RawMail, float]:
        """The record and its broker CreateTime (seconds)."""
        deadline = time.monotonic() + timeout
        while key not in self.seen and time.monotonic() < deadline:
            msg = self._consumer.poll(0.1)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(str(err))
            record = self._kafka.codec.decode(msg.value() or b"", RawMail, topic=self._kafka.raw_mail)
            self.seen[(msg.key() or b"").decode()] = (record, msg.timestamp()[1] / 1000.0)
        if key not in self.seen:
            raise AssertionError(f"{key} never reached raw-mail")
        return self.seen[key]

    def close(self) -> None:
        self._consumer.close()


def message_id_of(raw: bytes) -> str:
    for line in raw.split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    raise AssertionError("no Message-ID")


def _gb2312_base64_mail() -> bytes:
    body = base64.encodebytes("告警名称: PrometheusRemoteWriteBehind\n集群: HK-DCE5-PLATFORM\n".encode("gb2312"))
    subject = "=?GB2312?B?" + base64.b64encode("控制集群告警".encode("gb2312")).decode() + "?="
    head = (
        "From: insight@dce.example.com\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <gb-{uuid.uuid4().hex}@dce.example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=GB2312\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    )
    return head.encode() + body.replace(b"\n", b"\r\n")


def _dce_sample_mail() -> bytes:
    sample = (HERE / "mails" / "dce5-control-cluster-details.eml").read_bytes().replace(b"\r\n", b"\n")
    return sample.replace(b"\n", b"\r\n")


def test_mails_appended_during_idle_are_pushed_to_raw_mail_byte_exact(cyrus: Cyrus, kafka: KafkaForImap) -> None:
    cyrus.create_folder(FOLDER)
    mails = [_dce_sample_mail(), _gb2312_base64_mail(), *(make_mail(n) for n in range(3))]
    tail = RawMailTail(kafka)

    async def scenario() -> tuple[ImapProducer, list[tuple[bytes, RawMail, float]]]:
        got: list[tuple[bytes, RawMail, float]] = []
        async with running(imap_config(cyrus), kafka) as producer:
            with cyrus.client() as client:
                for mail in mails:
                    # Each mail lands while the producer sits in IDLE: that is the path measured.
                    await asyncio.wait_for(producer.idling.wait(), 60)
                    await asyncio.to_thread(client.append, FOLDER, mail)
                    appended = time.time()
                    record, created = await asyncio.to_thread(tail.wait_for, f"{TENANT}:{message_id_of(mail)}",
                                                              PUSH_WAIT_S)
                    got.append((mail, record, created - appended))
        return producer, got

    try:
        producer, got = asyncio.run(scenario())
    finally:
        tail.close()
    for mail, record, _latency in got:
        assert record.raw == mail  # every byte as appended, GB2312/base64 included
        assert record.source is SourceKind.IMAP
        assert record.tenant == TENANT
        assert record.mailbox == producer.config.mailbox_id
    assert got[0][1].subject == "Control Cluster Details"
    assert got[1][1].subject == "控制集群告警"
    assert len(kafka.read(kafka.raw_mail, RawMail)) == len(mails)  # each once
    assert cyrus.uids(FOLDER, "UNSEEN") == [1, 2, 3, 4, 5]  # after_ingest "none": still unread for humans


def test_backlog_then_restart_of_cyrus_catches_up_without_repeats(cyrus: Cyrus, kafka: KafkaForImap) -> None:
    cyrus.create_folder(FOLDER)
    before = [make_mail(n) for n in range(20)]
    during = [make_mail(n) for n in range(20, 25)]
    cyrus.append_many(before, FOLDER)

    async def scenario() -> None:
        async with running(imap_config(cyrus), kafka) as producer:
            await asyncio.wait_for(producer.idling.wait(), 60)
            await asyncio.to_thread(cyrus.stop)
            await asyncio.to_thread(cyrus.start)
            await asyncio.to_thread(cyrus.append_many, during, FOLDER)
            await asyncio.to_thread(kafka.wait, kafka.raw_mail, RawMail, len(before) + len(during))

    asyncio.run(scenario())
    raws = [record.raw for _, record in kafka.read(kafka.raw_mail, RawMail)]
    assert sorted(raws) == sorted(before + during)  # all of them, none twice


def test_cyrus_without_idle_is_polled(cyrus_no_idle: Cyrus, kafka: KafkaForImap) -> None:
    cyrus_no_idle.create_folder(FOLDER)
    with cyrus_no_idle.client() as client:
        assert not client.has_capability("IDLE")
    mail = make_mail(1)

    async def scenario() -> None:
        async with running(imap_config(cyrus_no_idle, poll_interval_seconds=0.2), kafka) as producer:
            await asyncio.wait_for(producer.idling.wait(), 60)
            await asyncio.to_thread(cyrus_no_idle.append, mail, FOLDER)
            await asyncio.to_thread(kafka.wait, kafka.raw_mail, RawMail, 1)

    asyncio.run(scenario())
    [(_, record)] = kafka.read(kafka.raw_mail, RawMail)
    assert record.raw == mail
