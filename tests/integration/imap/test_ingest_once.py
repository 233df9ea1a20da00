"""`rcaflow ingest imap --once`: publish what is new, checkpoint it, exit (the reference email_ingest.py).

Real dovecot and the real broker: a second run publishes nothing again, a third only the mail that
arrived in between; with IMAP down the run exits non-zero at once instead of waiting out the outage.
"""

from __future__ import annotations

import asyncio

import pytest

from producers.imap.run import EXIT_FATAL, EXIT_OK, ingest
from schemas.records import RawMail
from tests.integration.imap.imap_helpers import (
    Dovecot,
    KafkaForImap,
    imap_config,
    make_mail,
    wait_until_the_topics_answer,
)
from tests.integration.imap.test_imap_producer import FOLDER

pytestmark = pytest.mark.integration


def _once(dovecot: Dovecot, kafka: KafkaForImap) -> int:
    config = imap_config(dovecot, initial_position="all")
    return asyncio.run(asyncio.wait_for(
        ingest(config, bootstrap=kafka.bootstrap, prefix=kafka.prefix, install_signal_handlers=False, once=True),
        timeout=120))


def test_once_publishes_what_is_new_and_exits(dovecot: Dovecot, kafka: KafkaForImap) -> None:
    dovecot.create_folder(FOLDER)
    dovecot.append_many([make_mail(n) for n in range(5)], FOLDER)
    # Fresh topics may have no leader yet; --once would stop on the start-up read's NOT_LEADER_FOR_PARTITION.
    wait_until_the_topics_answer(kafka)
    assert _once(dovecot, kafka) == EXIT_OK
    assert len(kafka.read(kafka.raw_mail, RawMail)) == 5

    assert _once(dovecot, kafka) == EXIT_OK  # nothing new: nothing published twice
    assert len(kafka.read(kafka.raw_mail, RawMail)) == 5

    dovecot.append_many([make_mail(n) for n in range(5, 7)], FOLDER)
    assert _once(dovecot, kafka) == EXIT_OK
    subjects = sorted(record.subject or "" for _key, record in kafka.read(kafka.raw_mail, RawMail))
    assert subjects == sorted(f"Control Cluster Details #{n}" for n in range(7))


def test_once_with_the_server_down_fails_fast(dovecot: Dovecot, kafka: KafkaForImap) -> None:
    dovecot.stop()
    assert _once(dovecot, kafka) == EXIT_FATAL
