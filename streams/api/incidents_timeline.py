"""From the view's joined records to the API's response models, with one time-ordered timeline per incident."""

from __future__ import annotations

from schemas.records import ActionEvent, ActionState, ApprovalDecision, Incident, IncidentState, RcaResult
from streams.api.incidents_models import (
    ActionHistory,
    ActionStateEntry,
    ActionSummary,
    AlertEntry,
    ApprovalEntry,
    AuditStep,
    DiagnosisEntry,
    EvidenceEntry,
    IncidentDetail,
    IncidentSummary,
    ProposedActionEntry,
    ShownState,
    TimelineEntry,
)
from streams.api.incidents_view import IncidentSnapshot, IncidentsView


def action_summary(action: ActionEvent) -> ActionSummary:
    return ActionSummary(
        tenant=action.tenant, action_id=action.action_id, incident_id=action.incident_id,
        alert_class=action.alert_class, name=action.name, tool=action.tool, operation=action.operation,
        params=dict(action.params), risk=action.risk.value, state=ShownState(action.outcome),
        dry_run=action.dry_run,
        reason=action.reason, result=action.result, approver=action.approver, at=action.at,
        expires_at=action.expires_at, rollback_of=action.rollback_of,
    )


def _summary_fields(snap: IncidentSnapshot, view: IncidentsView) -> dict[str, object]:
    incident = snap.incident
    labels = incident.event.labels
    diagnosis = _latest_diagnosis(snap.diagnoses)
    waiting = sum(1 for states in snap.actions
                  if view.latest_action_state(states).state is ActionState.AWAITING_APPROVAL)
    return {
        "tenant": incident.tenant, "incident_id": incident.incident_id, "fingerprint": incident.fingerprint,
        "alert_class": incident.alert_class, "alert": incident.event.alert, "severity": incident.event.severity,
        "cluster": labels.get("cluster"), "namespace": labels.get("namespace"), "state": incident.state.value,
        "count": incident.count, "opened_at": incident.opened_at, "last_seen_at": incident.last_seen_at,
        "resolved_at": incident.resolved_at, "diagnosis": diagnosis.diagnosis if diagnosis else None,
        "actions_awaiting_approval": waiting,
    }


def _latest_diagnosis(diagnoses: tuple[RcaResult, ...]) -> RcaResult | None:
    """The LLM's answer when there is one (it came after the policy's triage and saw its evidence)."""
    llm = [d for d in diagnoses if d.engine.value == "llm"]
    chosen = llm or list(diagnoses)
    return chosen[-1] if chosen else None


def incident_summary(snap: IncidentSnapshot, view: IncidentsView) -> IncidentSummary:
    return IncidentSummary.model_validate(_summary_fields(snap, view))


def _alert(record: Incident) -> AlertEntry:
    event = record.event
    return AlertEntry(at=record.last_seen_at, event_id=record.last_event_id, alert=event.alert,
                      severity=event.severity, status=event.status.value, count=record.count,
                      labels=dict(event.labels), annotations=dict(event.annotations),
                      source=event.source.kind.value, mail_subject=event.raw.mail_subject)


def _diagnosis(result: RcaResult) -> DiagnosisEntry:
    return DiagnosisEntry(
        at=result.produced_at, engine=result.engine.value, diagnosis=result.diagnosis, cause=result.cause,
        confidence=result.confidence, model=result.model, latency_ms=result.latency_ms,
        evidence=[EvidenceEntry(tool=e.tool, operation=e.operation, query=e.query, status=e.status.value,
                                summary=e.summary, error=e.error) for e in result.evidence],
        proposed_actions=[ProposedActionEntry(action_id=a.action_id, name=a.name, tool=a.tool,
                                              operation=a.operation, params=dict(a.params), risk=a.risk.value,
                                              approval=a.approval.value, reason=a.reason)
                          for a in result.actions],
        rollback=list(result.rollback),
    )


def _history(states: tuple[ActionEvent, ...], view: IncidentsView) -> ActionHistory:
    latest = view.latest_action_state(states)
    return ActionHistory(
        **action_summary(latest).model_dump(),
        history=[ActionStateEntry(at=s.at, state=ShownState(s.outcome), result=s.result, approver=s.approver,
                                  dry_run=s.dry_run, duration_ms=s.duration_ms) for s in states],
    )


def _approval(decision: ApprovalDecision, verified: bool) -> ApprovalEntry:
    return ApprovalEntry(at=decision.decided_at, action_id=decision.action_id, decision=decision.decision.value,
                         approver=decision.approver, via=decision.channel, reason=decision.reason,
                         verified=verified)


def _state_line(state: ActionEvent) -> str:
    what = f"{state.name} ({state.tool}.{state.operation}, risk {state.risk.value})"
    if state.state is ActionState.AWAITING_APPROVAL:
        until = f" until {state.expires_at.isoformat()}" if state.expires_at else ""
        return f"{what} awaits approval{until}"
    text = f"{what}: {state.outcome}"  # a dry run that went through reads "dry-run", never "succeeded"
    if state.result:
        text += f" - {state.result}"
    if state.dry_run and state.state is ActionState.FAILED:
        text += " (dry-run)"
    return text


def incident_detail(snap: IncidentSnapshot, view: IncidentsView) -> IncidentDetail:
    incident = snap.incident
    timeline: list[TimelineEntry] = []
    for record in snap.alerts:
        if record.state is IncidentState.RESOLVED:
            timeline.append(TimelineEntry(at=record.resolved_at or record.last_seen_at, kind="resolved",
                                          summary=f"resolved by {record.resolved_by or 'a resolved alert'}",
                                          ref=record.last_event_id))
        else:
            verb = "opened" if record.count == 1 else f"repeated (x{record.count})"
            timeline.append(TimelineEntry(at=record.last_seen_at, kind="alert",
                                          summary=f"{record.event.alert} [{record.event.severity}] {verb}",
                                          ref=record.last_event_id))
    for result in snap.diagnoses:
        timeline.append(TimelineEntry(
            at=result.produced_at, kind="diagnosis",
            summary=f"{result.engine.value}: {result.diagnosis} ({len(result.evidence)} evidence, "
                    f"{len(result.actions)} proposed action(s))"))
    for states in snap.actions:
        timeline += [TimelineEntry(at=s.at, kind="action", summary=_state_line(s), ref=s.action_id) for s in states]
    for decision, verified in snap.approvals:
        timeline.append(TimelineEntry(
            at=decision.decided_at, kind="approval", ref=decision.action_id,
            summary=f"{decision.decision.value} by {decision.approver} via {decision.channel}"
                    + (f": {decision.reason}" if decision.reason else "") + ("" if verified else " (unverified)")))
    for step in snap.audit:
        timeline.append(TimelineEntry(at=step.at, kind="audit", ref=step.subject_id,
                                      summary=f"audit #{step.seq} {step.kind.value}: {step.action} by {step.actor}"))
    timeline.sort(key=lambda e: e.at)
    return IncidentDetail(
        **_summary_fields(snap, view),
        resolved_by=incident.resolved_by,
        alerts=[_alert(r) for r in snap.alerts],
        diagnoses=[_diagnosis(r) for r in snap.diagnoses],
        actions=[_history(states, view) for states in snap.actions],
        approvals=[_approval(d, v) for d, v in snap.approvals],
        audit=[AuditStep(at=s.at, seq=s.seq, kind=s.kind.value, actor=s.actor, subject_id=s.subject_id,
                         action=s.action, detail=dict(s.detail)) for s in snap.audit],
        timeline=timeline,
    )
