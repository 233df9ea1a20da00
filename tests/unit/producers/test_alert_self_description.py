"""What an alert says about itself reaches the policy: the rule's URL (its PromQL) by webhook and by mail,
and never an address as its workload."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from policies import load_policies
from producers.alertmanager import WebhookBody, webhook_to_events
from producers.mail import parse_mail
from producers.seed_event import SeedEvent, seed_to_event
from producers.workload import is_network_address, with_workload
from schemas.records import AlertEvent, EventSource, SourceKind

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
WEBHOOK = FIXTURES / "webhook" / "alertmanager-webhook-v4.json"
#: The same alert as the webhook, as the real Alertmanager mailed it (default template).
MAIL = FIXTURES / "mail" / "alertmanager_default" / "real-default-firing.eml"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
POLICY = load_policies()


def _webhook(alertname: str | None = None, **labels: str | None) -> AlertEvent:
    raw = json.loads(WEBHOOK.read_text())
    alert = raw["alerts"][0]
    if alertname:
        alert["labels"]["alertname"] = alertname
    for key, value in labels.items():
        if value is None:
            alert["labels"].pop(key, None)
        else:
            alert["labels"][key] = value
    (event,) = webhook_to_events(WebhookBody.model_validate(raw), tenant="acme", received_at=NOW)
    return event


def _mail(rename: bytes | None = None) -> AlertEvent:
    data = MAIL.read_bytes()
    if rename:
        data = data.replace(b"JenkinsRestarted", rename)
    (event,) = parse_mail(data, tenant="acme", received_at=NOW, source=EventSource(kind=SourceKind.FILE)).events
    return event


def test_webhook_and_mail_both_carry_the_rules_url() -> None:
    by_webhook, by_mail = _webhook(), _mail()
    assert "g0.expr=changes%28process_start_time_seconds" in by_webhook.annotations["generatorURL"]
    assert by_mail.annotations["generatorURL"] == by_webhook.annotations["generatorURL"]
    assert "generatorURL" not in by_mail.labels
    assert by_mail.fingerprint == by_webhook.fingerprint


def test_an_unlisted_name_is_classified_by_the_expression_on_both_channels() -> None:
    # changes(process_start_time_seconds{job="jenkins"}[5m]) > 0 under a name no policy lists.
    assert POLICY.classify(_webhook("ControllerBounced")) == "jenkins_restart"
    assert POLICY.classify(_mail(b"ControllerBounced")) == "jenkins_restart"


def test_an_instance_address_never_becomes_the_workload() -> None:
    event = _webhook(pod=None, service=None)  # what is left: instance 10.233.97.18:8080
    assert "workload" not in event.labels
    assert event.labels["instance"] == "10.233.97.18:8080"


@pytest.mark.parametrize("value", ["10.233.97.18:8080", "[fd00::12]:9090", "fd00::12", "10.0.0.1",
                                   "vmalert-0.vmalert.insight-system.svc:8880"])
def test_addresses_are_recognised(value: str) -> None:
    assert is_network_address(value)
    assert "workload" not in with_workload({"instance": value})
    assert with_workload({"workload": value}) == {"instance": value}


def test_names_still_name_the_workload() -> None:
    assert not is_network_address("vmalert-insight-0")
    assert with_workload({"instance": "10.0.0.1:8880", "pod": "vmalert-0"})["workload"] == "vmalert-0"
    assert with_workload({"instance": "node-exporter-abc"})["workload"] == "node-exporter-abc"


def test_a_seed_event_naming_an_address_as_its_workload_has_none() -> None:
    seed = SeedEvent(alert="RecordingRulesError", severity="P3", labels={"workload": "10.6.0.12:8880"})
    event = seed_to_event(seed, tenant="acme", received_at=NOW, request_id="r1")
    assert event.labels == {"instance": "10.6.0.12:8880"}
