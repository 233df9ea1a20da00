"""What each stage does to one record, without Faust: decode, call the pure functions, say what to send.

Agents (streams/worker.py) stay thin and only move bytes; everything that can
go wrong with a record is decided here and ends either as output records or as
a dead-letter record with the reason — never as an exception out of a stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from executors.audit import AuditChain
from executors.evidence import EvidenceRunner, plan_from_triage
from policies import PolicySet, cooldown_key, decide, dedup, triage
from policies.dedup import DedupState
from producers.fingerprint import event_id
from producers.mail import MailParseError, TemplateRegistry, parse_mail
from schemas.codec import Codec
from schemas.errors import CodecError
from schemas.records import (
    ActionEvent,
    ActionState,
    AlertEvent,
    ApprovalDecision,
    AuditKind,
    AuditRecord,
    DeadLetter,
    Engine,
    EventSource,
    Incident,
    RawMail,
    RcaResult,
    Record,
    SourceKind,
)
from schemas.topics import ACTIONS, AUDIT, DEAD_LETTER, INCIDENTS, NORMALIZED, RCA_RESULT, TopicSpec
from streams.approvals import Rejection as ApprovalRejection
from streams.approvals import apply_approval, expire
from streams.metrics import StageMetrics
from streams.rca_llm import LlmStage

logger = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Position:
    """Where the input record was read: for dead letters, event sources and the audit trail."""

    topic: str
    partition: int | None = None
    offset: int | None = None
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class Out:
    spec: TopicSpec
    key: str
    record: Record


@dataclass(slots=True)
class StageResult:
    outputs: list[Out] = field(default_factory=list)
    outcome: str = "ok"
    #: New table value for stages that keep state (None: leave the table as it is).
    state: dict[str, Any] | None = None
    #: The decoded input, for follow-up work such as notifications.
    subject: Record | None = None


class Pipeline:
    """The stages' logic, shared by the Faust worker, ``rcaflow explain`` and tests."""

    def __init__(
        self,
        codec: Codec,
        policies: PolicySet,
        templates: TemplateRegistry | None = None,
        *,
        cluster_names: Mapping[str, Mapping[str, str]] | None = None,
        topic_prefix: str = "",
        metrics: StageMetrics | None = None,
        clock: Callable[[], datetime] = utcnow,
        evidence: EvidenceRunner | None = None,
        llm: LlmStage | None = None,
    ) -> None:
        self.codec = codec
        self.policies = policies
        self.templates = templates
        self.cluster_names = cluster_names or {}
        self.prefix = topic_prefix
        self.metrics = metrics
        self.clock = clock
        self.evidence = evidence
        self.llm = llm

    # ------------------------------------------------------------------ helpers
    def topic(self, spec: TopicSpec) -> str:
        return spec.full_name(self.prefix)

    def decode(self, value: bytes, record_type: type[Any], where: Position) -> Any:
        return self.codec.decode(value, record_type, topic=where.topic)

    def dead_letter(self, stage: str, value: bytes, where: Position, exc: BaseException, tenant: str = "") -> Out:
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        logger.warning(
            "%s: dead-lettered %s[%s]@%s: %s", stage, where.topic, where.partition, where.offset, reason,
            extra={"stage": stage, "topic": where.topic, "offset": where.offset},
        )
        if self.metrics:
            self.metrics.failed.labels(stage, type(exc).__name__).inc()
        record = DeadLetter(
            tenant=tenant or "unknown",
            stage=stage,
            source_topic=where.topic,
            partition=where.partition,
            offset=where.offset,
            key=where.key,
            payload=value,
            reason=reason[:4000],
            error_type=type(exc).__name__,
            at=self.clock(),
        )
        return Out(DEAD_LETTER, where.topic, record)

    def count(self, stage: str, outcome: str) -> None:
        """One finished record of ``stage`` with ``outcome``, on the stage metrics."""
        if self.metrics:
            self.metrics.processed.labels(stage, outcome).inc()

    # ------------------------------------------------------------------ normalize
    def normalize(self, value: bytes, where: Position) -> StageResult:
        """raw-mail → normalized: one AlertEvent per alert in the mail, classified by the policy."""
        try:
            mail: RawMail = self.decode(value, RawMail, where)
        except (CodecError, ValidationError) as exc:
            self.count("normalize", "dead_letter")
            return StageResult([self.dead_letter("normalize", value, where, exc)], "dead_letter")
        source = EventSource(
            kind=mail.source if mail.source != SourceKind.UNKNOWN else SourceKind.FILE,
            mailbox=mail.mailbox,
            topic=where.topic,
            partition=where.partition,
            offset=where.offset,
        )
        try:
            parsed = parse_mail(
                mail.raw,
                tenant=mail.tenant,
                received_at=mail.received_at,
                source=source,
                registry=self.templates,
                cluster_names=self.cluster_names.get(mail.tenant),
            )
        except MailParseError as exc:
            self.count("normalize", "dead_letter")
            return StageResult([self.dead_letter("normalize", value, where, exc, mail.tenant)], "dead_letter")
        # The event id names the raw-mail record, so a re-delivery (same offset) is recognised as a
        # replay while a second copy of the same mail (new offset) counts as a repeat of the alert.
        outs = [
            self._classified(
                event.model_copy(update={"event_id": event_id(mail.tenant, where.topic, where.partition or 0,
                                                              where.offset or 0, index)})
            )
            for index, event in enumerate(parsed.events)
        ]
        self.count("normalize", "ok")
        return StageResult(outs)

    def _classified(self, event: AlertEvent) -> Out:
        event = event.model_copy(update={"alert_class": self.policies.classify(event)})
        return Out(NORMALIZED, f"{event.tenant}:{event.fingerprint}", event)

    def accept_event(self, event: AlertEvent) -> Out:
        """For structured sources (webhook, POST /events) that skip raw-mail."""
        return self._classified(event)

    # ------------------------------------------------------------------ dedup
    def dedup(
        self, value: bytes, state: Mapping[str, Any] | None, where: Position
    ) -> tuple[StageResult, dict[str, Any] | None]:
        """normalized → incidents. Returns the outputs and the new table value (None: unchanged)."""
        try:
            event: AlertEvent = self.decode(value, AlertEvent, where)
            current = DedupState.model_validate(state) if state else None
        except (CodecError, ValidationError) as exc:
            self.count("dedup", "dead_letter")
            return StageResult([self.dead_letter("dedup", value, where, exc)], "dead_letter"), None
        window = self.policies.dedup_window(event.alert_class)
        outcome = dedup(current, event, window, self.clock())
        if outcome.replayed:
            self.count("dedup", "replayed")
            return StageResult([], "replayed"), None
        incident = outcome.incident
        state_after = outcome.new_state
        if outcome.duplicate and state_after is not None:
            # Repeats only count: an update of the same incident, which rca does not analyse again.
            incident = Incident(
                tenant=event.tenant,
                incident_id=state_after.incident_id,
                fingerprint=event.fingerprint,
                alert_class=event.alert_class,
                opened_at=state_after.opened_at,
                last_seen_at=state_after.last_seen_at,
                count=state_after.count,
                last_event_id=event.event_id,
                event=event,
            )
        key = f"{event.tenant}:{event.fingerprint}"
        result = StageResult([Out(INCIDENTS, key, incident)] if incident is not None else [])
        if outcome.duplicate:
            result.outcome = "duplicate"
        elif incident is None:
            result.outcome = "ignored"  # e.g. a resolved alert with no open incident
        self.count("dedup", result.outcome)
        return result, None if state_after is None else state_after.model_dump(mode="json")

    # ------------------------------------------------------------------ rca
    async def rca(self, value: bytes, where: Position) -> StageResult:
        """incidents → rca-result: the policy's triage over fresh evidence, published at once."""
        try:
            incident: Incident = self.decode(value, Incident, where)
        except (CodecError, ValidationError) as exc:
            self.count("rca", "dead_letter")
            return StageResult([self.dead_letter("rca", value, where, exc)], "dead_letter")
        if incident.count > 1:
            # A count update of an incident that was already analysed; nothing new to diagnose.
            self.count("rca", "duplicate")
            return StageResult([], "duplicate")
        now = self.clock()
        result = triage(incident, self.policies, now)
        cls = self.policies.get(incident.alert_class)
        if self.evidence is not None and cls is not None:
            plan = plan_from_triage([step.id for step in cls.spec.evidence], result.evidence)
            report = await self.evidence.run(plan, now=now)
            measured = triage(incident, self.policies, now, evidence_values=report.values)
            result = measured.model_copy(
                update={"evidence": [*report.evidence, *measured.evidence[len(plan):]]}
            )
        if self.metrics:
            self.metrics.end_to_end.observe(max(0.0, (self.clock() - incident.event.received_at).total_seconds()))
        self.count("rca", "ok")
        return StageResult([Out(RCA_RESULT, f"{incident.tenant}:{incident.incident_id}", result)])

    async def second_opinion(self, value: bytes, where: Position) -> StageResult:
        """rca-result (policy) → rca-result (llm) plus the model's rejected proposals, when the LLM is on."""
        if self.llm is None:
            return StageResult([], "disabled")
        try:
            triaged: RcaResult = self.decode(value, RcaResult, where)
        except (CodecError, ValidationError):
            return StageResult([], "undecodable")  # the decide stage dead-letters it once
        if triaged.engine is not Engine.POLICY or (not triaged.actions and triaged.alert_class == "unclassified"):
            return StageResult([], "skipped")
        answer, rejected, why = await self.llm.second_opinion(triaged)
        outs = [Out(ACTIONS, f"{a.tenant}:{a.action_id}", a) for a in rejected]
        if answer is not None:
            outs.insert(0, Out(RCA_RESULT, f"{answer.tenant}:{answer.incident_id}", answer))
            if self.metrics:
                model = answer.model or "unknown"
                self.metrics.llm_tokens.labels(model).inc(answer.tokens or 0)
                self.metrics.llm_latency.labels(model).observe((answer.latency_ms or 0) / 1000)
        outcome = "ok" if answer is not None else why.split(":", 1)[0]
        self.count("llm", outcome)
        return StageResult(outs, outcome)

    # ------------------------------------------------------------------ decide
    def decide(
        self, value: bytes, where: Position, last_run: Mapping[str, str] | None = None
    ) -> StageResult:
        """rca-result → actions: only what the policy allows, in the state its risk calls for.

        ``last_run`` (cooldown key → ISO time) is the caller's memory of when each action last
        went ahead for this fingerprint; the updated memory is in ``StageResult.state``.
        """
        try:
            result: RcaResult = self.decode(value, RcaResult, where)
        except (CodecError, ValidationError) as exc:
            self.count("decide", "dead_letter")
            return StageResult([self.dead_letter("decide", value, where, exc)], "dead_letter")
        now = self.clock()
        memory = {key: datetime.fromisoformat(at) for key, at in (last_run or {}).items()}
        decision = decide(result, self.policies, now, last_run=memory)
        outs = [Out(ACTIONS, f"{a.tenant}:{a.action_id}", a) for a in decision.actions]
        outs += [Out(ACTIONS, f"{a.tenant}:{a.action_id}", a) for a in decision.rejected]
        updated = dict(last_run or {})
        for action in decision.actions:
            updated[cooldown_key(action.tenant, result.incident.fingerprint, action.name)] = now.isoformat()
        if self.metrics:
            for action in decision.actions + decision.rejected:
                self.metrics.actions.labels(action.state.value, action.risk.value).inc()
        self.count("decide", "ok")
        return StageResult(outs, state=updated, subject=result)

    def outcome_to_show(self, value: bytes, where: Position) -> ActionEvent | None:
        """An action's final execution state (succeeded / failed / rolled back), for its incident's message."""
        try:
            action: ActionEvent = self.decode(value, ActionEvent, where)
        except (CodecError, ValidationError):
            return None  # the audit agent reports undecodable actions
        return action if action.state in _OUTCOMES else None

    # ------------------------------------------------------------------ approvals
    def pending_change(self, value: bytes, where: Position) -> tuple[str, dict[str, Any] | None] | None:
        """How an action record changes the table of actions awaiting approval: ("set", action) or ("drop", None)."""
        try:
            action: ActionEvent = self.decode(value, ActionEvent, where)
        except (CodecError, ValidationError):
            return None  # the audit agent dead-letters undecodable actions
        if action.state is ActionState.AWAITING_APPROVAL:
            return "set", action.model_dump(mode="json")
        if action.state in _DECIDED:
            return "drop", None
        return None

    def approval(self, value: bytes, pending: Mapping[str, Any] | None, where: Position) -> StageResult:
        """approvals → actions: a human's decision moves an awaiting action to approved/rejected/expired."""
        try:
            decision: ApprovalDecision = self.decode(value, ApprovalDecision, where)
            action = ActionEvent.model_validate(pending) if pending else None
        except (CodecError, ValidationError) as exc:
            self.count("approval", "dead_letter")
            return StageResult([self.dead_letter("approval", value, where, exc)], "dead_letter")
        if action is None:
            logger.warning("approval for %s, which is not awaiting approval; ignored", decision.action_id,
                           extra={"tenant": decision.tenant, "action_id": decision.action_id})
            self.count("approval", "not_pending")
            return StageResult([], "not_pending")
        outcome = apply_approval(action, decision, self.clock())
        if isinstance(outcome, ApprovalRejection):
            logger.warning("approval refused: %s", outcome.message,
                           extra={"tenant": decision.tenant, "action_id": decision.action_id})
            self.count("approval", outcome.reason.value)
            return StageResult([], outcome.reason.value)
        self.count("approval", outcome.state.value)
        return StageResult([Out(ACTIONS, f"{outcome.tenant}:{outcome.action_id}", outcome)], outcome.state.value)

    def expired(self, pending: Iterable[Mapping[str, Any]]) -> list[Out]:
        """The ``expired`` records for awaiting actions past their approval window."""
        now = self.clock()
        outs = []
        for state in pending:
            try:
                action = ActionEvent.model_validate(state)
            except ValidationError:
                continue
            record = expire(action, now)
            if record is not None:
                self.count("approval", "expired")
                outs.append(Out(ACTIONS, f"{record.tenant}:{record.action_id}", record))
        return outs

    def fingerprint_of_result(self, value: bytes) -> str:
        """The decide stage's grouping key; undecodable input groups under "unknown" (then dead-letters)."""
        try:
            result: RcaResult = self.codec.decode(value, RcaResult, topic=self.topic(RCA_RESULT))
        except (CodecError, ValidationError):
            return "unknown"
        return f"{result.tenant}:{result.incident.fingerprint}"

    # ------------------------------------------------------------------ audit
    def _auditable(self, value: bytes) -> ActionEvent | AlertEvent | DeadLetter | None:
        """What the audit agent reads: ingested alerts, action state changes, refused approvals (dead-letter)."""
        try:
            action: ActionEvent = self.codec.decode(value, ActionEvent, topic=self.topic(ACTIONS))
            return action
        except (CodecError, ValidationError):
            pass
        try:
            event: AlertEvent = self.codec.decode(value, AlertEvent, topic=self.topic(NORMALIZED))
            return event
        except (CodecError, ValidationError):
            pass
        try:
            letter: DeadLetter = self.codec.decode(value, DeadLetter, topic=self.topic(DEAD_LETTER))
        except (CodecError, ValidationError):
            return None
        return letter if letter.stage == APPROVALS_STAGE else None

    def tenant_of_action(self, value: bytes) -> str:
        """The partitioning key of the audit chain; what is not audited groups under "unknown"."""
        record = self._auditable(value)
        return record.tenant if record is not None else "unknown"

    def audit(
        self, value: bytes, last: Mapping[str, Any] | None, where: Position
    ) -> tuple[StageResult, dict[str, Any] | None]:
        """normalized + actions (+ refused approvals) → audit: one hash-chained AuditRecord per step, per tenant.

        Undecodable input is logged, not dead-lettered: this agent also reads dead-letter, and a
        dead letter about a dead letter would loop. It stays on its topic for inspection.
        """
        record = self._auditable(value)
        try:
            previous = AuditRecord.model_validate(last["record"]) if last else None
        except ValidationError:
            previous = None
        if record is None:
            logger.info("audit: %s[%s]@%s is not an auditable record; skipped", where.topic, where.partition,
                        where.offset)
            self.count("audit", "skipped")
            return StageResult([], "skipped"), None
        # Identified by content, not position: a re-routed copy (new offset) is still the same step.
        source_id = hashlib.sha256(value).hexdigest()[:32]
        seen: list[str] = list(last.get("seen", [])) if last else []
        if source_id in seen:
            self.count("audit", "replayed")
            return StageResult([], "replayed"), None
        chain = AuditChain(record.tenant)
        chain.resume(previous)
        if isinstance(record, AlertEvent):
            ingested = chain.append(
                kind=AuditKind.INGEST,
                actor=_source_actor(record),
                subject_id=record.event_id,
                action=f"ingest:{record.alert}"[:200],
                detail=_ingest_detail(record, source_id),
                at=self.clock(),
            )
            self.count("audit", "ok")
            state = {"record": ingested.model_dump(mode="json"), "seen": [*seen[-63:], source_id]}
            return StageResult([Out(AUDIT, record.tenant, ingested)]), state
        if isinstance(record, DeadLetter):
            detail = _refusal_detail(record)
            refused = chain.append(
                kind=AuditKind.APPROVAL,
                actor=detail.get("approver") or detail.get("channel", "approvals"),
                subject_id=detail.get("action_id", "-"),
                action="approval_rejected",
                detail={**detail, "source": source_id},
                at=self.clock(),
            )
            self.count("audit", "ok")
            state = {"record": refused.model_dump(mode="json"), "seen": [*seen[-63:], source_id]}
            return StageResult([Out(AUDIT, record.tenant, refused)]), state
        action = record
        kind, actor = _who(action)
        audited = chain.append(
            kind=kind,
            actor=actor,
            subject_id=action.action_id,
            action=f"{action.name}:{action.state.value}",
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
            },
            at=self.clock(),
        )
        seen = [*seen[-63:], source_id]
        self.count("audit", "ok")
        state = {"record": audited.model_dump(mode="json"), "seen": seen}
        return StageResult([Out(AUDIT, action.tenant, audited)]), state


