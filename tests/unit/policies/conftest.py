"""Fixtures for the policy layer: the shipped policy file and realistic alert events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from policies import PolicySet, load_policies
from producers.fingerprint import alert_fingerprint, event_id
from schemas.records import AlertEvent, AlertMetrics, AlertStatus
from tests.unit.policies.policy_samples import NOW

EventFactory = Callable[..., AlertEvent]


@pytest.fixture(scope="session")
def policies() -> PolicySet:
    return load_policies()


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def make_event(policies: PolicySet) -> EventFactory:
    """An AlertEvent as the normalizer would publish it: fingerprint, id, class all filled in."""

    def make(
        alert: str,
        labels: dict[str, str],
        *,
        tenant: str = "acme",
        severity: str = "warning",
        status: AlertStatus = AlertStatus.FIRING,
        times: int = 1,
        message_id: str = "<m1@example.test>",
        index: int = 0,
        classify: bool = True,
    ) -> AlertEvent:
        event = AlertEvent(
            tenant=tenant,
            event_id=event_id(tenant, message_id, index),
            fingerprint=alert_fingerprint(tenant, alert, labels),
            alert=alert,
            severity=severity,
            status=status,
            labels=labels,
            metrics=AlertMetrics(times=times),
            received_at=NOW,
            parser="test",
        )
        if classify:
            event = event.model_copy(update={"alert_class": policies.classify(event)})
        return event

    return make
