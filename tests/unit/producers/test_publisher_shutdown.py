"""Ctrl-C with deliveries pending: the publisher shuts down cleanly and says how many records were not delivered.

Before the fix, a delivery report arriving after ``asyncio.run`` had closed its loop was handed to that loop
(``call_soon_threadsafe``): "Event loop is closed" killed the poll thread with a traceback, and nobody learnt
what became of the records.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
from datetime import UTC, datetime

import pytest

from producers.publisher import KafkaPublisher, ShutdownReport
from schemas.codec import make_codec
from schemas.records import Checkpoint, SourceKind
from schemas.topics import INGEST_CHECKPOINTS

RECORDS = 5


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def checkpoint(n: int) -> Checkpoint:
    return Checkpoint(tenant="acme", mailbox="m", kind=SourceKind.IMAP, uidvalidity=1, last_uid=n,
                      updated_at=datetime.now(UTC))


async def send_then_ctrl_c(publisher: KafkaPublisher, count: int) -> None:
    """``count`` publishes in flight, then SIGINT as a terminal sends it: asyncio.run cancels them and closes
    its loop before the broker has answered."""
    sends = [asyncio.create_task(publisher.publish(INGEST_CHECKPOINTS, f"m{n}", checkpoint(n)))
             for n in range(count)]
    await asyncio.sleep(0)  # every task has handed its record to librdkafka and waits for the ack
    signal.raise_signal(signal.SIGINT)
    await asyncio.gather(*sends)


@pytest.fixture
def thread_failures(monkeypatch: pytest.MonkeyPatch) -> list[threading.ExceptHookArgs]:
    """Exceptions that ended a background thread (what would print as a traceback)."""
    failures: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", failures.append)
    return failures


def test_records_refused_after_their_sender_was_interrupted_are_reported_not_a_thread_traceback(
    thread_failures: list[threading.ExceptHookArgs], caplog: pytest.LogCaptureFixture
) -> None:
    # No broker listens: every record waits out its delivery timeout, after the loop of its sender is closed.
    publisher = KafkaPublisher(f"127.0.0.1:{_closed_port()}", make_codec(None), prefix="x.",
                               delivery_timeout_ms=300)
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(send_then_ctrl_c(publisher, RECORDS))

    with caplog.at_level(logging.INFO, logger="producers.publisher"):
        report = publisher.close_sync(timeout=30)

    assert report == ShutdownReport(delivered_unheard=0, refused_unheard=RECORDS, queued=0)
    assert report.undelivered == RECORDS
    assert [r.getMessage() for r in caplog.records if r.name == "producers.publisher"] == [
        f"publisher closed with {RECORDS} records not delivered: 0 still queued after the 30.0 s flush, "
        f"{RECORDS} refused by the broker after their senders had stopped waiting (x.ingest-checkpoints: "
        f"{RECORDS})"]
    assert thread_failures == []


def test_records_still_queued_when_the_flush_time_is_up_are_counted(
    thread_failures: list[threading.ExceptHookArgs], caplog: pytest.LogCaptureFixture
) -> None:
    publisher = KafkaPublisher(f"127.0.0.1:{_closed_port()}", make_codec(None), prefix="x.",
                               delivery_timeout_ms=300_000)
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(send_then_ctrl_c(publisher, RECORDS))

    with caplog.at_level(logging.WARNING, logger="producers.publisher"):
        report = publisher.close_sync(timeout=0)

    assert report == ShutdownReport(delivered_unheard=0, refused_unheard=0, queued=RECORDS)
    assert [r.getMessage() for r in caplog.records if r.name == "producers.publisher"] == [
        f"publisher closed with {RECORDS} records not delivered: {RECORDS} still queued after the 0.0 s flush, "
        "0 refused by the broker after their senders had stopped waiting"]
    assert thread_failures == []
