"""One incident's life as the four topics carry it: opened, diagnosed (policy, LLM), an approved action that
succeeded, the approval decision, then the alert resolved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.records import (
    ActionEvent,
    ActionState,
    AlertEvent,
    AlertStatus,
    ApprovalDecision,
    Decision,
    Engine,
    Evidence,
    Incident,
    ProposedAction,
    RcaResult,
    Record,
)
from schemas.topics import ACTIONS, APPROVALS, INCIDENTS, RCA_RESULT, TopicSpec

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def event(tenant: str, alert: str, labels: dict[str, str], status: AlertStatus, at: datetime, n: int) -> AlertEvent:
    return AlertEvent(tenant=tenant, event_id=f"{tenant}-{alert}-{n}", fingerprint=f"fp-{tenant}-{alert}",
                      alert=alert, severity="P2", status=status, alert_class="vminsert_write_errors",
                      labels=labels, received_at=at, parser="test")


def lifecycle(tenant: str, incident_id: str, *, alert: str = "VminsertWriteErrors", start: datetime = T0,
              labels: dict[str, str] | None = None, action: str = "restart-vminsert", succeed: bool = True,
              resolve: bool = True) -> list[Record]:
    labels = labels or {"cluster": "HK-DCE5-PLATFORM", "namespace": "insight-system", "workload": "vminsert"}
    opened = Incident(tenant=tenant, incident_id=incident_id, fingerprint=f"fp-{tenant}-{alert}",
                      alert_class="vminsert_write_errors", opened_at=start, last_seen_at=start, count=1,
                      last_event_id="e1", event=event(tenant, alert, labels, AlertStatus.FIRING, start, 1))
    action_id = f"{incident_id}-a1"
    proposed = ProposedAction(action_id=action_id, name=action, tool="k8s", operation="rollout_restart",
                              params={"namespace": "insight-system", "name": "vminsert"})
    policy = RcaResult(tenant=tenant, incident_id=incident_id, alert_class="vminsert_write_errors",
                       engine=Engine.POLICY, diagnosis="vminsert cannot reach vmstorage: connection refused",
                       cause="vmstorage unavailable", confidence=0.7, produced_at=start + timedelta(seconds=4),
                       incident=opened, actions=[proposed],
                       evidence=[Evidence(tool="es", operation="count", query="q", summary="120 errors")])
    llm = policy.model_copy(update={"engine": Engine.LLM, "diagnosis": "vmstorage-1 restarted; inserts refused",
                                    "produced_at": start + timedelta(seconds=20), "model": "qwen", "latency_ms": 900,
                                    "tokens": 1200, "evidence": []})

    def state(s: ActionState, seconds: int, **extra: object) -> ActionEvent:
        return ActionEvent(tenant=tenant, action_id=action_id, incident_id=incident_id,
                           alert_class="vminsert_write_errors", name=action, tool="k8s", operation="rollout_restart",
                           params={"namespace": "insight-system", "name": "vminsert"}, state=s, dry_run=False,
                           at=start + timedelta(seconds=seconds), **extra)

    records: list[Record] = [opened, policy, llm, state(ActionState.PROPOSED, 5),
                             state(ActionState.AWAITING_APPROVAL, 5),
                             ApprovalDecision(tenant=tenant, action_id=action_id, decision=Decision.APPROVE,
                                              approver="slack:U42", channel="slack",
                                              decided_at=start + timedelta(seconds=60)),
                             state(ActionState.APPROVED, 61, approver="slack:U42"),
                             state(ActionState.RUNNING, 62)]
    records.append(state(ActionState.SUCCEEDED if succeed else ActionState.FAILED, 90, result="rollout complete"))
    if resolve:
        later = start + timedelta(minutes=5)
        records.append(opened.model_copy(update={
            "count": 2, "last_seen_at": later, "last_event_id": "e2",
            "event": event(tenant, alert, labels, AlertStatus.RESOLVED, later, 2)}))
    return records


def topic_and_key(record: Record) -> tuple[TopicSpec, str]:
    """The topic and key the pipeline writes ``record`` with (the knowledge base folds by incident id)."""
    if isinstance(record, Incident):
        return INCIDENTS, f"{record.tenant}:{record.fingerprint}"
    if isinstance(record, RcaResult):
        return RCA_RESULT, f"{record.tenant}:{record.incident_id}"
    if isinstance(record, ActionEvent):
        return ACTIONS, f"{record.tenant}:{record.action_id}"
    assert isinstance(record, ApprovalDecision)
    return APPROVALS, f"{record.tenant}:{record.action_id}"
