"""approvals → actions: a human's decision moves an awaiting action; the clock expires what nobody decided.

The worker calls these from its agents and timer; the HTTP router uses the
same :class:`Rejection` for callbacks it refuses, so every refusal looks alike
in the audit trail whatever refused it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import ValidationError

from executors.audit import AuditChains
from policies.decision_signature import (
    DEFAULT_APPROVAL_VALID_FOR,
    ApprovalKeys,
    DecisionKeys,
    DecisionSignatureError,
    SignatureProblem,
)
from schemas.records import (
    ActionEvent,
    ActionState,
    ApprovalDecision,
    AuditKind,
    AuditRecord,
    DeadLetter,
    Decision,
    Incident,
)
from schemas.topics import ACTIONS
from streams.stages.core import Out, StageContext, StageResult
from streams.stages.table_pruning import forget_older

logger = logging.getLogger(__name__)

STAGE = "approval"


class RejectionReason(StrEnum):
    """Why an approval (callback, link, or decision record) changed nothing."""

    BAD_SIGNATURE = "bad_signature"
    #: A decision record without the API's approval signature (written by something that is not the API).
    UNSIGNED = "unsigned"
    STALE = "stale"
    REPLAYED = "replayed"
    MALFORMED = "malformed"
    UNKNOWN_ACTION = "unknown_action"
    WRONG_TENANT = "wrong_tenant"
    UNKNOWN_APPROVER = "unknown_approver"
    EXPIRED = "expired"
    ALREADY_DECIDED = "already_decided"
    NOT_CONFIGURED = "not_configured"
    #: The action's incident resolved while it waited, so there is nothing left to approve.
    WITHDRAWN = "withdrawn"


#: Audit chain for refusals nobody could be authenticated for (bad signatures): they belong to no tenant.
UNAUTHENTICATED_TENANT = "_unauthenticated"

#: HTTP status the router answers for each reason: 401 when we cannot tell who sent it, 403 for
#: "we know who you are and you may not", 404/409/410 for the state of the action, 400 for garbage.
HTTP_STATUS: dict[RejectionReason, int] = {
    RejectionReason.BAD_SIGNATURE: 401,
    RejectionReason.UNSIGNED: 401,
    RejectionReason.STALE: 401,
    RejectionReason.REPLAYED: 409,
    RejectionReason.MALFORMED: 400,
    RejectionReason.UNKNOWN_ACTION: 404,
    RejectionReason.WRONG_TENANT: 403,
    RejectionReason.UNKNOWN_APPROVER: 403,
    RejectionReason.EXPIRED: 410,
    RejectionReason.ALREADY_DECIDED: 409,
    RejectionReason.NOT_CONFIGURED: 404,
    RejectionReason.WITHDRAWN: 410,
}


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused approval, worth an audit record. Not a topic record: the lead routes it to ``audit``.

    ``tenant`` is the tenant the refusal concerns when it is known and trustworthy (the action's
    tenant); ``None`` when the request could not be authenticated, so nothing in it can be believed.
    ``message`` is written for the on-call reader and never contains secrets or raw request bodies.
    """

    reason: RejectionReason
    message: str
    channel: str
    at: datetime
    tenant: str | None = None
    action_id: str | None = None
    approver: str | None = None

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.reason]

    def audit_detail(self) -> dict[str, str]:
        """The ``detail`` map for ``AuditChain.append(kind=AuditKind.APPROVAL, action="approval_rejected", ...)``."""
        detail = {"reason": self.reason.value, "channel": self.channel, "message": self.message}
        if self.approver:
            detail["approver"] = self.approver
        if self.action_id:
            detail["action_id"] = self.action_id
        return detail


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _next(action: ActionEvent, **changes: object) -> ActionEvent:
    """A new state record; validated again so ``at`` is normalised like a record read from the topic."""
    return ActionEvent.model_validate({**action.model_dump(), **changes})


def is_expired(action: ActionEvent, now: datetime) -> bool:
    """True once ``now`` is past the action's approval window (actions without one never expire)."""
    return action.expires_at is not None and _aware(now) > _aware(action.expires_at)


