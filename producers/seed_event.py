"""POST /events: the seed's event JSON, validated field by field, into an AlertEvent."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from producers.cluster_names import with_cluster_name
from producers.fingerprint import alert_fingerprint, event_id
from producers.workload import with_workload
from schemas.records import AlertEvent, AlertMetrics, AlertStatus, EventSource, RawRef, SourceKind

_LABEL_MAX = 1024


class SeedMetrics(BaseModel):
    model_config = ConfigDict(extra="forbid")

    times: int = Field(default=1, ge=0)
    first_occur: datetime | None = None


class SeedRaw(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mail_subject: str | None = Field(default=None, max_length=2048)
    mail_id: str | None = Field(default=None, max_length=1024)


class SeedEvent(BaseModel):
    """Exactly the seed's JSON; unknown fields are refused so a typo is a 422, not silence."""

    model_config = ConfigDict(extra="forbid")

    alert: str = Field(min_length=1, max_length=256)
    severity: Literal["P1", "P2", "P3", "P4"]
    labels: dict[str, str] = Field(default_factory=dict)
    metrics: SeedMetrics = Field(default_factory=SeedMetrics)
    raw: SeedRaw = Field(default_factory=SeedRaw)

    @field_validator("labels")
    @classmethod
    def _bounded_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        if len(labels) > 64:
            raise ValueError("at most 64 labels")
        for key, value in labels.items():
            if not key or len(key) > 128 or len(value) > _LABEL_MAX:
                raise ValueError(f"label {key[:40]!r}: name 1-128 chars, value at most {_LABEL_MAX}")
        return labels


def seed_to_event(seed: SeedEvent, *, tenant: str, received_at: datetime, request_id: str,
                  cluster_names: Mapping[str, str] | None = None) -> AlertEvent:
    """The event for one seed JSON; ``cluster_names`` is the tenant's cluster id -> name map, as for mail."""
    # A workload that is an IP:port is no workload; the cluster is named as every channel names it.
    labels = with_cluster_name(with_workload(seed.labels, ()), cluster_names)
    fingerprint = alert_fingerprint(tenant, seed.alert, labels)
    return AlertEvent(
        tenant=tenant,
        event_id=event_id(tenant, "events-api", request_id),
        fingerprint=fingerprint,
        alert=seed.alert,
        severity=seed.severity,
        status=AlertStatus.FIRING,
        labels=labels,
        metrics=AlertMetrics(times=seed.metrics.times, first_occur=seed.metrics.first_occur),
        raw=RawRef(mail_subject=seed.raw.mail_subject, mail_id=seed.raw.mail_id),
        source=EventSource(kind=SourceKind.EVENTS_API),
        received_at=received_at,
        parser="events-api@1",
    )
