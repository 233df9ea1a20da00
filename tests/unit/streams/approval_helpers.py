"""Records and an in-memory publisher for the approval tests (a fake of the Publisher seam, not of our code)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from producers.publisher import Delivery, PublishError
from schemas.records import (
    ActionEvent,
    ActionState,
    AlertEvent,
    Engine,
    Evidence,
    EvidenceStatus,
    Incident,
    RcaResult,
    Record,
    Risk,
)
from schemas.topics import TopicSpec

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def action(
    action_id: str = "act-1",
    *,
    tenant: str = "acme",
    state: ActionState = ActionState.AWAITING_APPROVAL,
    expires_at: datetime | None = NOW + timedelta(minutes=30),
    params: dict[str, str] | None = None,
    risk: Risk = Risk.HIGH,
    **extra: Any,
) -> ActionEvent:
    return ActionEvent(
        tenant=tenant, action_id=action_id, incident_id="inc-1", alert_class="etcd_latency",
        name="restart etcd member", tool="k8s", operation="rollout_restart",
        params=params if params is not None else {"namespace": "kube-system", "kind": "statefulset", "name": "etcd"},
        risk=risk, state=state, dry_run=True, reason="fsync p99 above 500ms for 10m", at=NOW - timedelta(minutes=1),
        expires_at=expires_at, **extra,
    )


def rca(tenant: str = "acme") -> RcaResult:
    event = AlertEvent(
        tenant=tenant, event_id="ev-1", fingerprint="fp-1", alert="EtcdHighFsyncDurations", severity="P2",
        alert_class="etcd_latency", labels={"cluster": "HK-DCE5-PLATFORM", "namespace": "kube-system"},
        received_at=NOW - timedelta(minutes=5), parser="test",
    )
    incident = Incident(tenant=tenant, incident_id="inc-1", fingerprint="fp-1", alert_class="etcd_latency",
                        opened_at=NOW - timedelta(minutes=5), last_seen_at=NOW - timedelta(minutes=2), count=3,
                        last_event_id="ev-1", event=event)
    return RcaResult(
        tenant=tenant, incident_id="inc-1", alert_class="etcd_latency", engine=Engine.POLICY,
        diagnosis="etcd fsync latency is high on member etcd-0", cause="slow disk on the etcd node",
        confidence=0.8,
        evidence=[Evidence(tool="prom", operation="query",
                           query="histogram_quantile(0.99, rate(etcd_disk_wal_fsync_duration_seconds_bucket[5m]))",
                           status=EvidenceStatus.SUCCESS, summary="p99 fsync 0.73s")],
        produced_at=NOW - timedelta(minutes=1), incident=incident,
    )


@dataclass
class MemoryPublisher:
    """Keeps what was published; ``fail_next`` makes the next publishes fail like an unreachable broker."""

    published: list[tuple[str, str, Record]] = field(default_factory=list)
    fail_next: int = 0

    async def publish(self, spec: TopicSpec, key: str, record: Record) -> Delivery:
        if self.fail_next:
            self.fail_next -= 1
            raise PublishError("broker down", topic=spec.name, retriable=True)
        self.published.append((spec.name, key, record))
        return Delivery(spec.name, 0, len(self.published) - 1)

    async def close(self) -> None:
        return None