def apply_approval(action: ActionEvent, decision: ApprovalDecision, now: datetime) -> ActionEvent | Rejection:
    """The next state of ``action`` after ``decision``, or why the decision changes nothing.

    Only an ``awaiting_approval`` action of the decision's tenant moves: to ``approved`` or
    ``rejected``, or to ``expired`` when the decision comes after ``expires_at`` (a late "yes"
    must not start a restart nobody is watching any more). The approver's right to decide is
    checked by the callback that wrote the decision; this function trusts a record whose approval
    signature :meth:`Approval.unverified` has checked.
    """

    def refuse(reason: RejectionReason, message: str) -> Rejection:
        return Rejection(reason=reason, message=message, channel=decision.channel, at=now,
                         tenant=action.tenant, action_id=action.action_id, approver=decision.approver)

    if decision.tenant != action.tenant:
        return refuse(RejectionReason.WRONG_TENANT,
                      f"decision of tenant {decision.tenant!r} for an action of tenant {action.tenant!r}")
    if decision.action_id != action.action_id:
        return refuse(RejectionReason.UNKNOWN_ACTION,
                      f"decision is for action {decision.action_id!r}, not {action.action_id!r}")
    if action.state is not ActionState.AWAITING_APPROVAL:
        return refuse(RejectionReason.ALREADY_DECIDED,
                      f"action {action.action_id} is {action.state.value}, not awaiting approval")
    if is_expired(action, now):
        assert action.expires_at is not None
        return _next(
            action,
            state=ActionState.EXPIRED,
            at=now,
            result=f"{decision.decision.value} by {decision.approver} via {decision.channel} came after the "
                   f"approval window closed at {action.expires_at.isoformat()}",
        )
    verb = "approved" if decision.decision is Decision.APPROVE else "rejected"
    why = f": {decision.reason}" if decision.reason else ""
    return _next(
        action,
        state=ActionState.APPROVED if decision.decision is Decision.APPROVE else ActionState.REJECTED,
        at=now,
        approver=decision.approver,
        result=f"{verb} by {decision.approver} via {decision.channel}{why}",
    )


def expire(action: ActionEvent, now: datetime) -> ActionEvent | None:
    """The ``expired`` record for an action still awaiting approval past its window; else None."""
    if action.state is not ActionState.AWAITING_APPROVAL or not is_expired(action, now):
        return None
    assert action.expires_at is not None
    return _next(action, state=ActionState.EXPIRED, at=now,
                 result=f"nobody decided before {action.expires_at.isoformat()}")


def withdraw(action: ActionEvent, incident: Incident, now: datetime) -> ActionEvent | None:
    """The ``withdrawn`` record for an action of ``incident`` still awaiting approval; else None.

    The incident resolved, so the remedy is no longer wanted: waiting out the approval TTL would
    leave a button in chat that could still start it. ``withdrawn`` is terminal, and a decision
    arriving later is refused with :attr:`RejectionReason.WITHDRAWN`.
    """
    if action.state is not ActionState.AWAITING_APPROVAL or action.incident_id != incident.incident_id:
        return None
    when = _aware(incident.resolved_at or now).strftime("%Y-%m-%d %H:%M:%S UTC")
    return _next(action, state=ActionState.WITHDRAWN, at=now,
                 result=f"withdrawn: the incident resolved at {when} ({incident.resolved_by or 'resolved'})")


def audit_rejection(chains: AuditChains, rejection: Rejection) -> AuditRecord:
    """The audit record of a refusal, on its tenant's chain (or :data:`UNAUTHENTICATED_TENANT`'s)."""
    chain = chains.for_tenant(rejection.tenant or UNAUTHENTICATED_TENANT)
    return chain.append(kind=AuditKind.APPROVAL, actor=rejection.approver or rejection.channel,
                        subject_id=rejection.action_id or "-", action="approval_rejected",
                        detail=rejection.audit_detail(), at=rejection.at)


#: The dead-letter ``stage`` of refused approvals (the API's and the worker's); the audit agent chains these.
REFUSALS_STAGE = "approvals"


def refusal_letter(rejection: Rejection, *, source_topic: str) -> DeadLetter:
    """A refusal as the dead letter the audit agent chains: the API's and the worker's look alike."""
    detail = {**rejection.audit_detail(), "at": rejection.at.isoformat()}
    return DeadLetter(
        tenant=rejection.tenant or UNAUTHENTICATED_TENANT,
        stage=REFUSALS_STAGE,
        source_topic=source_topic,
        key=(rejection.action_id or "").encode("utf-8") or None,
        payload=json.dumps(detail, ensure_ascii=False).encode("utf-8"),
        reason=f"{rejection.reason.value}: {rejection.message}"[:4000],
        error_type="ApprovalRefused",
        at=rejection.at,
    )


#: The outcome of :meth:`Approval.withdrawn` that withdrew a waiting action.
WITHDRAWN = ActionState.WITHDRAWN.value
#: Outcomes of the worker's approval stage that moved the action out of ``awaiting_approval``.
DECIDED_OUTCOMES = frozenset({ActionState.APPROVED.value, ActionState.REJECTED.value, ActionState.EXPIRED.value,
                              ActionState.WITHDRAWN.value})


