"""Typed Python mirrors of the canonical Avro schemas in this folder.

The ``.avsc`` files are the contract other teams read; these models exist so
that every boundary in rcaflow hands around validated, typed values instead of
dicts. ``tests/unit/schemas/test_contract.py`` fails when the two drift.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Record(BaseModel):
    """Base of every record on a topic: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Avro full name of the schema this model mirrors (``schemas/<name>.avsc``).
    avro_name: ClassVar[str] = ""

    @field_validator("*", mode="after")
    @classmethod
    def _utc_millis(cls, value: Any) -> Any:
        """Avro keeps UTC milliseconds; normalising here makes decode(encode(r)) == r."""
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            value = value.astimezone(UTC)
            return value.replace(microsecond=value.microsecond // 1000 * 1000)
        return value

    def to_avro(self) -> dict[str, Any]:
        """The datum fastavro writes: enums as their symbols, datetimes as-is."""
        return self.model_dump(mode="python")

    @classmethod
    def from_avro(cls, datum: dict[str, Any]) -> Self:
        return cls.model_validate(datum)


class SourceKind(StrEnum):
    UNKNOWN = "unknown"
    IMAP = "imap"
    MSGRAPH = "msgraph"
    FILE = "file"
    SMTP = "smtp"
    ALERTMANAGER = "alertmanager"
    EVENTS_API = "events_api"


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class IncidentState(StrEnum):
    """open: opened (count 1) or updated (count > 1); resolved: a resolved notification closed it."""

    OPEN = "open"
    RESOLVED = "resolved"


class Risk(StrEnum):
    READ = "read"
    LOW = "low"
    HIGH = "high"


class Approval(StrEnum):
    AUTO = "auto"
    REQUIRED = "required"


class Engine(StrEnum):
    POLICY = "policy"
    LLM = "llm"


class ActionState(StrEnum):
    """One value per state change; the order is the life cycle in DESIGN.md."""

    UNKNOWN = "unknown"
    PROPOSED = "proposed"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    #: Terminal: its incident resolved while it awaited approval; an approval arriving later is refused.
    WITHDRAWN = "withdrawn"


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class AuditKind(StrEnum):
    OTHER = "other"
    INGEST = "ingest"
    DECISION = "decision"
    APPROVAL = "approval"
    EXECUTION = "execution"
    ROLLBACK = "rollback"


class EvidenceStatus(StrEnum):
    SUCCESS = "success"
    ERROR = "error"
    NO_DATA = "no_data"
    SKIPPED = "skipped"


# --------------------------------------------------------------------------- raw-mail


class RawMail(Record):
    """A whole RFC 822 message as received, so parsers can be replayed later."""

    avro_name: ClassVar[str] = "rcaflow.RawMail"

    tenant: str
    message_id: str
    mailbox: str
    source: SourceKind = SourceKind.UNKNOWN
    received_at: datetime
    subject: str | None = None
    sender: str | None = None
    raw: bytes


# --------------------------------------------------------------------------- normalized


class AlertMetrics(Record):
    avro_name: ClassVar[str] = "rcaflow.AlertMetrics"

    times: int = 1
    first_occur: datetime | None = None


class RawRef(Record):
    avro_name: ClassVar[str] = "rcaflow.RawRef"

    mail_subject: str | None = None
    mail_id: str | None = None


class EventSource(Record):
    """Where an event came from, down to the raw-mail offset, for replay and audit."""

    avro_name: ClassVar[str] = "rcaflow.EventSource"

    kind: SourceKind = SourceKind.UNKNOWN
    mailbox: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None


class AlertEvent(Record):
    """The seed's event JSON (alert, severity, labels, metrics, raw) plus routing fields."""

    avro_name: ClassVar[str] = "rcaflow.AlertEvent"

    tenant: str
    event_id: str
    fingerprint: str
    alert: str
    severity: str
    status: AlertStatus = AlertStatus.FIRING
    alert_class: str = "unclassified"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    metrics: AlertMetrics = Field(default_factory=AlertMetrics)
    raw: RawRef = Field(default_factory=RawRef)
    source: EventSource = Field(default_factory=EventSource)
    received_at: datetime
    parser: str


# --------------------------------------------------------------------------- incidents


class Incident(Record):
    """What survives dedup: one per fingerprint per dedup window."""

    avro_name: ClassVar[str] = "rcaflow.Incident"

    tenant: str
    incident_id: str
    fingerprint: str
    alert_class: str
    opened_at: datetime
    last_seen_at: datetime
    count: int = 1
    last_event_id: str
    event: AlertEvent
    state: IncidentState = IncidentState.OPEN
    #: When and by what (source and event id of the resolved notification) it resolved; None while open.
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    #: The incident group (v4): the first member's incident id; why this one is in it; the root-cause candidate.
    group_id: str | None = None
    group_reason: str | None = None
    root_candidate: str | None = None


# --------------------------------------------------------------------------- rca-result


class Evidence(Record):
    """One tool call's outcome, kept as data (query, status, upstream error)."""

    avro_name: ClassVar[str] = "rcaflow.Evidence"

    tool: str
    operation: str
    query: str
    status: EvidenceStatus = EvidenceStatus.SUCCESS
    summary: str = ""
    error: str | None = None


class ProposedAction(Record):
    avro_name: ClassVar[str] = "rcaflow.ProposedAction"

    action_id: str
    name: str
    tool: str
    operation: str
    params: dict[str, str] = Field(default_factory=dict)
    risk: Risk = Risk.LOW
    approval: Approval = Approval.AUTO
    rollback: str | None = None
    reason: str = ""


class RcaResult(Record):
    avro_name: ClassVar[str] = "rcaflow.RcaResult"

    tenant: str
    incident_id: str
    alert_class: str
    engine: Engine = Engine.POLICY
    diagnosis: str
    cause: str = ""
    confidence: float = 0.0
    evidence: list[Evidence] = Field(default_factory=list)
    actions: list[ProposedAction] = Field(default_factory=list)
    rollback: list[str] = Field(default_factory=list)
    produced_at: datetime
    incident: Incident
    model: str | None = None
    latency_ms: int | None = None
    tokens: int | None = None


# --------------------------------------------------------------------------- actions / approvals


class ActionEvent(Record):
    """One record per state change of one action; the latest per key is its state."""

    avro_name: ClassVar[str] = "rcaflow.ActionEvent"

    tenant: str
    action_id: str
    incident_id: str
    alert_class: str
    name: str
    tool: str
    operation: str
    params: dict[str, str] = Field(default_factory=dict)
    risk: Risk = Risk.LOW
    state: ActionState = ActionState.PROPOSED
    dry_run: bool = True
    reason: str = ""
    result: str | None = None
    at: datetime
    expires_at: datetime | None = None
    duration_ms: int | None = None
    #: "keep" or "undo": whether the executor rolls back an action that took effect and then failed its check.
    on_failure: str = "keep"
    rollback_of: str | None = None
    #: The inverse recorded by the executor before the effect ("tool.operation" and its params).
    undo_action: str | None = None
    undo_params: dict[str, str] = Field(default_factory=dict)
    #: The verified approver of a human decision (or the operator of a requested rollback); None otherwise.
    approver: str | None = None
    #: When the decision letting this action run was taken, and after when the executor refuses to start it.
    decided_at: datetime | None = None
    not_after: datetime | None = None
    #: ``rcf1.<key id>.<hmac>`` by whoever decided (policies.decision_signature); the executor verifies it.
    signature: str | None = None

    @property
    def outcome(self) -> str:
        """The state as people read it (messages, audit): ``dry-run`` for a dry run that went through, never
        ``succeeded``, because nothing was changed; the record's ``state`` stays the life-cycle state."""
        return DRY_RUN_OUTCOME if self.state is ActionState.SUCCEEDED and self.dry_run else self.state.value


#: What a dry run that went through is called wherever people read it.
DRY_RUN_OUTCOME = "dry-run"


class ApprovalDecision(Record):
    avro_name: ClassVar[str] = "rcaflow.ApprovalDecision"

    tenant: str
    action_id: str
    decision: Decision
    approver: str
    channel: str
    decided_at: datetime
    reason: str = ""
    #: Digest of the single-use credential the decision spent (link nonce, Slack request, DingTalk callback):
    #: the approvals topic is the replay memory every API replica and the worker read. Empty: none.
    claim_id: str = ""
    #: The API's approval signature over every other field (policies.decision_signature.ApprovalKeys); the worker
    #: applies no decision without a valid one. None: unsigned.
    signature: str | None = None


# --------------------------------------------------------------------------- audit / dead-letter / checkpoints


class AuditRecord(Record):
    """Hash-chained per tenant: ``hash = sha256(prev_hash + canonical body)``."""

    avro_name: ClassVar[str] = "rcaflow.AuditRecord"

    tenant: str
    seq: int
    at: datetime
    kind: AuditKind = AuditKind.OTHER
    actor: str
    subject_id: str
    action: str
    detail: dict[str, str] = Field(default_factory=dict)
    prev_hash: str
    hash: str


class DeadLetter(Record):
    """Input a stage could not handle, with the reason; poison input ends here, never lost."""

    avro_name: ClassVar[str] = "rcaflow.DeadLetter"

    tenant: str
    stage: str
    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: bytes | None = None
    payload: bytes
    reason: str
    error_type: str
    at: datetime
    #: Size and SHA-256 of the whole input, so a ``truncated`` payload still names what it was cut from.
    payload_size: int | None = None
    payload_sha256: str | None = None
    truncated: bool = False


class Checkpoint(Record):
    """Ingest position of one mailbox (IMAP UIDVALIDITY/UID, Graph delta link)."""

    avro_name: ClassVar[str] = "rcaflow.Checkpoint"

    tenant: str
    mailbox: str
    kind: SourceKind = SourceKind.UNKNOWN
    uidvalidity: int | None = None
    last_uid: int | None = None
    delta_link: str | None = None
    updated_at: datetime


ALL_RECORDS: tuple[type[Record], ...] = (
    RawMail,
    AlertEvent,
    Incident,
    RcaResult,
    ActionEvent,
    ApprovalDecision,
    AuditRecord,
    DeadLetter,
    Checkpoint,
)
