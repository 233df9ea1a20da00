"""Mails above the mail size limit: what the dead letter of one keeps, for the IMAP and Graph producers alike.

Such a mail can never reach raw-mail (its records are bounded by ``schemas.limits``), and a mailbox
producer that only kept retrying would fetch it on every round and never move its checkpoint past it.
So it is dead-lettered once, with its size, its ids and its header block (the whole mail would not fit
a dead-letter record either), and the producer moves on; the mail itself stays in the mailbox.
"""

from __future__ import annotations

from datetime import datetime

from schemas.limits import KiB
from schemas.records import DeadLetter

#: The most of a mail's header block a dead letter keeps (Received chains of big mails can be long).
MAX_HEAD_BYTES = 64 * KiB
#: The dead-letter ``source_topic`` of a refused mail: it never reached raw-mail.
SOURCE = "raw-mail"


def header_block(mime: bytes, limit: int = MAX_HEAD_BYTES) -> bytes:
    """The header block of an RFC 822 message (up to the first empty line), at most ``limit`` bytes."""
    end = mime.find(b"\r\n\r\n")
    if end < 0:
        end = mime.find(b"\n\n")
    head = mime if end < 0 else mime[: end + 2]
    return head[:limit]


def oversize_dead_letter(
    *, tenant: str, stage: str, mailbox: str, message_id: str | None, where: str, size: int, limit: int,
    head: bytes, sha256: str, at: datetime, error_type: str = "MailTooLargeError",
) -> DeadLetter:
    """The dead letter of one refused mail; ``where`` says how to find it in the mailbox (UID, Graph id)."""
    mid = message_id or "(no Message-ID)"
    return DeadLetter(
        tenant=tenant, stage=stage, source_topic=SOURCE, key=f"{tenant}:{mid}".encode(),
        payload=head, payload_size=size, payload_sha256=sha256, truncated=True,
        reason=(f"mail too large: {size} bytes, above the {limit}-byte mail limit; Message-ID {mid}, "
                f"{where} in {mailbox}; not published, it stays in the mailbox (payload: its header block)")[:4000],
        error_type=error_type, at=at,
    )
