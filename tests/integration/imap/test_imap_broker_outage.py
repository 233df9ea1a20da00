"""The broker stops for longer than the publisher's delivery timeout while mail keeps arriving (issue 12).

Real dovecot, real embedded Kafka of this test's own (stopped and started again on the same port and data
dir), a publisher with a 2 s ``delivery.timeout.ms`` so a few seconds of outage make every record come
back ``Local: Message timed out``. Before the fix the producer took that for a permanent refusal and
dead-lettered good mail (or exited when the dead letter timed out too). Now: every mail ends on raw-mail,
none in dead-letter, the checkpoint does not pass a mail before its ack, and the producer keeps running
without even dropping its IMAP session.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from producers.imap import ImapProducer, KafkaCheckpointReader
from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import Checkpoint, DeadLetter, RawMail
from schemas.topics import DEAD_LETTER, INGEST_CHECKPOINTS, RAW_MAIL
from streams.broker import DEFAULT_CACHE_ROOT, BrokerError, EmbeddedBroker, choose_broker
from streams.broker import base as broker_base
from streams.broker.base import free_loopback_port
from tests.integration.imap.imap_helpers import (
    Dovecot,
    KafkaForImap,
    R,
    imap_config,
    make_mail,
    wait_until_the_topics_answer,
)
from tests.integration.imap.test_imap_producer import FOLDER, TENANT, caught_up, message_id_of

DELIVERY_TIMEOUT_MS = 2_000
#: Longer than the delivery timeout several times over: every record published meanwhile times out.
OUTAGE_S = 3 * DELIVERY_TIMEOUT_MS / 1000
BEFORE, DURING = 2, 6


@pytest.fixture
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A real Kafka this test may stop and start again (same data dir, same port)."""
    if os.environ.get("RCAFLOW_TEST_BROKER", "kafka") != "kafka":
        pytest.skip("needs an embedded Kafka it can stop and restart (Tansu loses its data on restart)")
    cache = Path(os.environ.get("RCAFLOW_CACHE_DIR", str(DEFAULT_CACHE_ROOT)))
    broker = choose_broker("kafka", tmp_path_factory.mktemp("outage-broker"), cache, port=free_loopback_port())
    try:
        broker.start()
    except BrokerError as exc:
        pytest.fail(f"cannot start a Kafka broker of this test's own: {exc}")
    try:
        yield broker
    finally:
        broker.stop()


def start_again_on_the_same_port(broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start the stopped broker on its port at once.

    The seam refuses a fixed port that a plain bind() cannot take, and the connections the stop closed
    keep it in TIME_WAIT for up to a minute; Kafka itself binds with SO_REUSEADDR (every JVM server
    socket does), so the check is skipped here rather than waited out.
    """
    with monkeypatch.context() as patch:
        patch.setattr(broker_base, "port_is_free", lambda port: True)
        broker.start()


def read_settled(kafka: KafkaForImap, topic: str, record_type: type[R], timeout: float = 30.0) -> list[tuple[str, R]]:
    """Read a topic once its partitions have leaders again (a restarted broker answers NOT_LEADER for a while)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return kafka.read(topic, record_type)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def topics_on(broker: EmbeddedBroker, prefix: str, codec: Codec) -> KafkaForImap:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    new = [NewTopic(spec.full_name(prefix), num_partitions=spec.partitions, replication_factor=1,
                    config=spec.configs) for spec in (RAW_MAIL, DEAD_LETTER, INGEST_CHECKPOINTS)]
    for future in admin.create_topics(new, operation_timeout=30).values():
        future.result(60)
    return KafkaForImap(bootstrap=broker.bootstrap, prefix=prefix, codec=codec, raw_mail=RAW_MAIL.full_name(prefix),
                        dead_letter=DEAD_LETTER.full_name(prefix), checkpoints=INGEST_CHECKPOINTS.full_name(prefix))


async def until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not (callable(condition) and condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


def outcome(task: asyncio.Task[None]) -> str:
    return "cancelled" if task.cancelled() else repr(task.exception())


def test_mail_published_while_the_broker_is_down_past_the_delivery_timeout_waits_and_is_not_dead_lettered(
    own_broker: EmbeddedBroker, dovecot: Dovecot, codec: Codec, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka = topics_on(own_broker, topic_prefix, codec)
    # Topics created a moment ago may have no leader yet: the producer's start-up read would fail once
    # (NOT_LEADER_FOR_PARTITION), reconnect and count a failure this test reserves for the outage.
    wait_until_the_topics_answer(kafka)
    dovecot.create_folder(FOLDER)
    before = [make_mail(n) for n in range(BEFORE)]
    during = [make_mail(n) for n in range(BEFORE, BEFORE + DURING)]
    dovecot.append_many(before, FOLDER)

    async def scenario() -> ImapProducer:
        publisher = KafkaPublisher(kafka.bootstrap, codec, prefix=kafka.prefix, delivery_timeout_ms=DELIVERY_TIMEOUT_MS)
        reader = KafkaCheckpointReader(kafka.bootstrap, codec, prefix=kafka.prefix)
        producer = ImapProducer(imap_config(dovecot), publisher, reader, topic_prefix=kafka.prefix)
        task = asyncio.create_task(producer.run())
        try:
            await caught_up(producer)
            assert producer.last_uid == BEFORE

            await asyncio.to_thread(own_broker.stop)
            stopped = time.monotonic()
            await asyncio.to_thread(dovecot.append_many, during, FOLDER)
            # Every mail of the outage was tried and timed out at least once; nothing passed the checkpoint.
            await until(lambda: producer.stats.publish_retries >= DURING or task.done(), 30, "the first timeouts")
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
            assert not task.done(), f"the producer stopped during the outage: {outcome(task)}"
            assert producer.stats.dead_lettered == 0
            assert producer.last_uid == BEFORE

            # On this (main) thread, blocking the loop meanwhile: the broker dies with the thread that started
            # it (PR_SET_PDEATHSIG), and asyncio.to_thread's worker threads end with the loop.
            start_again_on_the_same_port(own_broker, monkeypatch)
            await until(lambda: producer.last_uid == BEFORE + DURING, 60, "the checkpoint after the outage")
            await caught_up(producer)
            assert not task.done(), f"the producer stopped after the outage: {outcome(task)}"
        finally:
            producer.stop()
            try:
                await asyncio.wait({task}, timeout=30)
            finally:
                await publisher.close()
        task.result()  # stopped cleanly
        return producer

    producer = asyncio.run(scenario())
    keys = {key for key, _ in read_settled(kafka, kafka.raw_mail, RawMail)}
    assert keys == {f"{TENANT}:{message_id_of(m)}" for m in before + during}  # each at least once
    assert read_settled(kafka, kafka.dead_letter, DeadLetter) == []
    assert read_settled(kafka, kafka.checkpoints, Checkpoint)[-1][1].last_uid == BEFORE + DURING
    stats = producer.stats
    assert (stats.published, stats.dead_lettered) == (BEFORE + DURING, 0)
    assert stats.publish_retries >= DURING
    assert stats.failures == 0  # retried in place: the IMAP session was never torn down for the broker
