"""Alertmanager webhook (version 4) bodies into AlertEvents, tolerant of optional fields."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from producers.cluster_names import with_cluster_name
from producers.errors import ProducerError
from producers.fingerprint import alert_fingerprint, event_id
from producers.workload import WORKLOAD_FROM, with_workload
from schemas.annotations import GENERATOR_URL
from schemas.limits import ANNOTATION_TRUNCATED_MARKER, MAX_LABEL_VALUE_BYTES
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

#: Labels that name the workload, in order of preference, when there is no ``workload`` label (never an address).
_WORKLOAD_LABELS = WORKLOAD_FROM
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


class WebhookRefusedError(ProducerError):
    """A webhook body that can never be accepted as sent (not retriable); ``status`` is the HTTP answer."""

    status: int = 422


class LabelTooLargeError(WebhookRefusedError):
    """A label value over ``MAX_LABEL_VALUE_BYTES``. Labels are the alert's identity (fingerprint, the
    namespace and workload actions act on), so a cut value could merge two alerts: refused, not cut."""

    status = 413

    def __init__(self, index: int, alertname: str, label: str, size: int, limit: int) -> None:
        super().__init__(
            f"alert {index} ({alertname[:80] or 'no alertname'}): label {label[:80]!r} has a {size}-byte value, "
            f"over the {limit}-byte limit per label value"
        )
        self.index = index
        self.label = label


def capped_annotations(annotations: Mapping[str, str], limit: int = MAX_LABEL_VALUE_BYTES) -> dict[str, str]:
    """Annotations are prose (summary, description): an over-long value is cut at ``limit`` UTF-8 bytes
    and ends with a marker saying how much was cut, so the alert stays useful and the cut is visible."""
    out: dict[str, str] = {}
    for name, value in annotations.items():
        data = value.encode("utf-8")
        if len(data) <= limit:
            out[name] = value
            continue
        marker_room = len(ANNOTATION_TRUNCATED_MARKER.encode()) + 24
        kept = data[: max(0, limit - marker_room)].decode("utf-8", errors="ignore")
        cut = len(data) - len(kept.encode("utf-8"))
        out[name] = f"{kept}{ANNOTATION_TRUNCATED_MARKER}{cut} bytes]"
    return out


def _check_labels(index: int, labels: Mapping[str, str], limit: int) -> None:
    for name, value in labels.items():
        size = len(value.encode("utf-8"))
        if size > limit:
            raise LabelTooLargeError(index, labels.get("alertname", ""), name, size, limit)


def _component(labels: Mapping[str, str]) -> str | None:
    if labels.get("component"):
        return labels["component"]
    haystack = " ".join(labels.get(k, "") for k in ("job", "container", "pod", "alertname")).lower()
    return next((hint for hint in _COMPONENT_HINTS if hint in haystack), None)


def _with_generator_url(alert: WebhookAlert) -> dict[str, str]:
    """The alert's annotations plus its ``generatorURL`` (the rule's link, carrying its PromQL), which the
    policy classifies by; an annotation of that name the rule set itself is kept as it is."""
    annotations = dict(alert.annotations)
    if alert.generatorURL:
        annotations.setdefault(GENERATOR_URL, alert.generatorURL)
    return annotations


def webhook_to_events(
    body: WebhookBody,
    *,
    tenant: str,
    received_at: datetime,
    severity_map: Mapping[str, str] = DEFAULT_SEVERITY_MAP,
    max_label_value_bytes: int = MAX_LABEL_VALUE_BYTES,
    cluster_names: Mapping[str, str] | None = None,
) -> list[AlertEvent]:
    """One AlertEvent per alert. Raises :class:`WebhookRefusedError` (a label over the cap, no alertname)
    naming the alert; annotations over the cap are cut with a marker (:func:`capped_annotations`).
    ``cluster_names`` is the tenant's cluster id -> name map, applied as the mail parser applies it."""
    events: list[AlertEvent] = []
    for index, alert in enumerate(body.alerts):
        labels = dict(alert.labels)
        _check_labels(index, labels, max_label_value_bytes)
        name = labels.get("alertname", "")
        if not name:
            raise WebhookRefusedError(f"alert {index}: every alert needs labels.alertname")
        labels = with_cluster_name(with_workload(labels, _WORKLOAD_LABELS), cluster_names)
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
                annotations=capped_annotations(_with_generator_url(alert), max_label_value_bytes),
                metrics=AlertMetrics(times=1, first_occur=alert.startsAt),
                raw=RawRef(mail_subject=None, mail_id=None),
                source=EventSource(kind=SourceKind.ALERTMANAGER),
                received_at=received_at,
                parser="alertmanager-webhook@4",
            )
        )
    return events
