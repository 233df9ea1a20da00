"""An etcd incident and its class brief as the composition root would render them."""

from __future__ import annotations

from datetime import UTC, datetime

from executors.llm import AllowedAction, AllowedParam, ClassBrief
from schemas.records import AlertEvent, Approval, Incident, Risk

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def incident(description: str = "etcd cluster member fsync durations are high") -> Incident:
    event = AlertEvent(
        tenant="acme",
        event_id="ev1",
        fingerprint="fp1",
        alert="etcdHighFsyncDurations",
        severity="P2",
        alert_class="etcd_latency",
        labels={
            "cluster": "HK-DCE5-PLATFORM",
            "namespace": "kube-system",
            "workload": "etcd-master-1",
            "pod": "etcd-master-1",
            "component": "etcd",
        },
        annotations={"description": description},
        received_at=NOW,
        parser="test",
    )
    return Incident(
        tenant="acme",
        incident_id="inc-1",
        fingerprint="fp1",
        alert_class="etcd_latency",
        opened_at=NOW,
        last_seen_at=NOW,
        last_event_id="ev1",
        event=event,
    )


def brief() -> ClassBrief:
    return ClassBrief(
        id="etcd_latency",
        title="etcd latency",
        description="etcd WAL fsync, backend commit or peer round trip is slow.",
        runbooks=["https://runbooks.prometheus-operator.dev/runbooks/etcd/etcdhighfsyncdurations/"],
        known_causes=["slow disk: WAL fsync p99 above 0.5s", "network: peer round trip above 0.15s"],
        allowed_actions=[
            AllowedAction(
                name="collect_diagnostics",
                description="collect pod state and logs",
                tool="diagnostics",
                operation="collect",
                risk=Risk.READ,
                approval=Approval.AUTO,
                params={
                    "namespace": AllowedParam(values=("kube-system",)),
                    "workload": AllowedParam(values=("etcd-master-1",)),
                },
            ),
            AllowedAction(
                name="silence_flapping",
                description="silence the flapping alert",
                tool="alertmanager",
                operation="silence",
                risk=Risk.LOW,
                approval=Approval.AUTO,
                rollback="expire the silence",
                params={
                    "alertname": AllowedParam(values=("etcdHighFsyncDurations",)),
                    "duration": AllowedParam(values=("30m", "1h", "2h"), default="1h"),
                },
            ),
            AllowedAction(
                name="restart_etcd_member",
                description="delete the slow etcd member pod",
                tool="k8s",
                operation="delete_pod",
                risk=Risk.HIGH,
                approval=Approval.REQUIRED,
                params={
                    "namespace": AllowedParam(values=("kube-system",)),
                    "pod": AllowedParam(values=("etcd-master-1",)),
                },
            ),
        ],
    )
