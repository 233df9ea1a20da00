"""The two edges of replacing a stuck producer that need no broker: a broker that is really away replaces
nothing, and an abandoned producer hands every record it held back to its sender at once, as a retry.

(The replacement itself, with a producer stuck in front of a working broker, is
tests/integration/flow/test_executor_producer_renewal.py.)
"""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime

import pytest

from producers.publisher import KafkaPublisher, PublishError
from producers.renewing_publisher import RenewingPublisher, leaders_known
from schemas.codec import make_codec
from schemas.records import Checkpoint, SourceKind
from schemas.topics import INGEST_CHECKPOINTS


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _checkpoint(n: int) -> Checkpoint:
    return Checkpoint(tenant="acme", mailbox="m", kind=SourceKind.IMAP, uidvalidity=1, last_uid=n,
                      updated_at=datetime.now(UTC))


def test_a_broker_that_is_away_replaces_no_producer(caplog: pytest.LogCaptureFixture) -> None:
    bootstrap = f"127.0.0.1:{_closed_port()}"  # nothing listens: an outage, not a stuck producer
    built: list[KafkaPublisher] = []

    def new_producer() -> KafkaPublisher:
        built.append(KafkaPublisher(bootstrap, make_codec(None), prefix="x.", delivery_timeout_ms=500))
        return built[-1]

    caplog.set_level(logging.INFO, logger="producers.renewing_publisher")

    async def scenario() -> list[PublishError]:
        publisher = RenewingPublisher(
            new_producer, probe=lambda: leaders_known({"bootstrap.servers": bootstrap}, "x.ingest-checkpoints",
                                                      timeout_s=0.5),
            stuck_after_s=0.0, probe_every_s=0.0, name="test")
        failures = []
        for n in range(2):
            with pytest.raises(PublishError) as failed:
                await publisher.publish(INGEST_CHECKPOINTS, f"m{n}", _checkpoint(n))
            failures.append(failed.value)
        publisher.close_sync(0.1)
        return failures

    failures = asyncio.run(scenario())
    assert all(f.retriable for f in failures)  # the caller retries; nothing is dropped
    assert len(built) == 1, "a producer was replaced while the broker was away"
    probed = [r.getMessage() for r in caplog.records if "the broker is not back yet" in r.getMessage()]
    assert len(probed) == 2 and "no metadata from the broker" in probed[0]


def test_an_abandoned_producer_fails_what_it_held_at_once_as_a_retry() -> None:
    # A long delivery timeout: without the purge the sender would wait a minute for its answer.
    publisher = KafkaPublisher(f"127.0.0.1:{_closed_port()}", make_codec(None), prefix="x.",
                               delivery_timeout_ms=60_000)

    async def scenario() -> list[BaseException]:
        sends = [asyncio.create_task(publisher.publish(INGEST_CHECKPOINTS, f"m{n}", _checkpoint(n)))
                 for n in range(4)]
        await asyncio.sleep(0.2)  # each record is in the producer, waiting for a broker
        await asyncio.to_thread(publisher.abandon, 5.0)
        answers = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), timeout=10)
        return [a for a in answers if isinstance(a, BaseException)]

    errors = asyncio.run(scenario())
    assert len(errors) == 4
    assert all(isinstance(e, PublishError) and e.retriable for e in errors), errors
