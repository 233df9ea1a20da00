"""The IMAP producer against a real dovecot and a real broker: what users would notice."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from producers.imap import (
    EXIT_AUTH,
    ImapAuthError,
    ImapProducer,
    KafkaCheckpointReader,
    ingest,
)
from producers.imap.metrics import ImapStatsCollector
from producers.publisher import Delivery, KafkaPublisher, PublishError
from schemas.records import Checkpoint, DeadLetter, RawMail, Record, SourceKind
from schemas.topics import RAW_MAIL, TopicSpec
from tests.integration.imap.imap_helpers import (
    Dovecot,
    KafkaForImap,
    imap_config,
    make_mail,
    running,
    wait_until_the_topics_answer,
)

FOLDER = "INBOX/Alerts"
TENANT = "acme"
HERE = Path(__file__).parent


async def caught_up(producer: ImapProducer) -> None:
    await asyncio.wait_for(producer.idling.wait(), 60)


async def records(kafka: KafkaForImap, count: int) -> list[tuple[str, RawMail]]:
    return await asyncio.to_thread(kafka.wait, kafka.raw_mail, RawMail, count)


def message_id_of(raw: bytes) -> str:
    for line in raw.split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    raise AssertionError("no Message-ID")


def test_mail_appended_while_idling_reaches_raw_mail(dovecot: Dovecot, kafka: KafkaForImap) -> None:
    dovecot.create_folder(FOLDER)
    mail = make_mail(1)

    async def scenario() -> ImapProducer:
        async with running(imap_config(dovecot), kafka) as producer:
            await caught_up(producer)
            await asyncio.to_thread(dovecot.append, mail, FOLDER)
            got = await records(kafka, 1)
            assert len(got) == 1
            return producer

    producer = asyncio.run(scenario())
    [(key, rec)] = kafka.read(kafka.raw_mail, RawMail)
    assert key == f"{TENANT}:{message_id_of(mail)}"
    assert rec.raw == mail
    assert rec.tenant == TENANT
    assert rec.source is SourceKind.IMAP
    assert rec.subject == "Control Cluster Details #1"
    assert rec.sender == "insight@dce.example.com"
    assert rec.mailbox == producer.config.mailbox_id
    checkpoints = kafka.read(kafka.checkpoints, Checkpoint)
    assert checkpoints[-1][0] == producer.config.mailbox_id
    assert checkpoints[-1][1].last_uid == 1
    assert checkpoints[-1][1].uidvalidity is not None
    # after_ingest defaults to "none": the mail stays unread for humans
    assert dovecot.uids(FOLDER, "UNSEEN") == [1]


def _gb2312_base64_mail() -> bytes:
    body = base64.encodebytes("告警名称: PrometheusRemoteWriteBehind\n集群: HK-DCE5-PLATFORM\n".encode("gb2312"))
    subject = "=?GB2312?B?" + base64.b64encode("控制集群告警".encode("gb2312")).decode() + "?="
    head = (
        "From: =?GB2312?B?" + base64.b64encode("运维".encode("gb2312")).decode() + "?= <insight@dce.example.com>\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <gb-{uuid.uuid4().hex}@dce.example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=GB2312\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    )
    return head.encode() + body.replace(b"\n", b"\r\n")


def _utf8_qp_mail() -> bytes:
    return (
        "From: insight@dce.example.com\r\n"
        "Subject: =?UTF-8?Q?=E5=91=8A=E8=AD=A6_etcd_latency?=\r\n"
        f"Message-ID: <qp-{uuid.uuid4().hex}@dce.example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=UTF-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        "=E9=9B=86=E7=BE=A4: HK-DCE5-PLATFORM\r\n"
    ).encode()


def _raw_8bit_gb18030_mail_without_message_id() -> bytes:
    # Non-compliant but real: 8-bit GB18030 header bytes, no encoded-words, no Message-ID.
    return (
        b"From: insight@dce.example.com\r\n"
        b"Subject: " + "日志泛滥 log flood".encode("gb18030") + b"\r\n"
        b"Content-Type: text/plain; charset=GB18030\r\n\r\n" + "命名空间: insight-system\r\n".encode("gb18030")
    )


def test_charsets_pass_through_byte_exact(dovecot: Dovecot, kafka: KafkaForImap) -> None:
    sample = (HERE / "mails" / "dce5-control-cluster-details.eml").read_bytes().replace(b"\r\n", b"\n")
    sample = sample.replace(b"\n", b"\r\n")
    mails = [_gb2312_base64_mail(), _utf8_qp_mail(), _raw_8bit_gb18030_mail_without_message_id(), sample]
    dovecot.create_folder(FOLDER)
    dovecot.append_many(mails, FOLDER)

    async def scenario() -> None:
        async with running(imap_config(dovecot), kafka) as producer:
            await caught_up(producer)

    asyncio.run(scenario())
    got = {rec.raw: (key, rec) for key, rec in kafka.read(kafka.raw_mail, RawMail)}
    assert set(got) == set(mails)  # every byte as the server stored it
    assert got[mails[0]][1].subject == "控制集群告警"
    assert got[mails[1]][1].subject == "告警 etcd latency"
    assert got[mails[2]][1].subject == "日志泛滥 log flood"
    assert got[mails[2]][0].startswith(f"{TENANT}:sha256:")  # stable id for mail without Message-ID
    assert got[mails[3]][1].subject == "Control Cluster Details"
    assert got[mails[3]][0] == f"{TENANT}:<1795600798703498597.7106051513621363225@vm>"


def test_oversize_mail_goes_to_dead_letter(dovecot: Dovecot, kafka: KafkaForImap) -> None:
    small, big = make_mail(1), make_mail(2, body="x" * 20_000)
    dovecot.create_folder(FOLDER)
    dovecot.append_many([small, big], FOLDER)

    async def scenario() -> ImapProducer:
        config = imap_config(dovecot, max_message_bytes=4096)
        async with running(config, kafka) as producer:
            await caught_up(producer)
            return producer

    producer = asyncio.run(scenario())
    raw = kafka.read(kafka.raw_mail, RawMail)
    assert [rec.raw for _, rec in raw] == [small]
    [(key, dead)] = kafka.read(kafka.dead_letter, DeadLetter)
    assert key == kafka.raw_mail
    assert "exceeds max_message_bytes=4096" in dead.reason
    assert "UID 2" in dead.reason
    assert dead.key == f"{TENANT}:{message_id_of(big)}".encode()
    assert message_id_of(big).encode() in dead.payload  # headers identify the mail
    assert dead.tenant == TENANT
    assert producer.last_uid == 2  # the checkpoint moved past it: it is not retried forever
    # What the producer did is visible to Prometheus, labelled by mailbox.
    registry = CollectorRegistry()
    registry.register(ImapStatsCollector(producer, "box"))
    assert registry.get_sample_value("rcaflow_imap_published_total", {"mailbox": "box"}) == 1
    assert registry.get_sample_value("rcaflow_imap_dead_lettered_total", {"mailbox": "box"}) == 1


def test_producer_killed_mid_batch_publishes_every_mail_exactly_once(
    dovecot: Dovecot,
    kafka: KafkaForImap,
    tmp_path: Path,
) -> None:
    mails = [make_mail(n) for n in range(30)]
    dovecot.create_folder(FOLDER)
    dovecot.append_many(mails, FOLDER)
    config = imap_config(dovecot, fetch_batch=10)
    raw_config = config.model_dump(mode="json")
    raw_config["password"] = dovecot.password
    config_file = tmp_path / "imap.json"
    config_file.write_text(json.dumps(raw_config))

    proc = subprocess.run(
        [sys.executable, str(HERE / "crashing_producer.py"), str(config_file), kafka.bootstrap, kafka.prefix, "15"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -9, proc.stderr.decode(errors="replace")[-3000:]
    before = kafka.read(kafka.raw_mail, RawMail)
    checkpoints = kafka.read(kafka.checkpoints, Checkpoint)
    assert 15 <= len(before) < 30
    assert checkpoints[-1][1].last_uid == 10  # killed after publishing, before checkpointing batch 2

    async def scenario() -> ImapProducer:
        async with running(config, kafka) as producer:
            await caught_up(producer)
            return producer

    producer = asyncio.run(scenario())
    after = kafka.read(kafka.raw_mail, RawMail)
    keys = [key for key, _ in after]
    assert sorted(keys) == sorted(f"{TENANT}:{message_id_of(m)}" for m in mails)
    assert producer.stats.duplicates == len(before) - 10
    assert producer.last_uid == 30


def test_dovecot_restart_reconnects_and_catches_up(dovecot: Dovecot, kafka: KafkaForImap) -> None:
    dovecot.create_folder(FOLDER)
    first = [make_mail(n) for n in range(3)]
    while_down = [make_mail(n) for n in range(3, 6)]

    async def scenario() -> ImapProducer:
        async with running(imap_config(dovecot), kafka) as producer:
            await caught_up(producer)
            await asyncio.to_thread(dovecot.append_many, first, FOLDER)
            await records(kafka, 3)
            await asyncio.to_thread(dovecot.stop)
            for mail in while_down:
                dovecot.deliver_file(mail, FOLDER)
            await asyncio.to_thread(dovecot.start)
            await records(kafka, 6)
            await caught_up(producer)
            return producer

    producer = asyncio.run(scenario())
    got = kafka.read(kafka.raw_mail, RawMail)
    assert sorted(k for k, _ in got) == sorted(f"{TENANT}:{message_id_of(m)}" for m in first + while_down)
    assert producer.stats.connects >= 2
    assert producer.stats.failures >= 1


def test_one_hour_outage_on_a_compressed_clock(dovecot: Dovecot, kafka: KafkaForImap) -> None:
    dovecot.create_folder(FOLDER)
    dovecot.append(make_mail(1), FOLDER)
    dovecot.stop()
    now = [0.0]
    delays: list[float] = []
    back_at: list[float] = []

    async def compressed_sleep(seconds: float) -> None:
        delays.append(seconds)
        now[0] += seconds
        if now[0] >= 3600 and not back_at:
            back_at.append(now[0])
            await asyncio.to_thread(dovecot.start)
        await asyncio.sleep(0)

    config = imap_config(dovecot, backoff={"base_seconds": 1, "cap_seconds": 300})

    async def scenario() -> ImapProducer:
        async with running(config, kafka, sleep=compressed_sleep, rand=random.Random(7).random) as producer:
            await records(kafka, 1)
            await caught_up(producer)
            return producer

    producer = asyncio.run(scenario())
    assert len(kafka.read(kafka.raw_mail, RawMail)) == 1
    assert back_at, "the simulated hour never ended"
    assert all(0 <= d <= 300 for d in delays)
    assert now[0] - 3600 <= 300  # back within one capped delay of the server's return
    assert producer.stats.failures == len(delays)  # one reconnect attempt per delay: no hot loop
    assert 12 <= len(delays) <= 120  # an hour of capped, jittered retries, not thousands
    assert producer.stats.connects == 1


def test_bad_password_gives_one_clear_error_and_stops(
    dovecot: Dovecot,
    kafka: KafkaForImap,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dovecot.create_folder(FOLDER)
    wrong = f"wrong-{uuid.uuid4().hex}"
    config = imap_config(dovecot, password=wrong)
    caplog.set_level(logging.INFO)

    code = asyncio.run(ingest(config, bootstrap=kafka.bootstrap, prefix=kafka.prefix, install_signal_handlers=False))

    assert code == EXIT_AUTH
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "refused" in errors[0].getMessage()
    assert "AUTHENTICATIONFAILED" in errors[0].getMessage()
    assert not [r for r in caplog.records if "reconnecting" in r.getMessage()]
    assert wrong not in caplog.text


def test_bad_password_raises_from_run(dovecot: Dovecot, kafka: KafkaForImap) -> None:
    config = imap_config(dovecot, password="not-it")

    async def scenario() -> None:
        publisher = KafkaPublisher(kafka.bootstrap, kafka.codec, prefix=kafka.prefix)
        reader = KafkaCheckpointReader(kafka.bootstrap, kafka.codec, prefix=kafka.prefix)
        try:
            await ImapProducer(config, publisher, reader, topic_prefix=kafka.prefix).run()
        finally:
            await publisher.close()

    with pytest.raises(ImapAuthError) as info:
        asyncio.run(scenario())
    assert info.value.retriable is False


def test_after_ingest_move_and_uidvalidity_reset_do_not_repeat(dovecot: Dovecot, kafka: KafkaForImap) -> None:
    dovecot.create_folder(FOLDER)
    dovecot.create_folder("INBOX/Done")
    first = [make_mail(n) for n in range(3)]
    dovecot.append_many(first, FOLDER)
    config = imap_config(dovecot, after_ingest="move:INBOX/Done")

    async def once() -> ImapProducer:
        async with running(config, kafka) as producer:
            await caught_up(producer)
            return producer

    asyncio.run(once())
    assert dovecot.uids(FOLDER) == []
    assert len(dovecot.uids("INBOX/Done")) == 3

    # Someone recreates the folder (new UIDVALIDITY) and puts the old mails back plus a new one.
    with dovecot.client() as c:
        c.delete_folder(FOLDER)
        c.create_folder(FOLDER)
    fresh = make_mail(99)
    dovecot.append_many([*first, fresh], FOLDER)

    second = asyncio.run(once())
    got = kafka.read(kafka.raw_mail, RawMail)
    assert sorted(k for k, _ in got) == sorted(f"{TENANT}:{message_id_of(m)}" for m in [*first, fresh])
    assert second.stats.duplicates == 3
    assert second.stats.published == 1


def test_server_without_idle_is_polled(dovecot_no_idle: Dovecot, kafka: KafkaForImap) -> None:
    server = dovecot_no_idle
    server.create_folder(FOLDER)
    config = imap_config(server, poll_interval_seconds=0.2, after_ingest="seen")

    async def scenario() -> None:
        async with running(config, kafka) as producer:
            await caught_up(producer)
            await asyncio.to_thread(server.append, make_mail(1), FOLDER)
            await records(kafka, 1)

    asyncio.run(scenario())
    assert len(kafka.read(kafka.raw_mail, RawMail)) == 1
    assert server.uids(FOLDER, "SEEN") == [1]


def test_mails_arriving_one_by_one_are_each_pushed_without_waiting_for_idle_renewal(
    dovecot: Dovecot, kafka: KafkaForImap
) -> None:
    """Mail that lands between our SEARCH and our IDLE must not wait for the 25-minute renewal."""
    dovecot.create_folder(FOLDER)
    mails = [make_mail(n) for n in range(15)]

    async def scenario() -> None:
        async with running(imap_config(dovecot), kafka) as producer:
            await caught_up(producer)
            with dovecot.client() as client:
                for n, mail in enumerate(mails, start=1):
                    await asyncio.to_thread(client.append, FOLDER, mail)
                    got = await records(kafka, n)
                    assert len(got) == n, f"mail {n} was not pushed while idling"

    asyncio.run(scenario())


class FlakyPublisher:
    """The Publisher seam with one injected broker hiccup on the Nth raw-mail publish."""

    def __init__(self, inner: KafkaPublisher, fail_on: int) -> None:
        self._inner = inner
        self._fail_on = fail_on
        self._seen = 0

    async def publish(self, spec: TopicSpec, key: str, record: Record) -> Delivery:
        if spec is RAW_MAIL:
            self._seen += 1
            if self._seen == self._fail_on:
                raise PublishError("injected: broker did not ack", topic=spec.name, retriable=True)
        return await self._inner.publish(spec, key, record)

    async def close(self) -> None:
        await self._inner.close()


def test_a_failed_publish_mid_batch_is_retried_without_repeating_the_others(
    dovecot: Dovecot, kafka: KafkaForImap
) -> None:
    mails = [make_mail(n) for n in range(10)]
    dovecot.create_folder(FOLDER)
    dovecot.append_many(mails, FOLDER)
    # Fresh topics may have no leader yet: the start-up read would fail once and count the failure asserted 0 below.
    wait_until_the_topics_answer(kafka)

    async def scenario() -> ImapProducer:
        inner = KafkaPublisher(kafka.bootstrap, kafka.codec, prefix=kafka.prefix)
        publisher = FlakyPublisher(inner, fail_on=4)
        reader = KafkaCheckpointReader(kafka.bootstrap, kafka.codec, prefix=kafka.prefix)
        producer = ImapProducer(imap_config(dovecot, fetch_batch=10), publisher, reader, topic_prefix=kafka.prefix)
        task = asyncio.create_task(producer.run())
        try:
            await records(kafka, 10)
            await caught_up(producer)
        finally:
            producer.stop()
            await asyncio.wait_for(task, 30)
            await publisher.close()
        return producer

    producer = asyncio.run(scenario())
    keys = [k for k, _ in kafka.read(kafka.raw_mail, RawMail)]
    assert sorted(keys) == sorted(f"{TENANT}:{message_id_of(m)}" for m in mails)
    uids = [cp.last_uid for _, cp in kafka.read(kafka.checkpoints, Checkpoint)]
    # A transient refusal is sent again in place (issue 12): no reconnect, the batch is checkpointed once.
    assert uids == [10]
    assert producer.stats.publish_retries == 1
    assert producer.stats.failures == 0
    assert producer.stats.duplicates == 0


def test_sender_and_subject_filters_skip_mail_but_move_past_it(dovecot: Dovecot, kafka: KafkaForImap) -> None:
    wanted = make_mail(1)
    spoof = make_mail(2, sender="attacker@example.org")
    chatter = make_mail(3, subject="Lunch on Friday")
    dovecot.create_folder(FOLDER)
    dovecot.append_many([wanted, spoof, chatter], FOLDER)
    config = imap_config(dovecot, allowed_senders=["@DCE.example.com"], subject_keywords=["cluster"])

    async def scenario() -> ImapProducer:
        async with running(config, kafka) as producer:
            await caught_up(producer)
            return producer

    producer = asyncio.run(scenario())
    assert [rec.raw for _, rec in kafka.read(kafka.raw_mail, RawMail)] == [wanted]
    assert producer.stats.filtered == 2
    assert producer.last_uid == 3


@pytest.mark.parametrize("mode", ["tls", "starttls"])
def test_tls_and_starttls_with_a_private_ca(dovecot_tls: Dovecot, kafka: KafkaForImap, mode: str) -> None:
    server = dovecot_tls
    server.create_folder(FOLDER)
    mail = make_mail(1)
    server.append(mail, FOLDER)
    port = server.tls_port if mode == "tls" else server.port
    config = imap_config(server, tls=mode, allow_plain=False, port=port, ca_file=str(server.cert))

    async def scenario() -> None:
        async with running(config, kafka) as producer:
            await caught_up(producer)

    asyncio.run(scenario())
    assert [rec.raw for _, rec in kafka.read(kafka.raw_mail, RawMail)] == [mail]


def test_an_untrusted_certificate_is_not_accepted(dovecot_tls: Dovecot, kafka: KafkaForImap) -> None:
    server = dovecot_tls
    server.create_folder(FOLDER)
    server.append(make_mail(1), FOLDER)
    config = imap_config(server, tls="tls", allow_plain=False, port=server.tls_port)

    async def scenario() -> ImapProducer:
        async with running(config, kafka) as producer:
            for _ in range(600):  # until it has tried (and refused) twice
                if producer.stats.failures >= 2:
                    break
                await asyncio.sleep(0.05)
            return producer

    producer = asyncio.run(scenario())
    assert kafka.read(kafka.raw_mail, RawMail) == []
    assert producer.stats.connects == 0
    assert producer.stats.failures >= 1


def test_idle_is_renewed_and_still_delivers(dovecot: Dovecot, kafka: KafkaForImap) -> None:
    dovecot.create_folder(FOLDER)
    config = imap_config(dovecot, idle_renew_seconds=0.2)

    async def scenario() -> ImapProducer:
        async with running(config, kafka) as producer:
            for _ in range(600):
                if producer.stats.waits >= 4:  # entered IDLE, then renewed it three times
                    break
                await asyncio.sleep(0.05)
            await caught_up(producer)
            await asyncio.to_thread(dovecot.append, make_mail(1), FOLDER)
            await records(kafka, 1)
            return producer

    producer = asyncio.run(scenario())
    assert producer.stats.waits >= 4
    assert producer.stats.connects == 1  # renewal is DONE + IDLE on the same connection
    assert len(kafka.read(kafka.raw_mail, RawMail)) == 1


def test_initial_position_new_skips_what_was_already_there(dovecot: Dovecot, kafka: KafkaForImap) -> None:
    dovecot.create_folder(FOLDER)
    dovecot.append_many([make_mail(1), make_mail(2)], FOLDER)
    later = make_mail(3)

    async def scenario() -> None:
        async with running(imap_config(dovecot, initial_position="new"), kafka) as producer:
            await caught_up(producer)
            await asyncio.to_thread(dovecot.append, later, FOLDER)
            await records(kafka, 1)

    asyncio.run(scenario())
    assert [rec.raw for _, rec in kafka.read(kafka.raw_mail, RawMail)] == [later]
