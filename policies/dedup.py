"""The dedup decision, pure: what a Faust table keeps per ``tenant:fingerprint`` and how an event changes it.

Rules (documented in docs/policies.md):

- no state, firing event -> a new incident opens;
- an event id already seen -> replayed: nothing changes (at-least-once redelivery must not
  count twice nor open a second incident);
- inside the window since the incident opened -> duplicate: count and last_seen_at move,
  whether the event is firing or resolved. A resolve followed by a re-fire inside the window
  stays the same incident: flapping alerts are one incident per window, which is what the
  "silence a flapping duplicate" actions rely on;
- outside the window, firing -> a new incident opens (the state starts over);
- a resolved event never opens an incident; with no state it is ignored. The first resolved event
  of an open incident resolves it (``resolved_at``/``resolved_by`` remember when and by what), at
  any age; a re-fire inside the window opens it again (flapping stays one incident).

The clock is ``now`` (the caller passes the record's timestamp, so a replay decides the same).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from schemas.records import AlertEvent, AlertStatus, Incident

RECENT_EVENT_IDS: Final = 64
"""How many event ids a state remembers to recognise redelivered events."""


class DedupState(BaseModel):
    """One fingerprint's open incident; JSON-serialisable so a Faust table can keep it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    incident_id: str
    opened_at: datetime
    last_seen_at: datetime
    count: int = 1
    resolved: bool = False
    #: When and by what the incident resolved (the first resolved event since it last fired).
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    recent_event_ids: tuple[str, ...] = Field(default_factory=tuple)


@dataclass(frozen=True)
class DedupOutcome:
    """``incident`` is set only when a new incident opens; ``new_state`` None means keep nothing."""

    new_state: DedupState | None
    incident: Incident | None
    duplicate: bool
    replayed: bool


def incident_id_for(tenant: str, fingerprint: str, opening_event_id: str) -> str:
    """Deterministic incident id, so reprocessing the same events yields the same incident."""
    joined = "\x1f".join(("incident", tenant, fingerprint, opening_event_id))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:24]


def resolver(event: AlertEvent) -> str:
    """What resolved an incident, for people and the audit trail: the notification's source and event id."""
    where = f" {event.source.mailbox}" if event.source.mailbox else ""
    return f"{event.source.kind.value}{where} (event {event.event_id})"[:300]


def _remember(ids: tuple[str, ...], event_id: str) -> tuple[str, ...]:
    return (*ids, event_id)[-RECENT_EVENT_IDS:]


def dedup(state: DedupState | None, event: AlertEvent, window: timedelta, now: datetime) -> DedupOutcome:
    """Decide whether ``event`` opens an incident, joins the open one, or is a redelivery."""
    if state is not None and event.event_id in state.recent_event_ids:
        return DedupOutcome(new_state=state, incident=None, duplicate=True, replayed=True)

    firing = event.status is AlertStatus.FIRING
    inside = state is not None and now - state.opened_at < window

    if state is not None and (inside or not firing):
        resolves_now = not firing and not state.resolved
        updated = state.model_copy(
            update={
                "last_seen_at": max(state.last_seen_at, now),
                "count": state.count + 1,
                "resolved": not firing,
                "resolved_at": None if firing else (now if resolves_now else state.resolved_at),
                "resolved_by": None if firing else (resolver(event) if resolves_now else state.resolved_by),
                "recent_event_ids": _remember(state.recent_event_ids, event.event_id),
            }
        )
        return DedupOutcome(new_state=updated, incident=None, duplicate=True, replayed=False)

    if not firing:
        return DedupOutcome(new_state=None, incident=None, duplicate=False, replayed=False)

    incident_id = incident_id_for(event.tenant, event.fingerprint, event.event_id)
    new_state = DedupState(
        incident_id=incident_id,
        opened_at=now,
        last_seen_at=now,
        count=1,
        resolved=False,
        recent_event_ids=(event.event_id,),
    )
    incident = Incident(
        tenant=event.tenant,
        incident_id=incident_id,
        fingerprint=event.fingerprint,
        alert_class=event.alert_class,
        opened_at=now,
        last_seen_at=now,
        count=1,
        last_event_id=event.event_id,
        event=event,
    )
    return DedupOutcome(new_state=new_state, incident=incident, duplicate=False, replayed=False)
