"""Dedup: one incident per fingerprint per window; redelivered events change nothing."""

from __future__ import annotations

from datetime import datetime, timedelta

from policies import RECENT_EVENT_IDS, DedupState, dedup, incident_id_for
from schemas.records import AlertEvent, AlertStatus
from tests.unit.policies.conftest import EventFactory
from tests.unit.policies.policy_samples import REALISTIC

WINDOW = timedelta(minutes=30)


def _event(make_event: EventFactory, n: int, status: AlertStatus = AlertStatus.FIRING) -> AlertEvent:
    alert, labels = REALISTIC["prometheus_remote_write_behind"]
    return make_event(alert, labels, message_id=f"<m{n}@example.test>", status=status)


def test_first_firing_event_opens_an_incident(make_event: EventFactory, now: datetime) -> None:
    event = _event(make_event, 1)
    out = dedup(None, event, WINDOW, now)
    assert out.incident is not None
    assert not out.duplicate and not out.replayed
    assert out.incident.event == event
    assert out.incident.alert_class == "prometheus_remote_write_behind"
    assert out.incident.opened_at == now and out.incident.count == 1
    assert out.new_state is not None and out.new_state.incident_id == out.incident.incident_id


def test_incident_id_is_deterministic(make_event: EventFactory, now: datetime) -> None:
    event = _event(make_event, 1)
    first = dedup(None, event, WINDOW, now)
    again = dedup(None, event, WINDOW, now + timedelta(hours=5))
    assert first.incident is not None and again.incident is not None
    assert first.incident.incident_id == again.incident.incident_id
    assert first.incident.incident_id == incident_id_for(event.tenant, event.fingerprint, event.event_id)
    other = dedup(None, _event(make_event, 2), WINDOW, now)
    assert other.incident is not None and other.incident.incident_id != first.incident.incident_id


def test_duplicate_inside_the_window(make_event: EventFactory, now: datetime) -> None:
    opened = dedup(None, _event(make_event, 1), WINDOW, now)
    later = now + timedelta(minutes=10)
    out = dedup(opened.new_state, _event(make_event, 2), WINDOW, later)
    assert out.incident is None
    assert out.duplicate and not out.replayed
    assert out.new_state is not None
    assert out.new_state.count == 2
    assert out.new_state.last_seen_at == later
    assert opened.new_state is not None
    assert out.new_state.incident_id == opened.new_state.incident_id


def test_outside_the_window_opens_a_new_incident(make_event: EventFactory, now: datetime) -> None:
    opened = dedup(None, _event(make_event, 1), WINDOW, now)
    out = dedup(opened.new_state, _event(make_event, 2), WINDOW, now + WINDOW)
    assert out.incident is not None and not out.duplicate
    assert opened.incident is not None
    assert out.incident.incident_id != opened.incident.incident_id
    assert out.new_state is not None and out.new_state.count == 1


def test_replayed_event_id_changes_nothing(make_event: EventFactory, now: datetime) -> None:
    first = _event(make_event, 1)
    opened = dedup(None, first, WINDOW, now)
    second = dedup(opened.new_state, _event(make_event, 2), WINDOW, now + timedelta(minutes=1))
    for when in (now + timedelta(minutes=2), now + timedelta(days=1)):
        replay = dedup(second.new_state, first, WINDOW, when)
        assert replay.replayed and replay.incident is None
        assert replay.new_state == second.new_state


def test_resolve_then_refire_inside_the_window_stays_one_incident(make_event: EventFactory, now: datetime) -> None:
    opened = dedup(None, _event(make_event, 1), WINDOW, now)
    resolved = dedup(opened.new_state, _event(make_event, 2, AlertStatus.RESOLVED), WINDOW, now + timedelta(minutes=5))
    assert resolved.new_state is not None and resolved.new_state.resolved
    refired = dedup(resolved.new_state, _event(make_event, 3), WINDOW, now + timedelta(minutes=8))
    assert refired.incident is None and refired.duplicate
    assert refired.new_state is not None and not refired.new_state.resolved and refired.new_state.count == 3


def test_resolved_event_never_opens_an_incident(make_event: EventFactory, now: datetime) -> None:
    out = dedup(None, _event(make_event, 1, AlertStatus.RESOLVED), WINDOW, now)
    assert out.incident is None and out.new_state is None
    opened = dedup(None, _event(make_event, 2), WINDOW, now)
    late = dedup(opened.new_state, _event(make_event, 3, AlertStatus.RESOLVED), WINDOW, now + timedelta(hours=3))
    assert late.incident is None and late.new_state is not None and late.new_state.resolved


def test_recent_event_ids_are_bounded(make_event: EventFactory, now: datetime) -> None:
    state: DedupState | None = dedup(None, _event(make_event, 0), WINDOW, now).new_state
    for n in range(1, RECENT_EVENT_IDS + 10):
        state = dedup(state, _event(make_event, n), WINDOW, now + timedelta(seconds=n)).new_state
    assert state is not None
    assert len(state.recent_event_ids) == RECENT_EVENT_IDS
    assert state.count == RECENT_EVENT_IDS + 10


def test_state_survives_a_json_round_trip(make_event: EventFactory, now: datetime) -> None:
    state = dedup(None, _event(make_event, 1), WINDOW, now).new_state
    assert state is not None
    assert DedupState.model_validate_json(state.model_dump_json()) == state
