"""Wiring for ``rcaflow ingest imap``: Kafka publisher + checkpoint reader + producer, exit codes."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from producers.imap.config import ImapConfig
from producers.imap.errors import ImapAuthError, ImapProducerError
from producers.imap.producer import ImapProducer
from producers.imap.state import KafkaCheckpointReader
from producers.publisher import KafkaPublisher, PublishError
from producers.quota import IngestQuota

logger = logging.getLogger(__name__)

EXIT_OK = 0
#: Credentials refused: restarting will not help, so supervisors should not crash-loop on it.
EXIT_AUTH = 2
EXIT_FATAL = 1


async def ingest(
    config: ImapConfig,
    *,
    bootstrap: str,
    prefix: str = "",
    kafka_extra: dict[str, Any] | None = None,
    install_signal_handlers: bool = True,
    schema_registry_url: str | None = None,
    metrics_registry: CollectorRegistry | None = None,
    once: bool = False,
    quota: IngestQuota | None = None,
    mail_cost: Callable[[bytes], int] | None = None,
) -> int:
    """Run one mailbox producer until SIGTERM/SIGINT (or, ``once``, until caught up); the process exit code."""
    from schemas.codec import make_codec

    codec = make_codec(schema_registry_url)
    publisher = KafkaPublisher(bootstrap, codec, prefix=prefix, extra=kafka_extra)
    reader = KafkaCheckpointReader(bootstrap, codec, prefix=prefix, extra=kafka_extra)
    producer = ImapProducer(config, publisher, reader, topic_prefix=prefix, once=once, quota=quota,
                            mail_cost=mail_cost)
    if metrics_registry is not None:
        from producers.imap.metrics import ImapStatsCollector

        metrics_registry.register(ImapStatsCollector(producer, config.mailbox_id))
    loop = asyncio.get_running_loop()
    if install_signal_handlers:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, producer.stop)
    try:
        await producer.run()
        if once:
            stats = producer.stats
            logger.info("IMAP %s caught up after UID %d: %d published, %d duplicates, %d filtered, %d dead-lettered",
                        config.mailbox_id, producer.last_uid, stats.published, stats.duplicates, stats.filtered,
                        stats.dead_lettered)
        return EXIT_OK
    except ImapAuthError:
        return EXIT_AUTH  # already logged once, clearly, by the producer
    except (ImapProducerError, PublishError) as exc:
        logger.error("IMAP ingest for %s stopped: %s", config.mailbox_id, exc)
        return EXIT_FATAL
    finally:
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        await publisher.close()
