"""Fixtures: a private dovecot per test and the producer's topics under the test's prefix."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.codec import Codec, make_codec
from schemas.topics import DEAD_LETTER, INGEST_CHECKPOINTS, RAW_MAIL
from tests.integration.imap.imap_helpers import Dovecot, KafkaForImap, make_dovecot, wait_until_the_topics_answer


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    yield from make_dovecot(idle=True)


@pytest.fixture
def dovecot_no_idle() -> Iterator[Dovecot]:
    yield from make_dovecot(idle=False)


@pytest.fixture
def dovecot_tls() -> Iterator[Dovecot]:
    yield from make_dovecot(tls=True)


@pytest.fixture
def codec() -> Codec:
    return make_codec(None)


@pytest.fixture
def kafka(broker: Any, topic_prefix: str, codec: Codec) -> KafkaForImap:
    """The topics the IMAP producer writes, created under this test's prefix."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    specs = (RAW_MAIL, DEAD_LETTER, INGEST_CHECKPOINTS)
    new = [
        NewTopic(
            spec.full_name(topic_prefix), num_partitions=spec.partitions, replication_factor=1, config=spec.configs
        )
        for spec in specs
    ]
    for future in admin.create_topics(new, operation_timeout=30).values():
        future.result(60)
    kafka = KafkaForImap(
        bootstrap=broker.bootstrap,
        prefix=topic_prefix,
        codec=codec,
        raw_mail=RAW_MAIL.full_name(topic_prefix),
        dead_letter=DEAD_LETTER.full_name(topic_prefix),
        checkpoints=INGEST_CHECKPOINTS.full_name(topic_prefix),
    )
    # Created a moment ago, the topics may have no leader yet: a producer's start-up read would fail once and
    # reconnect, which tests that count failures or reconnects (a refused login: none) would take for a bug.
    wait_until_the_topics_answer(kafka)
    return kafka
