"""Realistic instances of every record, shared by the schema and codec tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from schemas.records import (
    ActionEvent,
    ActionState,
    AlertEvent,
    AlertMetrics,
    AlertStatus,
    Approval,
    ApprovalDecision,
    AuditKind,
    AuditRecord,
    Checkpoint,
    DeadLetter,
    Decision,
    Engine,
    EventSource,
    Evidence,
    EvidenceStatus,
    Incident,
    ProposedAction,
    RawMail,
    RawRef,
    RcaResult,
    Record,
    Risk,
    SourceKind,
)

# Millisecond precision: the schemas store timestamp-millis.
T0 = datetime(2025, 9, 23, 0, 0, 0, 123000, tzinfo=UTC)
CST = timezone(timedelta(hours=8))


def alert_event() -> AlertEvent:
    return AlertEvent(
        tenant="daocloud-hk",
        event_id="evt-01J8Z6Q4W3",
        fingerprint="9f2c1e0b7a4d",
        alert="PrometheusRemoteWriteBehind",
        severity="P2",
        status=AlertStatus.FIRING,
        alert_class="prometheus_remote_write_behind",
        labels={
            "cluster": "HK-DCE5-PLATFORM",
            "namespace": "insight-system",
            "workload": "prometheus-insight-agent-kube-prometh-prometheus-0",
            "component": "prometheus",
        },
        annotations={"description": "远程写入落后 120 秒", "runbook_url": "https://runbooks.example/prw"},
        metrics=AlertMetrics(times=2, first_occur=datetime(2025, 9, 23, 8, 0, tzinfo=CST)),
        raw=RawRef(mail_subject="Control Cluster Details", mail_id="<20250923000000.1@dce5.example>"),
        source=EventSource(
            kind=SourceKind.IMAP, mailbox="alerts@example.com", topic="raw-mail", partition=2, offset=41_000_000_123
        ),
        received_at=T0,
        parser="dce5-insight-table/v1",
    )


def incident() -> Incident:
    return Incident(
        tenant="daocloud-hk",
        incident_id="inc-7f3a",
        fingerprint="9f2c1e0b7a4d",
        alert_class="prometheus_remote_write_behind",
        opened_at=T0,
        last_seen_at=T0 + timedelta(minutes=5),
        count=3,
        last_event_id="evt-01J8Z6Q4W3",
        event=alert_event(),
    )


def proposed_action() -> ProposedAction:
    return ProposedAction(
        action_id="act-1",
        name="restart_prometheus_shard",
        tool="k8s",
        operation="rollout_restart",
        params={"namespace": "insight-system", "statefulset": "prometheus-insight-agent"},
        risk=Risk.HIGH,
        approval=Approval.REQUIRED,
        rollback=None,
        reason="remote write queue stuck for 2h",
    )


def rca_result() -> RcaResult:
    return RcaResult(
        tenant="daocloud-hk",
        incident_id="inc-7f3a",
        alert_class="prometheus_remote_write_behind",
        engine=Engine.LLM,
        diagnosis="vminsert rejects samples; remote write falls behind",
        cause="vminsert write errors",
        confidence=0.82,
        evidence=[
            Evidence(
                tool="prom",
                operation="query",
                query='rate(prometheus_remote_storage_samples_failed_total{namespace="insight-system"}[5m])',
                status=EvidenceStatus.SUCCESS,
                summary="failures 40/s",
            ),
            Evidence(
                tool="es",
                operation="search",
                query="vminsert error",
                status=EvidenceStatus.ERROR,
                error="503 Service Unavailable",
            ),
        ],
        actions=[proposed_action()],
        rollback=["scale vminsert back to 3 replicas"],
        produced_at=T0 + timedelta(seconds=30),
        incident=incident(),
        model="qwen2.5-72b-instruct",
        latency_ms=5_400,
    )


def action_event() -> ActionEvent:
    return ActionEvent(
        tenant="daocloud-hk",
        action_id="act-1",
        incident_id="inc-7f3a",
        alert_class="prometheus_remote_write_behind",
        name="restart_prometheus_shard",
        tool="k8s",
        operation="rollout_restart",
        params={"namespace": "insight-system"},
        risk=Risk.HIGH,
        state=ActionState.AWAITING_APPROVAL,
        dry_run=False,
        reason="needs approval",
        result=None,
        at=T0,
        expires_at=T0 + timedelta(hours=1),
        duration_ms=None,
    )


def approval_decision() -> ApprovalDecision:
    return ApprovalDecision(
        tenant="daocloud-hk",
        action_id="act-1",
        decision=Decision.APPROVE,
        approver="U024BE7LH",
        channel="slack",
        decided_at=T0,
        reason="ok, off-peak",
    )


def audit_record() -> AuditRecord:
    return AuditRecord(
        tenant="daocloud-hk",
        seq=10_000_000_000,
        at=T0,
        kind=AuditKind.EXECUTION,
        actor="executor",
        subject_id="act-1",
        action="rollout_restart",
        detail={"namespace": "insight-system", "dry_run": "false"},
        prev_hash="0" * 64,
        hash="a" * 64,
    )


def dead_letter() -> DeadLetter:
    return DeadLetter(
        tenant="daocloud-hk",
        stage="normalize",
        source_topic="raw-mail",
        partition=0,
        offset=17,
        key=b"daocloud-hk:<x@y>",
        payload=b"\xc3\x01garbage\x00\xff",
        reason="unknown writer schema fingerprint 0011223344556677",
        error_type="CodecError",
        at=T0,
    )


def checkpoint() -> Checkpoint:
    return Checkpoint(
        tenant="daocloud-hk",
        mailbox="alerts@example.com",
        kind=SourceKind.IMAP,
        uidvalidity=3_857_529_045,  # above 2**31: IMAP UIDs are unsigned 32-bit
        last_uid=4_294_967_295,
        delta_link=None,
        updated_at=T0,
    )


def raw_mail() -> RawMail:
    return RawMail(
        tenant="daocloud-hk",
        message_id="<20250923000000.1@dce5.example>",
        mailbox="alerts@example.com",
        source=SourceKind.IMAP,
        received_at=T0,
        subject="Control Cluster Details",
        sender="insight@dce5.example",
        raw="Subject: =?GB2312?B?uOa+rw==?=\r\n\r\n告警".encode("gb18030"),
    )


BUILDERS: dict[type[Record], Callable[[], Record]] = {
    RawMail: raw_mail,
    AlertEvent: alert_event,
    Incident: incident,
    RcaResult: rca_result,
    ActionEvent: action_event,
    ApprovalDecision: approval_decision,
    AuditRecord: audit_record,
    DeadLetter: dead_letter,
    Checkpoint: checkpoint,
}


@pytest.fixture
def sample() -> Callable[[type[Record]], Record]:
    """A realistic instance of a top-level record class."""
    return lambda record_type: BUILDERS[record_type]()
