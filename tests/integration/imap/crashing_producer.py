"""Runs an ImapProducer whose publisher SIGKILLs this process right after the Nth raw-mail ack.

Used by test_imap_producer.py to crash the producer between "published" and
"checkpointed", the one window where a restart could publish a mail twice.
Arguments: <config.json> <bootstrap> <topic prefix> <kill after N raw-mail acks>.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from producers.imap import ImapConfig, ImapProducer, KafkaCheckpointReader
from producers.publisher import Delivery, KafkaPublisher
from schemas.codec import make_codec
from schemas.records import Record
from schemas.topics import RAW_MAIL, TopicSpec


class KillingPublisher:
    """The Publisher seam with a fault: dies like `kill -9` once enough raw mails are acked."""

    def __init__(self, inner: KafkaPublisher, kill_after: int) -> None:
        self._inner = inner
        self._kill_after = kill_after
        self._acked = 0

    async def publish(self, spec: TopicSpec, key: str, record: Record) -> Delivery:
        delivery = await self._inner.publish(spec, key, record)
        if spec is RAW_MAIL:
            self._acked += 1
            if self._acked >= self._kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        return delivery

    async def close(self) -> None:
        await self._inner.close()


async def main() -> None:
    config = ImapConfig.model_validate(json.loads(Path(sys.argv[1]).read_text()))
    bootstrap, prefix, kill_after = sys.argv[2], sys.argv[3], int(sys.argv[4])
    codec = make_codec(None)
    publisher = KillingPublisher(KafkaPublisher(bootstrap, codec, prefix=prefix), kill_after)
    reader = KafkaCheckpointReader(bootstrap, codec, prefix=prefix)
    await ImapProducer(config, publisher, reader, topic_prefix=prefix).run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
