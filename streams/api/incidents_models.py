"""The response bodies of the incident API: pydantic models, so /openapi.json documents every field.

They are views for people and scripts, not topic records: times are ISO 8601 UTC, enums their values,
and nothing here carries a secret (signatures are reduced to "verified or not").
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

TimelineKind = Literal["alert", "diagnosis", "action", "approval", "audit", "resolved"]


class ShownState(StrEnum):
    """An action's ``state`` as the API, the CLI and the console say it: its life-cycle state
    (``schemas.records.ActionState``), except ``dry-run`` for a dry run that went through
    (``ActionEvent.outcome``): nothing was changed, so it never reads ``succeeded``. A failed dry run stays
    ``failed`` (with ``dry_run: true``)."""

    UNKNOWN = "unknown"
    PROPOSED = "proposed"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DRY_RUN = "dry-run"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    WITHDRAWN = "withdrawn"


class AlertEntry(BaseModel):
    """One incident record: the alert that opened it, a repeat dedup folded into it, or the resolution."""

    at: datetime = Field(description="when the incident record was written (last_seen_at)")
    event_id: str
    alert: str
    severity: str
    status: str
    count: int = Field(description="how many alerts the incident had folded in at this point")
    labels: dict[str, str]
    annotations: dict[str, str]
    source: str = Field(description="where the alert came from: imap, msgraph, alertmanager, events_api ...")
    mail_subject: str | None = None


class EvidenceEntry(BaseModel):
    """One tool call of the investigation, with the exact query it ran and what came back."""

    tool: str
    operation: str
    query: str
    status: str
    summary: str
    error: str | None = None


class ProposedActionEntry(BaseModel):
    action_id: str
    name: str
    tool: str
    operation: str
    params: dict[str, str]
    risk: str
    approval: str
    reason: str


class DiagnosisEntry(BaseModel):
    """One rca-result: the policy's triage, or the LLM's answer."""

    at: datetime
    engine: Literal["policy", "llm"]
    diagnosis: str
    cause: str
    confidence: float
    model: str | None = None
    latency_ms: int | None = None
    evidence: list[EvidenceEntry]
    proposed_actions: list[ProposedActionEntry]
    rollback: list[str]


class ActionStateEntry(BaseModel):
    """One state change of an action, as the actions topic holds it."""

    at: datetime
    state: ShownState
    result: str | None = None
    approver: str | None = None
    dry_run: bool
    duration_ms: int | None = None


class ActionSummary(BaseModel):
    """An action and its latest state (``GET /actions``, and each action of an incident)."""

    tenant: str
    action_id: str
    incident_id: str
    alert_class: str
    name: str
    tool: str
    operation: str
    params: dict[str, str]
    risk: str
    state: ShownState = Field(description="the latest state; `dry-run` for a dry run that went through")
    dry_run: bool
    reason: str
    result: str | None = None
    approver: str | None = None
    at: datetime = Field(description="time of the latest state")
    expires_at: datetime | None = Field(default=None, description="end of the approval window, if any")
    rollback_of: str | None = Field(default=None, description="the action this one rolls back")


class ActionHistory(ActionSummary):
    history: list[ActionStateEntry] = Field(description="every state change, oldest first")


class ApprovalEntry(BaseModel):
    """A decision read from the approvals topic: who, when, via which channel."""

    at: datetime
    action_id: str
    decision: Literal["approve", "reject"]
    approver: str
    via: str = Field(description="slack, dingtalk, link or api")
    reason: str
    verified: bool = Field(description="carries the API's valid approval signature (the worker applies only those)")


class AuditStep(BaseModel):
    at: datetime
    seq: int
    kind: str
    actor: str
    subject_id: str
    action: str
    detail: dict[str, str]


class TimelineEntry(BaseModel):
    """Everything above on one time axis, for a reader scrolling the incident."""

    at: datetime
    kind: TimelineKind
    summary: str
    ref: str | None = Field(default=None, description="event, action or audit id the entry is about")


class IncidentSummary(BaseModel):
    tenant: str
    incident_id: str
    fingerprint: str
    alert_class: str
    alert: str
    severity: str
    cluster: str | None = None
    namespace: str | None = None
    state: Literal["open", "resolved"]
    count: int
    opened_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None = None
    diagnosis: str | None = Field(default=None, description="the latest diagnosis (LLM when it answered)")
    actions_awaiting_approval: int


class IncidentDetail(IncidentSummary):
    resolved_by: str | None = None
    alerts: list[AlertEntry]
    diagnoses: list[DiagnosisEntry]
    actions: list[ActionHistory]
    approvals: list[ApprovalEntry]
    audit: list[AuditStep]
    timeline: list[TimelineEntry]


class IncidentPage(BaseModel):
    items: list[IncidentSummary]
    next_cursor: str | None = Field(default=None, description="pass as ?cursor= for the next page; null: last page")


class ActionPage(BaseModel):
    items: list[ActionSummary]
    next_cursor: str | None = None


class DecisionRequest(BaseModel):
    reason: str = Field(default="", max_length=500)


class DecisionResponse(BaseModel):
    """The decision is on the approvals topic, signed; the worker moves the action and the executor runs it."""

    ok: bool
    action_id: str
    decision: Literal["approve", "reject"]
    approver: str
    via: Literal["api"] = "api"


class WhoAmI(BaseModel):
    tenant: str
    approver: str | None = Field(default=None, description="api:<name> when the token may decide; null: read only")
