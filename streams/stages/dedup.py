"""normalized → incidents: one incident per alert and dedup window; repeats only count, re-deliveries change nothing.

A resolved notification resolves the open incident: the incident record says so
(state, when, by what), and :meth:`Dedup.withdrawals` names the actions of that
incident that the approvals side must withdraw if they still await approval.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from policies import PolicySet, action_id_for, dedup
from policies.dedup import DedupState
from schemas.records import AlertEvent, Incident, IncidentState
from schemas.topics import INCIDENTS
from streams.stages.core import Out, StageContext, StageResult

STAGE = "dedup"
#: The stage outcome of the event that resolved an open incident.
RESOLVED = "resolved"


def table_key(event: AlertEvent) -> str:
    """The dedup table's key, also the normalized topic's: one row per tenant and alert fingerprint."""
    return f"{event.tenant}:{event.fingerprint}"


class Dedup:
    """Keeps, per tenant:fingerprint, the open incident, its window (from the policy) and recent event ids."""

    def __init__(self, policies: PolicySet, *, context: StageContext | None = None) -> None:
        self.policies = policies
        self.context = context or StageContext()

    def __call__(self, event: AlertEvent, state: Mapping[str, Any] | None) -> StageResult:
        """The incident to send (if any); ``StageResult.state`` is the new table row (None: unchanged)."""
        try:
            current = DedupState.model_validate(state) if state else None
        except ValidationError as exc:
            self.context.count(STAGE, "dead_letter")
            return StageResult.refuse(exc)
        window = self.policies.dedup_window(event.alert_class)
        outcome = dedup(current, event, window, self.context.now())
        if outcome.replayed:
            self.context.count(STAGE, "replayed")
            return StageResult([], "replayed")
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
                state=IncidentState.RESOLVED if state_after.resolved else IncidentState.OPEN,
                resolved_at=state_after.resolved_at,
                resolved_by=state_after.resolved_by,
            )
        result = StageResult([Out(INCIDENTS, table_key(event), incident)] if incident is not None else [])
        if outcome.duplicate and state_after is not None and state_after.resolved and not (
            current is not None and current.resolved
        ):
            result.outcome = RESOLVED  # this event closed it: its waiting actions are to be withdrawn
        elif outcome.duplicate:
            result.outcome = "duplicate"
        elif incident is None:
            result.outcome = "ignored"  # e.g. a resolved alert with no open incident
        self.context.count(STAGE, result.outcome)
        result.state = None if state_after is None else state_after.model_dump(mode="json")
        return result

    def withdrawals(self, incident: Incident) -> list[str]:
        """``tenant:action-id`` of every action the incident could have waiting (the class's policy actions).

        Action ids derive from the incident id and the action name, and only actions the policy lists
        for the class can ever await approval, so this is complete without knowing which were proposed;
        the approvals side withdraws those that are still waiting and ignores the rest.
        """
        cls = self.policies.get(incident.alert_class)
        if cls is None or incident.state is not IncidentState.RESOLVED:
            return []
        return [f"{incident.tenant}:{action_id_for(incident.incident_id, spec.name)}" for spec in cls.spec.actions]
