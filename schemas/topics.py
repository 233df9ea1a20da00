"""The one table of rcaflow topics: name, key, value record, partitions, configs.

Topics are created from this table idempotently at start-up; nothing else in
the code spells a topic name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas import limits as _limits
from schemas.records import (
    ActionEvent,
    AlertEvent,
    ApprovalDecision,
    AuditRecord,
    Checkpoint,
    DeadLetter,
    Incident,
    RawMail,
    RcaResult,
    Record,
)

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic: ``name`` is the logical name; the configured prefix is added on use."""

    name: str
    key: str
    value: type[Record]
    partitions: int = 3
    configs: dict[str, str] = field(default_factory=dict)

    def full_name(self, prefix: str = "") -> str:
        return f"{prefix}{self.name}"


#: Alert mails with attachments or long HTML tables exceed Kafka's 1 MiB default; the per-mail limit
#: (10 MiB) must fit, plus the record's own fields. The value lives in schemas/limits.py (re-exported here).
MAX_MAIL_RECORD_BYTES = _limits.MAX_MAIL_RECORD_BYTES

RAW_MAIL = TopicSpec(
    "raw-mail",
    "tenant:message-id",
    RawMail,
    configs={"retention.ms": str(7 * DAY_MS), "max.message.bytes": str(MAX_MAIL_RECORD_BYTES)},
)
NORMALIZED = TopicSpec("normalized", "tenant:fingerprint", AlertEvent)
INCIDENTS = TopicSpec("incidents", "tenant:fingerprint", Incident)
RCA_RESULT = TopicSpec("rca-result", "tenant:incident-id", RcaResult)
ACTIONS = TopicSpec("actions", "tenant:action-id", ActionEvent)
APPROVALS = TopicSpec("approvals", "tenant:action-id", ApprovalDecision)
AUDIT = TopicSpec("audit", "tenant", AuditRecord, configs={"retention.ms": str(365 * DAY_MS)})
DEAD_LETTER = TopicSpec(
    "dead-letter",
    "source topic",
    DeadLetter,
    configs={"retention.ms": str(30 * DAY_MS), "max.message.bytes": str(MAX_MAIL_RECORD_BYTES)},
)
INGEST_CHECKPOINTS = TopicSpec(
    "ingest-checkpoints", "mailbox", Checkpoint, partitions=1, configs={"cleanup.policy": "compact"}
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    RAW_MAIL,
    NORMALIZED,
    INCIDENTS,
    RCA_RESULT,
    ACTIONS,
    APPROVALS,
    AUDIT,
    DEAD_LETTER,
    INGEST_CHECKPOINTS,
)
