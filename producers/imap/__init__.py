"""IMAP IDLE producer: one mailbox folder onto raw-mail, lossless and repeat-free."""

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
