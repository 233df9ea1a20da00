"""IDLE over TLS on a real dovecot: many mails arriving while idling, not one byte of a response lost (issue 19)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from producers.imap import ImapProducer
from schemas.records import RawMail
from tests.integration.imap.imap_helpers import Dovecot, KafkaForImap, imap_config, make_mail, running
from tests.support.tls_splitter import TlsSplitter

FOLDER = "INBOX/Alerts"
BURSTS = 20
PER_BURST = 10


def message_id_of(raw: bytes) -> str:
    for line in raw.split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    raise AssertionError("no Message-ID")


@contextlib.contextmanager
def tls_port(server: Dovecot, path: str) -> Iterator[tuple[int, TlsSplitter | None]]:
    """dovecot's own imaps listener, or a TLS terminator in front of its plain one that splits records mid-line."""
    if path == "dovecot-imaps":
        assert server.tls_port is not None
        yield server.tls_port, None
        return
    with TlsSplitter(server.port, server.cert, server.base / "key.pem") as splitter:
        yield splitter.port, splitter


@pytest.mark.parametrize("path", ["dovecot-imaps", "tls-terminator-splitting-records"])
def test_two_hundred_mails_arriving_during_idle_over_tls_are_all_published_without_a_reconnect(
    dovecot_tls: Dovecot, kafka: KafkaForImap, path: str
) -> None:
    """Before the fix a TLS read that stopped mid-line lost the line's start (``unexpected response: b'RECENT'``).

    The reader then reconnected and caught up by UID SEARCH, so each drop cost a
    reconnect and a delay; here every mail must be pushed while the one IDLE
    connection stays up.
    """
    server = dovecot_tls
    server.create_folder(FOLDER)
    mails = [make_mail(n) for n in range(BURSTS * PER_BURST)]

    async def scenario(port: int) -> tuple[ImapProducer, int]:
        config = imap_config(server, tls="tls", allow_plain=False, port=port, ca_file=str(server.cert))
        async with running(config, kafka) as producer:
            await asyncio.wait_for(producer.idling.wait(), 60)
            failures_before = producer.stats.failures  # the broker may still be electing leaders at start
            with server.client() as appender:  # another connection, as an MTA's delivery would be
                for burst in range(BURSTS):
                    chunk = mails[burst * PER_BURST : (burst + 1) * PER_BURST]
                    await asyncio.to_thread(lambda c=chunk: [appender.append(FOLDER, m) for m in c])
                    await asyncio.sleep(0.05)
            await asyncio.to_thread(kafka.wait, kafka.raw_mail, RawMail, len(mails), 120.0)
            await asyncio.wait_for(producer.idling.wait(), 60)
            return producer, failures_before

    with tls_port(server, path) as (port, splitter):
        producer, failures_before = asyncio.run(scenario(port))
        if splitter is not None:
            assert splitter.split_records > 0, "the relay never ended a record inside a line"
    published = sorted(rec.message_id for _, rec in kafka.read(kafka.raw_mail, RawMail))
    assert published == sorted(message_id_of(m) for m in mails)
    assert producer.stats.failures == failures_before, "the IDLE reader lost its connection"
    assert producer.stats.connects == 1
    assert producer.stats.published == len(mails)
