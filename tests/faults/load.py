"""Putting load on a pipeline: mails into dovecot, events into POST /events, raw-mail records straight onto Kafka."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import RawMail, SourceKind
from schemas.topics import RAW_MAIL
from tests.faults import mails
from tests.integration.imap.imap_helpers import Dovecot


def run_id() -> str:
    return uuid.uuid4().hex[:6]


def deliver(server: Dovecot, raws: Iterable[bytes], folder: str = "INBOX") -> list[str]:
    """Drop mails into the Maildir (as an MDA would); returns their Message-IDs."""
    ids = []
    for raw in raws:
        server.deliver_file(raw, folder=folder)
        ids.append(mails.message_id_of(raw))
    return ids


def normal_mails(run: str, numbers: Iterable[int]) -> list[bytes]:
    return [mails.normal_mail(run, n) for n in numbers]


def publish_raw(bootstrap: str, codec: Codec, prefix: str, tenant: str, raws: Iterable[bytes]) -> list[str]:
    """Put mails on raw-mail as the IMAP producer would (for cases about later stages); returns Message-IDs."""
    publisher = KafkaPublisher(bootstrap, codec, prefix)
    ids = []
    try:
        for raw in raws:
            message_id = mails.message_id_of(raw)
            record = RawMail(tenant=tenant, message_id=message_id, mailbox="faults", source=SourceKind.FILE,
                             received_at=datetime.now(UTC), raw=raw)
            publisher.publish_sync(RAW_MAIL, f"{tenant}:{message_id}", record)
            ids.append(message_id)
    finally:
        publisher.close_sync()
    return ids


def progress(count: Callable[[], int], at_least: int, timeout: float, alive: Callable[[], None],
             poll: Callable[[], None]) -> int:
    """Wait until ``count()`` reaches ``at_least`` (the moment to inject a fault), or the timeout."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive()
        poll()
        now = count()
        if now >= at_least:
            return now
    return count()
