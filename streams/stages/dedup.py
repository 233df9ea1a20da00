"""normalized → incidents: one incident per alert and dedup window; repeats only count, re-deliveries change nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from policies import PolicySet, dedup
from policies.dedup import DedupState
from schemas.records import AlertEvent, Incident
from schemas.topics import INCIDENTS
from streams.stages.core import Out, StageContext, StageResult

STAGE = "dedup"


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
            )
        result = StageResult([Out(INCIDENTS, table_key(event), incident)] if incident is not None else [])
        if outcome.duplicate:
            result.outcome = "duplicate"
        elif incident is None:
            result.outcome = "ignored"  # e.g. a resolved alert with no open incident
        self.context.count(STAGE, result.outcome)
        result.state = None if state_after is None else state_after.model_dump(mode="json")
        return result
