"""IMAP IDLE producer: one mailbox folder onto raw-mail, lossless and repeat-free."""

from typing import TYPE_CHECKING

from schemas.lazy import lazy_exports

if TYPE_CHECKING:
    from producers.imap.backoff import backoff_ceiling, backoff_delay, backoff_schedule
    from producers.imap.config import AfterIngest, BackoffConfig, ImapConfig, TlsMode
    from producers.imap.errors import (
        CheckpointError,
        ImapAuthError,
        ImapConnectionError,
        ImapMailboxError,
        ImapProducerError,
    )
    from producers.imap.producer import ImapProducer, IngestStats
    from producers.imap.run import EXIT_AUTH, EXIT_FATAL, EXIT_OK, ingest
    from producers.imap.state import CheckpointReader, KafkaCheckpointReader
    from producers.recent_ids import RecentIds

_EXPORTS = {
    "backoff_ceiling": "producers.imap.backoff",
    "backoff_delay": "producers.imap.backoff",
    "backoff_schedule": "producers.imap.backoff",
    "AfterIngest": "producers.imap.config",
    "BackoffConfig": "producers.imap.config",
    "ImapConfig": "producers.imap.config",
    "TlsMode": "producers.imap.config",
    "CheckpointError": "producers.imap.errors",
    "ImapAuthError": "producers.imap.errors",
    "ImapConnectionError": "producers.imap.errors",
    "ImapMailboxError": "producers.imap.errors",
    "ImapProducerError": "producers.imap.errors",
    "ImapProducer": "producers.imap.producer",
    "IngestStats": "producers.imap.producer",
    "EXIT_AUTH": "producers.imap.run",
    "EXIT_FATAL": "producers.imap.run",
    "EXIT_OK": "producers.imap.run",
    "ingest": "producers.imap.run",
    "CheckpointReader": "producers.imap.state",
    "KafkaCheckpointReader": "producers.imap.state",
    "RecentIds": "producers.recent_ids",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "EXIT_AUTH",
    "EXIT_FATAL",
    "EXIT_OK",
    "AfterIngest",
    "BackoffConfig",
    "CheckpointError",
    "CheckpointReader",
    "ImapAuthError",
    "ImapConfig",
    "ImapConnectionError",
    "ImapMailboxError",
    "ImapProducer",
    "ImapProducerError",
    "IngestStats",
    "KafkaCheckpointReader",
    "RecentIds",
    "TlsMode",
    "backoff_ceiling",
    "backoff_delay",
    "backoff_schedule",
    "ingest",
]
