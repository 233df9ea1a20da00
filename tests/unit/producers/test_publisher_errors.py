"""The publisher's one classification of librdkafka errors: an outage is transient, a refusal of the record is not.

Issue 12: a mail that waited out ``delivery.timeout.ms`` while the broker was down came back as
``_MSG_TIMED_OUT``, which librdkafka does not flag ``retriable()``; the IMAP producer took it for a
permanent refusal and dead-lettered good mail.
"""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime

import pytest
from confluent_kafka import KafkaError

from producers.errors import ProducerError
from producers.publisher import KafkaPublisher, PublishError, is_transient
from schemas.codec import make_codec
from schemas.errors import RcaflowError
from schemas.records import Checkpoint, SourceKind
from schemas.topics import INGEST_CHECKPOINTS

TRANSIENT = [
    KafkaError._MSG_TIMED_OUT,  # the bug: "Local: Message timed out" after a 30 s outage
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._QUEUE_FULL,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.NETWORK_EXCEPTION,
    KafkaError.BROKER_NOT_AVAILABLE,
]
PERMANENT = [
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.INVALID_MSG,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    KafkaError._FATAL,
]


@pytest.mark.parametrize("code", TRANSIENT, ids=lambda c: KafkaError(c).name())
def test_an_outage_is_transient_even_when_librdkafka_does_not_flag_it_retriable(code: int) -> None:
    err = KafkaError(code)
    assert not err.retriable()  # what librdkafka says on its own for most of these
    exc = PublishError.from_kafka("broker refused record for x.raw-mail: " + err.str(), err, topic="x.raw-mail")
    assert is_transient(err)
    assert exc.retriable is True
    assert exc.code == code and exc.topic == "x.raw-mail"


@pytest.mark.parametrize("code", PERMANENT, ids=lambda c: KafkaError(c).name())
def test_a_refusal_of_the_record_is_permanent(code: int) -> None:
    exc = PublishError.from_kafka("refused", KafkaError(code), topic="x.raw-mail")
    assert exc.retriable is False
    assert exc.code == code


def test_librdkafkas_own_retriable_flag_counts_and_a_fatal_error_never_does() -> None:
    assert is_transient(KafkaError(KafkaError.UNKNOWN, retriable=True))
    assert not is_transient(KafkaError(KafkaError._MSG_TIMED_OUT, fatal=True))


def test_the_error_is_typed_under_the_error_root() -> None:
    exc = PublishError.from_kafka("timed out", KafkaError(KafkaError._MSG_TIMED_OUT), topic="t")
    assert isinstance(exc, ProducerError) and isinstance(exc, RcaflowError)
    assert str(exc) == "timed out"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_record_that_waits_out_the_delivery_timeout_without_a_broker_is_a_transient_error() -> None:
    """The real librdkafka path: nothing listens, so the record times out in the local queue."""
    publisher = KafkaPublisher(f"127.0.0.1:{_closed_port()}", make_codec(None), prefix="x.",
                               delivery_timeout_ms=300)
    record = Checkpoint(tenant="acme", mailbox="m", kind=SourceKind.IMAP, uidvalidity=1, last_uid=1,
                        updated_at=datetime.now(UTC))

    async def publish() -> None:
        await asyncio.wait_for(publisher.publish(INGEST_CHECKPOINTS, "m", record), 20)

    try:
        with pytest.raises(PublishError) as caught:
            asyncio.run(publish())
    finally:
        publisher.close_sync(timeout=0)
    assert caught.value.code == KafkaError._MSG_TIMED_OUT
    assert caught.value.retriable is True
    assert "Message timed out" in str(caught.value)