#: The dead-letter stage of refused approval requests (bad signature, unknown approver, other tenant ...).
APPROVALS_STAGE = "approvals"


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
    """Which kind of step an action record is, and who took it (the approver for human decisions)."""
    result = action.result or ""
    if action.state is ActionState.ROLLED_BACK or action.rollback_of is not None:
        if action.state is ActionState.APPROVED and result.startswith("approved by "):
            return AuditKind.ROLLBACK, result.removeprefix("approved by ").split(" via ", 1)[0][:200]
        return AuditKind.ROLLBACK, "executor"
    if action.state.value in _EXECUTION_STATES:
        return AuditKind.EXECUTION, "executor"
    for verb in ("approved by ", "rejected by "):
        if action.state in (ActionState.APPROVED, ActionState.REJECTED) and result.startswith(verb):
            return AuditKind.APPROVAL, result[len(verb):].split(" via ", 1)[0][:200]
    if action.state is ActionState.EXPIRED:
        return AuditKind.APPROVAL, "approval-timer"
    return AuditKind.DECISION, "decide"


_DECIDED = frozenset({ActionState.APPROVED, ActionState.REJECTED, ActionState.EXPIRED, ActionState.RUNNING,
                      ActionState.SUCCEEDED, ActionState.FAILED})
_EXECUTION_STATES = frozenset({"running", "succeeded", "failed", "rolled_back"})
_OUTCOMES = frozenset({ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK})
