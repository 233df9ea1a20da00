"""Alertmanager webhook bodies: the real sample, tolerated omissions, HA duplicates."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from producers.alertmanager import WebhookBody, webhook_to_events
from producers.fingerprint import alert_fingerprint

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "webhook" / "alertmanager-webhook-v4.json"


def test_sample_webhook_becomes_an_event_with_the_seed_fields() -> None:
    body = WebhookBody.model_validate(json.loads(SAMPLE.read_text()))
    (event,) = webhook_to_events(body, tenant="acme", received_at=datetime.now(UTC))
    assert event.alert == "JenkinsRestarted"
    assert event.severity == "P3"
    assert event.labels["workload"] == "amamba-jenkins-0"
    assert event.labels["component"] == "jenkins"
    assert event.fingerprint == alert_fingerprint("acme", "JenkinsRestarted", event.labels)
    assert event.metrics.first_occur is not None


def test_missing_optional_fields_are_tolerated() -> None:
    body = WebhookBody.model_validate({"alerts": [{"labels": {"alertname": "X", "pod": "p-0"}}]})
    (event,) = webhook_to_events(body, tenant="acme", received_at=datetime.now(UTC))
    assert event.labels["workload"] == "p-0"


def test_ha_duplicates_get_the_same_event_id() -> None:
    raw = json.loads(SAMPLE.read_text())
    first = webhook_to_events(WebhookBody.model_validate(raw), tenant="acme", received_at=datetime.now(UTC))
    second = webhook_to_events(WebhookBody.model_validate(raw), tenant="acme", received_at=datetime.now(UTC))
    assert first[0].event_id == second[0].event_id
