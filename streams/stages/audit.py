"""normalized + actions + refused approvals → audit: one hash-chained AuditRecord per step, per tenant.

Each tenant's chain has a single writer (the worker's ``audit`` agent, fed through
one internal topic keyed by tenant), and its head is a table row, so the chain
survives restarts; a step is identified by the content of the record that caused
it, so a re-delivered or re-routed record is not audited twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from executors.audit import AuditChain
from schemas.records import ActionEvent, ActionState, AlertEvent, AuditKind, AuditRecord, DeadLetter
from schemas.topics import AUDIT
from streams.stages.approval import REFUSALS_STAGE
from streams.stages.core import Out, StageContext, StageResult

logger = logging.getLogger(__name__)

STAGE = "audit"

Auditable = ActionEvent | AlertEvent | DeadLetter
#: What the audit agent reads, by record name (the audit-input topic names its records' type in a header).
AUDITED: Mapping[str, type[Auditable]] = {"ActionEvent": ActionEvent, "AlertEvent": AlertEvent,
                                         "DeadLetter": DeadLetter}
#: Steps remembered per tenant to recognise a re-delivery: the inputs since the last commit that a crash re-delivers
#: (the head row is written once per round of records, streams/worker/audit_rounds.py, so it may be this long).
_SEEN = 256


def content_id(value: bytes) -> str:
    """A step's identity: the record's bytes, not its position (a re-routed copy is still the same step)."""
    return hashlib.sha256(value).hexdigest()[:32]


def is_audited(record: Auditable) -> bool:
    """Every ingested alert and action state change; of the dead letters, only refused approval requests."""
    return not isinstance(record, DeadLetter) or record.stage == REFUSALS_STAGE


class Audit:
    """Appends one step to the tenant's chain per record; the new chain head is ``StageResult.state``."""

    def __init__(self, *, context: StageContext | None = None) -> None:
        self.context = context or StageContext()

    def __call__(self, record: Auditable, last: Mapping[str, Any] | None, source_id: str) -> StageResult:
        """``last`` is the tenant's head row (the last record and the ids of recent steps)."""
        try:
            previous = AuditRecord.model_validate(last["record"]) if last else None
        except ValidationError:
            previous = None
        if not is_audited(record):
            logger.info("audit: a %s is not an auditable record; skipped", type(record).__name__)
            self.context.count(STAGE, "skipped")
            return StageResult([], "skipped")
        seen: list[str] = list(last.get("seen", [])) if last else []
        if source_id in seen:
            self.context.count(STAGE, "replayed")
            return StageResult([], "replayed")
        chain = AuditChain(record.tenant)
        chain.resume(previous)
        if isinstance(record, AlertEvent):
            step = chain.append(
                kind=AuditKind.INGEST,
                actor=_source_actor(record),
                subject_id=record.event_id,
                action=f"ingest:{record.alert}"[:200],
                detail=_ingest_detail(record, source_id),
                at=self.context.now(),
            )
        elif isinstance(record, DeadLetter):
            detail = _refusal_detail(record)
            step = chain.append(
                kind=AuditKind.APPROVAL,
                actor=detail.get("approver") or detail.get("channel", "approvals"),
                subject_id=detail.get("action_id", "-"),
                action="approval_rejected",
                detail={**detail, "source": source_id},
                at=self.context.now(),
            )
        else:
            step = _action_step(chain, record, source_id, self.context)
        self.context.count(STAGE, "ok")
        state = {"record": step.model_dump(mode="json"), "seen": [*seen[-(_SEEN - 1):], source_id]}
        return StageResult([Out(AUDIT, record.tenant, step)], state=state)


def _action_step(chain: AuditChain, action: ActionEvent, source_id: str, context: StageContext) -> AuditRecord:
    kind, actor = _who(action)
    return chain.append(
        kind=kind,
        actor=actor,
        subject_id=action.action_id,
        action=f"{action.name}:{action.outcome}",  # a dry run reads name:dry-run, never succeeded
        detail={
            "incident_id": action.incident_id,
            "alert_class": action.alert_class,
            "risk": action.risk.value,
            "dry_run": str(action.dry_run).lower(),
            "reason": action.reason[:500],
            "result": (action.result or "")[:500],
            "params": ",".join(f"{k}={v}" for k, v in sorted(action.params.items()))[:500],
            "source": source_id,
            **({"rollback_of": action.rollback_of} if action.rollback_of else {}),
            **({"approver": action.approver[:200]} if action.approver else {}),
        },
        at=context.now(),
    )


def _refusal_detail(letter: DeadLetter) -> dict[str, str]:
    try:
        loaded = json.loads(letter.payload)
    except ValueError:
        loaded = {}
    detail = {str(k): str(v)[:500] for k, v in loaded.items()} if isinstance(loaded, dict) else {}
    detail.setdefault("message", letter.reason[:500])
    return detail


def _source_actor(event: AlertEvent) -> str:
    """Who brought the alert in: the source kind, and the mailbox for mail."""
    kind = event.source.kind.value
    return f"{kind}:{event.source.mailbox}"[:200] if event.source.mailbox else kind


def _ingest_detail(event: AlertEvent, source_id: str) -> dict[str, str]:
    """Enough to find the alert again (raw-mail offset, Message-ID) without copying the mail into the chain."""
    detail = {
        "fingerprint": event.fingerprint,
        "alert_class": event.alert_class,
        "severity": event.severity[:50],
        "status": event.status.value,
        "parser": event.parser[:100],
        "received_at": event.received_at.isoformat(),
        "source": source_id,
    }
    if event.raw.mail_id:
        detail["mail_id"] = event.raw.mail_id[:300]
    if event.raw.mail_subject:
        detail["mail_subject"] = event.raw.mail_subject[:200]
    if event.source.topic is not None:
        detail["raw"] = f"{event.source.topic}[{event.source.partition}]@{event.source.offset}"
    return detail


def _who(action: ActionEvent) -> tuple[AuditKind, str]:
    """Which kind of step an action record is, and who took it (the verified approver for human decisions)."""
    human = (action.approver or "")[:200]
    if action.state is ActionState.ROLLED_BACK or action.rollback_of is not None:
        if action.state is ActionState.APPROVED and human:
            return AuditKind.ROLLBACK, human
        return AuditKind.ROLLBACK, "executor"
    if action.state.value in _EXECUTION_STATES:
        return AuditKind.EXECUTION, "executor"
    if action.state in (ActionState.APPROVED, ActionState.REJECTED) and human:
        return AuditKind.APPROVAL, human
    if action.state is ActionState.EXPIRED:
        return AuditKind.APPROVAL, "approval-timer"
    if action.state is ActionState.WITHDRAWN:
        return AuditKind.APPROVAL, "incident-resolved"  # its incident resolved while it waited
    return AuditKind.DECISION, "decide"


_EXECUTION_STATES = frozenset({"running", "succeeded", "failed", "rolled_back"})
