"""The IMAP producer's publishes during a broker outage: retried with capped backoff, never dead-lettered.

No IMAP server and no broker: a scripted publisher answers each publish, the injected sleep records the
backoff. The end-to-end case (real dovecot, real Kafka stopped and started) is
``tests/integration/imap/test_imap_broker_outage.py``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest
from confluent_kafka import KafkaError

from producers.imap import ImapConfig, ImapProducer
from producers.imap.headers import MailHeaders
from producers.imap.session import Envelope
from producers.publisher import Delivery, PublishError
from schemas.records import Checkpoint, Record
from schemas.topics import DEAD_LETTER, INGEST_CHECKPOINTS, RAW_MAIL, TopicSpec

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TIMED_OUT = KafkaError._MSG_TIMED_OUT
TOO_LARGE = KafkaError.MSG_SIZE_TOO_LARGE


class ScriptedPublisher:
    """Answers the publishes to each topic from a script of error codes; then acks. Records every attempt."""

    def __init__(self, script: dict[str, list[int]], on_attempt: object = None) -> None:
        self.script = {name: list(codes) for name, codes in script.items()}
        self.attempts: list[str] = []
        self.acked: list[tuple[str, Record]] = []
        self.on_attempt = on_attempt

    async def publish(self, spec: TopicSpec, key: str, record: Record) -> Delivery:
        self.attempts.append(spec.name)
        if callable(self.on_attempt):
            self.on_attempt(len(self.attempts))
        codes = self.script.get(spec.name, [])
        if codes:
            err = KafkaError(codes.pop(0))
            raise PublishError.from_kafka(f"broker refused record for x.{spec.name}: {err.str()}", err,
                                          topic=f"x.{spec.name}")
        self.acked.append((spec.name, record))
        return Delivery(spec.name, 0, len(self.acked))

    async def close(self) -> None:
        return None


class NoReader:
    def load(self, mailbox: str) -> Checkpoint | None:
        raise AssertionError("not used")

    def message_ids_since(self, tenant: str, mailbox: str, since: datetime) -> list[str]:
        raise AssertionError("not used")


def _producer(publisher: ScriptedPublisher, sleeps: list[float]) -> ImapProducer:
    config = ImapConfig.model_validate({"host": "127.0.0.1", "port": 1, "tls": "plain", "allow_plain": True,
                                        "username": "u", "password": "p", "tenant": "acme"})

    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    return ImapProducer(config, publisher, NoReader(), topic_prefix="x.", sleep=sleep, clock=lambda: NOW)


MAIL = b"Message-ID: <m1@example.com>\r\nSubject: disk full\r\n\r\nbody\r\n"
ENV = Envelope(uid=7, size=len(MAIL), headers=MAIL.split(b"\r\n\r\n")[0] + b"\r\n", internaldate=NOW)
HEAD = MailHeaders(message_id="<m1@example.com>", sender="a@example.com", subject="disk full")


def _logged(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "producers.imap.producer"]


def test_a_mail_the_broker_times_out_is_retried_with_backoff_until_acked_not_dead_lettered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    publisher = ScriptedPublisher({RAW_MAIL.name: [TIMED_OUT] * 9})
    sleeps: list[float] = []
    producer = _producer(publisher, sleeps)
    caplog.set_level(logging.INFO, logger="producers.imap.producer")

    assert asyncio.run(producer._publish_mail(7, "<m1@example.com>", ENV, HEAD, MAIL)) is True

    assert [name for name, _ in publisher.acked] == ["raw-mail"]
    assert "dead-letter" not in publisher.attempts
    assert sleeps == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]  # doubling, capped at 30 s, no attempt limit
    assert (producer.stats.published, producer.stats.dead_lettered, producer.stats.publish_retries) == (1, 0, 9)
    logged = _logged(caplog)
    assert len(logged) == 2, logged  # one line when the outage starts, one when acks come back: not per retry
    assert logged[0][0] == logging.WARNING and "Message timed out" in logged[0][1]
    assert logged[1][0] == logging.INFO and "acks again" in logged[1][1]


def test_a_permanent_refusal_is_dead_lettered_and_a_timed_out_dead_letter_is_retried() -> None:
    publisher = ScriptedPublisher({RAW_MAIL.name: [TOO_LARGE], DEAD_LETTER.name: [TIMED_OUT, TIMED_OUT]})
    sleeps: list[float] = []
    producer = _producer(publisher, sleeps)

    assert asyncio.run(producer._publish_mail(7, "<m1@example.com>", ENV, HEAD, MAIL)) is True

    assert publisher.attempts == ["raw-mail", "dead-letter", "dead-letter", "dead-letter"]
    [(name, letter)] = publisher.acked
    assert name == "dead-letter" and "Message size too large" in getattr(letter, "reason", "")
    assert sleeps == [0.5, 1]
    assert (producer.stats.published, producer.stats.dead_lettered) == (0, 1)


def test_the_checkpoint_is_retried_too() -> None:
    publisher = ScriptedPublisher({INGEST_CHECKPOINTS.name: [KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT]})
    producer = _producer(publisher, [])
    asyncio.run(producer._checkpoint(12))
    assert producer.last_uid == 12
    assert publisher.attempts == ["ingest-checkpoints"] * 3


def test_stopped_while_the_broker_is_away_the_mail_is_neither_acked_nor_dead_lettered() -> None:
    producer: ImapProducer | None = None

    def stop_on_third(attempt: int) -> None:
        if attempt == 3 and producer is not None:
            producer.stop()

    publisher = ScriptedPublisher({RAW_MAIL.name: [TIMED_OUT] * 100}, on_attempt=stop_on_third)
    producer = _producer(publisher, [])

    with pytest.raises(PublishError) as caught:
        asyncio.run(producer._publish_mail(7, "<m1@example.com>", ENV, HEAD, MAIL))

    assert caught.value.retriable is True
    assert publisher.attempts == ["raw-mail"] * 3  # no attempt after the stop
    assert publisher.acked == []
    assert (producer.stats.published, producer.stats.dead_lettered, producer.last_uid) == (0, 0, 0)
