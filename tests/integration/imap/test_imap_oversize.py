"""A mail bigger than raw-mail can hold, on a real dovecot and the real broker: dead-lettered once, never retried.

The mailbox allows more than rcaflow can publish (``max_message_bytes`` set to Graph's 25 MiB here); the
producer still refuses above ``schemas.limits.MAX_MAIL_BYTES``, names the mail and its size in the dead
letter, moves its checkpoint past it, and after a restart does not dead-letter it again.
"""

from __future__ import annotations

import asyncio

from producers.imap import ImapProducer
from schemas.limits import MAX_MAIL_BYTES, MiB
from schemas.records import DeadLetter, RawMail
from tests.integration.imap.imap_helpers import Dovecot, KafkaForImap, imap_config, make_mail, running
from tests.integration.imap.test_imap_producer import FOLDER, TENANT, caught_up, message_id_of

BIG_BODY = "x" * (12 * MiB)  # above raw-mail's 11 MiB record limit, below Graph's 25 MiB


def test_a_mail_above_the_mail_limit_is_dead_lettered_once_and_passed(dovecot: Dovecot, kafka: KafkaForImap) -> None:
    first, big, last = make_mail(1), make_mail(2, body=BIG_BODY), make_mail(3)
    dovecot.create_folder(FOLDER)
    dovecot.append_many([first, big, last], FOLDER)
    config = imap_config(dovecot, max_message_bytes=25 * MiB)

    async def first_life() -> ImapProducer:
        async with running(config, kafka) as producer:
            await caught_up(producer)
            return producer

    producer = asyncio.run(first_life())
    assert producer.last_uid == 3  # the checkpoint moved past the big mail
    assert sorted(rec.raw for _, rec in kafka.read(kafka.raw_mail, RawMail)) == sorted([first, last])
    [(_, dead)] = kafka.read(kafka.dead_letter, DeadLetter)
    assert dead.tenant == TENANT and dead.truncated
    assert dead.payload_size is not None and dead.payload_size >= len(big)
    assert f"UID 2: message {message_id_of(big)} of {dead.payload_size} bytes" in dead.reason
    assert f"max_message_bytes={MAX_MAIL_BYTES}" in dead.reason
    assert message_id_of(big).encode() in dead.payload and len(dead.payload) < 4096  # its headers, not its body

    later = make_mail(4)

    async def second_life() -> None:
        async with running(config, kafka) as producer:
            await caught_up(producer)
            await asyncio.to_thread(dovecot.append, later, FOLDER)
            await asyncio.to_thread(kafka.wait, kafka.raw_mail, RawMail, 3)

    asyncio.run(second_life())
    assert sorted(rec.raw for _, rec in kafka.read(kafka.raw_mail, RawMail)) == sorted([first, last, later])
    assert len(kafka.read(kafka.dead_letter, DeadLetter)) == 1  # not fetched and refused again