def remember_decision(action: ActionEvent, decision: ApprovalDecision | None = None) -> dict[str, str]:
    """The worker's memory of the first decision on an action (JSON for a Faust table), for refusing later ones."""
    return {
        "state": action.state.value,
        "by": decision.approver if decision else "",
        "channel": decision.channel if decision else "",
        "at": _aware(action.at).isoformat(),
        "result": (action.result or "")[:300],
        # The credential the first decision spent: the same one again is a replay, whichever replica sent it.
        "claim": decision.claim_id if decision else "",
    }


def _stamp(moment: str) -> str:
    try:
        return datetime.fromisoformat(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return "an unknown time"


def refuse_decision(
    decision: ApprovalDecision, outcome: str, remembered: Mapping[str, Any] | None, now: datetime
) -> Rejection:
    """Why a decision record the worker read changed nothing, for dead-letter and audit.

    ``outcome`` is the approval stage's (a :class:`RejectionReason` value, or ``not_pending``);
    ``remembered`` the first decision on the action, if the worker still remembers it: then the
    refusal names who decided what and when ("already decided by X at T").
    """
    def refuse(reason: RejectionReason, message: str) -> Rejection:
        return Rejection(reason=reason, message=message, channel=decision.channel, at=now, tenant=decision.tenant,
                         action_id=decision.action_id, approver=decision.approver)

    if outcome in _UNVERIFIED:
        return refuse(RejectionReason(outcome), f"{decision.decision.value} of action {decision.action_id} by "
                                                f"{decision.approver} via {decision.channel} refused by the worker: "
                                                f"{_UNVERIFIED[outcome]}; it changes nothing")
    reasons = {r.value for r in RejectionReason} - {RejectionReason.ALREADY_DECIDED.value}
    if outcome in reasons:
        return refuse(RejectionReason(outcome), f"{decision.decision.value} of action {decision.action_id} "
                                                f"refused by the worker: {outcome}")
    if remembered and decision.claim_id and remembered.get("claim") == decision.claim_id:
        # Two replicas both let the same captured request through before either saw the other's decision.
        return refuse(RejectionReason.REPLAYED,
                      f"the {decision.channel} request behind this {decision.decision.value} by "
                      f"{decision.approver} was already used at {_stamp(str(remembered.get('at', '')))} "
                      f"({remembered.get('state', '?')}); it changes nothing")
    if remembered and remembered.get("state") == ActionState.WITHDRAWN.value:
        return refuse(RejectionReason.WITHDRAWN,
                      f"action {decision.action_id} was withdrawn at {_stamp(str(remembered.get('at', '')))} "
                      f"because its incident resolved ({remembered.get('result') or 'withdrawn'}); this "
                      f"{decision.decision.value} by {decision.approver} changes nothing")
    if remembered:
        by = str(remembered.get("by") or "") or "the approval window"
        channel = f" via {remembered['channel']}" if remembered.get("channel") else ""
        return refuse(RejectionReason.ALREADY_DECIDED,
                      f"already decided by {by} at {_stamp(str(remembered.get('at', '')))}: "
                      f"{remembered.get('state', '?')}{channel}; this {decision.decision.value} "
                      f"by {decision.approver} changes nothing")
    return refuse(RejectionReason.UNKNOWN_ACTION,
                  f"action {decision.action_id} is not awaiting approval (unknown, or decided long ago); "
                  f"this {decision.decision.value} by {decision.approver} changes nothing")


#: Why a decision record the worker could not verify was refused (the API signs every decision it verified).
_UNVERIFIED = {
    RejectionReason.UNSIGNED.value: "the record carries no approval signature, so the API did not write it",
    RejectionReason.BAD_SIGNATURE.value: "its approval signature does not verify with the approval key (forged, "
                                         "altered after the API signed it, or signed with a key the worker does "
                                         "not know)",
}


def forget_decisions(
    store: MutableMapping[str, Any],
    *,
    now: datetime,
    keep: timedelta,
    owned: Callable[[str], bool] = lambda _key: True,
) -> list[str]:
    """Delete remembered decisions older than ``keep``; a later duplicate is then refused as unknown."""
    return forget_older(store, field="at", now=now, keep=keep, owned=owned)


#: States after a decision; a waiting record re-read later must not reopen the action.
_DECIDED = frozenset({ActionState.APPROVED, ActionState.REJECTED, ActionState.EXPIRED, ActionState.RUNNING,
                      ActionState.SUCCEEDED, ActionState.FAILED, ActionState.WITHDRAWN})

PendingChange = tuple[Literal["set"], dict[str, Any]] | tuple[Literal["drop"], None]


def pending_change(action: ActionEvent) -> PendingChange | None:
    """How an action record changes the table of actions awaiting approval: ("set", row), ("drop", None) or None."""
    if action.state is ActionState.AWAITING_APPROVAL:
        return "set", action.model_dump(mode="json")
    if action.state in _DECIDED:
        return "drop", None
    return None


class Approval:
    """Applies decision records to the awaiting actions and expires the ones past their window."""

    def __init__(self, *, context: StageContext | None = None, keys: DecisionKeys | None = None,
                 approval_keys: ApprovalKeys | None = None) -> None:
        self.context = context or StageContext()
        #: Signs what a person approved, so the executor runs it (None: unsigned; the worker refuses that).
        self.keys = keys
        #: Checks the API's signature on each decision (None: no key, so every decision is refused).
        self.approval_keys = approval_keys

    def unverified(self, decision: ApprovalDecision) -> RejectionReason | None:
        """Why ``decision`` cannot be believed (no or a bad approval signature); None when the API signed it."""
        if self.approval_keys is None:
            logger.warning("security.approval_key is not set in the worker: no approval decision can be verified, "
                           "so none is applied; set RCAFLOW_SECURITY__APPROVAL_KEY to the API's approval key")
            return RejectionReason.BAD_SIGNATURE if decision.signature else RejectionReason.UNSIGNED
        try:
            self.approval_keys.verify(decision)
        except DecisionSignatureError as exc:
            return RejectionReason.UNSIGNED if exc.problem is SignatureProblem.UNSIGNED else (
                RejectionReason.BAD_SIGNATURE)
        return None

    def __call__(self, decision: ApprovalDecision, pending: Mapping[str, Any] | None) -> StageResult:
        """``pending`` is the awaiting action's table row (None: nothing is waiting under this key).

        First who wrote it: a decision without the API's valid approval signature moves nothing, whatever it
        names (the agent dead-letters and audits the refusal)."""
        unverified = self.unverified(decision)
        if unverified is not None:
            logger.warning("approval decision for %s refused: %s", decision.action_id, unverified.value,
                           extra={"tenant": decision.tenant, "action_id": decision.action_id})
            self.context.count(STAGE, unverified.value)
            return StageResult([], unverified.value)
        try:
            action = ActionEvent.model_validate(pending) if pending else None
        except ValidationError as exc:
            self.context.count(STAGE, "dead_letter")
            return StageResult.refuse(exc, decision.tenant)
        if action is None:
            logger.warning("approval for %s, which is not awaiting approval; ignored", decision.action_id,
                           extra={"tenant": decision.tenant, "action_id": decision.action_id})
            self.context.count(STAGE, "not_pending")
            return StageResult([], "not_pending")
        outcome = apply_approval(action, decision, self.context.now())
        if isinstance(outcome, Rejection):
            logger.warning("approval refused: %s", outcome.message,
                           extra={"tenant": decision.tenant, "action_id": decision.action_id})
            self.context.count(STAGE, outcome.reason.value)
            return StageResult([], outcome.reason.value)
        if outcome.state is ActionState.APPROVED and self.keys is not None:
            # Valid for as long as the action could wait for its approval (its TTL), from the approval on.
            window = action.expires_at - action.at if action.expires_at is not None else DEFAULT_APPROVAL_VALID_FOR
            outcome = self.keys.sign(outcome, decided_at=outcome.at, valid_for=window)
        self.context.count(STAGE, outcome.state.value)
        return StageResult([Out(ACTIONS, f"{outcome.tenant}:{outcome.action_id}", outcome)], outcome.state.value)

    def withdrawn(self, incident: Incident, pending: Mapping[str, Any] | None) -> StageResult:
        """``pending`` is the awaiting row under one of the resolved incident's action keys (None: nothing waits).

        Most keys hold nothing (the action was never proposed, or already decided): "not_pending", no output.
        """
        try:
            action = ActionEvent.model_validate(pending) if pending else None
        except ValidationError as exc:
            self.context.count(STAGE, "dead_letter")
            return StageResult.refuse(exc, incident.tenant)
        record = withdraw(action, incident, self.context.now()) if action is not None else None
        if record is None:
            return StageResult([], "not_pending")
        logger.info("action %s withdrawn: its incident %s resolved", record.action_id, incident.incident_id,
                    extra={"tenant": record.tenant, "action_id": record.action_id})
        self.context.count(STAGE, WITHDRAWN)
        return StageResult([Out(ACTIONS, f"{record.tenant}:{record.action_id}", record)], WITHDRAWN)

    def expired(self, pending: Iterable[Mapping[str, Any]]) -> list[Out]:
        """The ``expired`` records for awaiting actions past their approval window."""
        now = self.context.now()
        outs = []
        for state in pending:
            try:
                action = ActionEvent.model_validate(state)
            except ValidationError:
                continue
            record = expire(action, now)
            if record is not None:
                self.context.count(STAGE, "expired")
                outs.append(Out(ACTIONS, f"{record.tenant}:{record.action_id}", record))
        return outs
