"""Alertmanager webhook (version 4) bodies into AlertEvents, tolerant of optional fields."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from producers.fingerprint import alert_fingerprint, event_id
from schemas.records import AlertEvent, AlertMetrics, AlertStatus, EventSource, RawRef, SourceKind

#: Alertmanager severities (label values) to rcaflow's P1-P4.
DEFAULT_SEVERITY_MAP: Mapping[str, str] = {
    "critical": "P1",
    "page": "P1",
    "error": "P2",
    "major": "P2",
    "high": "P2",
    "warning": "P3",
    "warn": "P3",
    "medium": "P3",
    "info": "P4",
    "notice": "P4",
    "low": "P4",
    "none": "P4",
}

#: Labels that name the workload, in order of preference, when there is no ``workload`` label.
_WORKLOAD_LABELS = ("workload", "statefulset", "deployment", "daemonset", "pod", "service", "instance")
_COMPONENT_HINTS = ("etcd", "vminsert", "vmalert", "vmstorage", "vmselect", "prometheus", "jenkins", "fluent-bit")


class WebhookAlert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: str = "firing"
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime | None = None  # noqa: N815 - Alertmanager's field name
    endsAt: datetime | None = None  # noqa: N815
    generatorURL: str | None = None  # noqa: N815
    fingerprint: str | None = None


class WebhookBody(BaseModel):
    """Version 4; unknown and missing optional fields (truncatedAlerts, ...) are tolerated."""

    model_config = ConfigDict(extra="ignore")

    version: str = "4"
    groupKey: str = ""  # noqa: N815
    status: str = "firing"
    receiver: str = ""
    alerts: list[WebhookAlert] = Field(min_length=1, max_length=10_000)
    truncatedAlerts: int = 0  # noqa: N815


def _component(labels: Mapping[str, str]) -> str | None:
    if labels.get("component"):
        return labels["component"]
    haystack = " ".join(labels.get(k, "") for k in ("job", "container", "pod", "alertname")).lower()
    return next((hint for hint in _COMPONENT_HINTS if hint in haystack), None)


def webhook_to_events(
    body: WebhookBody,
    *,
    tenant: str,
    received_at: datetime,
    severity_map: Mapping[str, str] = DEFAULT_SEVERITY_MAP,
) -> list[AlertEvent]:
    events: list[AlertEvent] = []
    for alert in body.alerts:
        labels = dict(alert.labels)
        name = labels.get("alertname", "")
        if not name:
            raise ValueError("every alert needs labels.alertname")
        if "workload" not in labels:
            workload = next((labels[k] for k in _WORKLOAD_LABELS if labels.get(k)), "")
            if workload:
                labels["workload"] = workload
        component = _component(labels)
        if component:
            labels["component"] = component
        status = AlertStatus.RESOLVED if alert.status == "resolved" else AlertStatus.FIRING
        fingerprint = alert_fingerprint(tenant, name, labels)
        starts = alert.startsAt.isoformat() if alert.startsAt else ""
        events.append(
            AlertEvent(
                tenant=tenant,
                # Alertmanager HA peers send the same alert twice: same id, so dedup treats it as a replay.
                event_id=event_id(tenant, "alertmanager", body.groupKey, alert.fingerprint or fingerprint,
                                  starts, status.value),
                fingerprint=fingerprint,
                alert=name,
                severity=severity_map.get(labels.get("severity", "").lower(), "P3"),
                status=status,
                labels=labels,
                annotations=dict(alert.annotations),
                metrics=AlertMetrics(times=1, first_occur=alert.startsAt),
                raw=RawRef(mail_subject=None, mail_id=None),
                source=EventSource(kind=SourceKind.ALERTMANAGER),
                received_at=received_at,
                parser="alertmanager-webhook@4",
            )
        )
    return events
