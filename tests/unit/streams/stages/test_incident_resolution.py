"""Incidents that close: a resolved alert resolves its incident, withdraws what waits, refuses late approvals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policies import PolicySet, action_id_for, load_policies
from producers.fingerprint import alert_fingerprint, event_id
from schemas.records import (
    ActionEvent,
    ActionState,
    AlertEvent,
    AlertStatus,
    AuditRecord,
    EventSource,
    Incident,
    IncidentState,
    SourceKind,
)
from streams.stages.approval import (
    HTTP_STATUS,
    Approval,
    RejectionReason,
    refuse_decision,
    remember_decision,
)
from streams.stages.audit import Audit, content_id
from streams.stages.core import StageContext
from streams.stages.dedup import RESOLVED, Dedup
from tests.support.approval_keys import APPROVAL_KEYS, signed_decision

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
LABELS = {"cluster": "HK-DCE5-PLATFORM", "namespace": "amamba-system", "workload": "amamba-jenkins-0"}


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    return load_policies()


def _event(policies: PolicySet, n: int, status: AlertStatus = AlertStatus.FIRING) -> AlertEvent:
    event = AlertEvent(
        tenant="acme", event_id=event_id("acme", f"<m{n}@t>", 0),
        fingerprint=alert_fingerprint("acme", "JenkinsRestarted", LABELS), alert="JenkinsRestarted",
        severity="warning", status=status, labels=LABELS, received_at=T0, parser="test",
        source=EventSource(kind=SourceKind.ALERTMANAGER),
    )
    return event.model_copy(update={"alert_class": policies.classify(event)})


def _feed(policies: PolicySet, steps: list[tuple[AlertStatus, timedelta]]) -> list[tuple[str, Incident | None]]:
    """Each event through the dedup stage, the table row carried along: (outcome, incident sent)."""
    state = None
    seen = []
    for n, (status, after) in enumerate(steps):
        stage = Dedup(policies, context=StageContext(clock=lambda after=after: T0 + after))
        result = stage(_event(policies, n, status), state)
        state = result.state if result.state is not None else state
        incident = next((o.record for o in result.outputs if isinstance(o.record, Incident)), None)
        seen.append((result.outcome, incident))
    return seen


def test_a_resolved_alert_resolves_the_open_incident_with_what_and_when(policies: PolicySet) -> None:
    (_, opened), (outcome, resolved) = _feed(policies, [(AlertStatus.FIRING, timedelta()),
                                                        (AlertStatus.RESOLVED, timedelta(minutes=5))])
    assert opened is not None and opened.state is IncidentState.OPEN and opened.resolved_at is None
    assert outcome == RESOLVED
    assert resolved is not None and resolved.incident_id == opened.incident_id
    assert resolved.state is IncidentState.RESOLVED
    assert resolved.resolved_at == T0 + timedelta(minutes=5)
    assert resolved.resolved_by == f"alertmanager (event {event_id('acme', '<m1@t>', 0)})"


def test_a_resolved_alert_after_the_window_still_resolves_it(policies: PolicySet) -> None:
    steps = [(AlertStatus.FIRING, timedelta()), (AlertStatus.RESOLVED, timedelta(days=3))]
    (_, _), (outcome, resolved) = _feed(policies, steps)
    assert outcome == RESOLVED and resolved is not None and resolved.state is IncidentState.RESOLVED


def test_a_second_resolved_notification_keeps_the_first_resolution_and_withdraws_nothing_new(
    policies: PolicySet,
) -> None:
    steps = [(AlertStatus.FIRING, timedelta()), (AlertStatus.RESOLVED, timedelta(minutes=5)),
             (AlertStatus.RESOLVED, timedelta(minutes=9))]
    *_, (outcome, again) = _feed(policies, steps)
    assert outcome == "duplicate"
    assert again is not None and again.state is IncidentState.RESOLVED
    assert again.resolved_at == T0 + timedelta(minutes=5)


def test_a_refire_inside_the_window_opens_the_same_incident_again(policies: PolicySet) -> None:
    steps = [(AlertStatus.FIRING, timedelta()), (AlertStatus.RESOLVED, timedelta(minutes=5)),
             (AlertStatus.FIRING, timedelta(minutes=6))]
    (_, opened), _, (outcome, refired) = _feed(policies, steps)
    assert outcome == "duplicate"
    assert refired is not None and refired.incident_id == opened.incident_id  # type: ignore[union-attr]
    assert refired.state is IncidentState.OPEN and refired.resolved_at is None and refired.resolved_by is None


def test_withdrawals_name_every_policy_action_of_the_class_and_only_for_a_resolved_incident(
    policies: PolicySet,
) -> None:
    (_, opened), (_, resolved) = _feed(policies, [(AlertStatus.FIRING, timedelta()),
                                                  (AlertStatus.RESOLVED, timedelta(minutes=5))])
    assert opened is not None and resolved is not None
    stage = Dedup(policies)
    cls = policies.get(resolved.alert_class)
    assert cls is not None and cls.spec.actions
    assert stage.withdrawals(resolved) == [f"acme:{action_id_for(resolved.incident_id, a.name)}"
                                           for a in cls.spec.actions]
    assert stage.withdrawals(opened) == []


def _resolved_incident(policies: PolicySet) -> Incident:
    (_, _), (_, resolved) = _feed(policies, [(AlertStatus.FIRING, timedelta()),
                                             (AlertStatus.RESOLVED, timedelta(minutes=5))])
    assert resolved is not None
    return resolved


def _waiting(incident: Incident, state: ActionState = ActionState.AWAITING_APPROVAL) -> ActionEvent:
    return ActionEvent(tenant="acme", action_id=action_id_for(incident.incident_id, "restart_jenkins"),
                       incident_id=incident.incident_id, alert_class=incident.alert_class, name="restart_jenkins",
                       tool="k8s", operation="rollout_restart", state=state, at=T0,
                       expires_at=T0 + timedelta(hours=1))


def test_an_action_awaiting_approval_is_withdrawn_when_its_incident_resolves(policies: PolicySet) -> None:
    incident = _resolved_incident(policies)
    approval = Approval(context=StageContext(clock=lambda: T0 + timedelta(minutes=6)), approval_keys=APPROVAL_KEYS)
    result = approval.withdrawn(incident, _waiting(incident).model_dump(mode="json"))
    assert result.outcome == "withdrawn"
    (out,) = result.outputs
    record = out.record
    assert isinstance(record, ActionEvent) and out.key == f"acme:{record.action_id}"
    assert record.state is ActionState.WITHDRAWN and record.at == T0 + timedelta(minutes=6)
    assert record.result is not None and "incident resolved at 2026-11-25 03:05:00 UTC" in record.result


@pytest.mark.parametrize("state", [ActionState.APPROVED, ActionState.REJECTED, ActionState.EXPIRED,
                                   ActionState.SUCCEEDED])
def test_a_decided_action_is_not_withdrawn(policies: PolicySet, state: ActionState) -> None:
    incident = _resolved_incident(policies)
    approval = Approval(context=StageContext(clock=lambda: T0), approval_keys=APPROVAL_KEYS)
    assert approval.withdrawn(incident, _waiting(incident, state).model_dump(mode="json")).outputs == []
    assert approval.withdrawn(incident, None).outcome == "not_pending"


def test_an_awaiting_action_of_another_incident_is_not_withdrawn(policies: PolicySet) -> None:
    incident = _resolved_incident(policies)
    other = _waiting(incident).model_copy(update={"incident_id": "another"})
    approval = Approval(context=StageContext(clock=lambda: T0), approval_keys=APPROVAL_KEYS)
    assert approval.withdrawn(incident, other.model_dump(mode="json")).outputs == []


def test_an_approval_after_the_withdrawal_is_refused_as_withdrawn(policies: PolicySet) -> None:
    incident = _resolved_incident(policies)
    approval = Approval(context=StageContext(clock=lambda: T0 + timedelta(minutes=6)), approval_keys=APPROVAL_KEYS)
    (out,) = approval.withdrawn(incident, _waiting(incident).model_dump(mode="json")).outputs
    assert isinstance(out.record, ActionEvent)
    decision = signed_decision("acme", out.record.action_id)
    # The worker remembers the withdrawal as the action's decision, so the stage sees nothing waiting.
    assert approval(decision, None).outcome == "not_pending"
    refusal = refuse_decision(decision, "not_pending", remember_decision(out.record), T0 + timedelta(minutes=7))
    assert refusal.reason is RejectionReason.WITHDRAWN and HTTP_STATUS[refusal.reason] == 410
    assert refusal.message.startswith(f"action {out.record.action_id} was withdrawn at 2026-11-25 03:06:00 UTC "
                                      "because its incident resolved")
    assert "this approve by slack:U1 changes nothing" in refusal.message


def test_the_withdrawal_is_an_audit_step_by_the_resolution(policies: PolicySet) -> None:
    incident = _resolved_incident(policies)
    approval = Approval(context=StageContext(clock=lambda: T0), approval_keys=APPROVAL_KEYS)
    (out,) = approval.withdrawn(incident, _waiting(incident).model_dump(mode="json")).outputs
    assert isinstance(out.record, ActionEvent)
    result = Audit(context=StageContext(clock=lambda: T0))(out.record, None,
                                                         content_id(out.record.model_dump_json().encode()))
    (step,) = [o.record for o in result.outputs if isinstance(o.record, AuditRecord)]
    assert step.actor == "incident-resolved" and step.action == "restart_jenkins:withdrawn"
    assert step.detail["incident_id"] == incident.incident_id
