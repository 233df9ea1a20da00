"""`ingest.replicas`: the intake budget is what the API replicas admit together, each replica enforcing its share."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from producers.intake_budget import BudgetLimit
from producers.quota import OVER_FAIR_SHARE, IngestQuota, QuotaLimit
from streams.settings import IngestSettings, Settings, TenantIngestSettings, TenantSettings
from streams.wiring.tenants import build_ingest_quota


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _budget(settings: Settings) -> BudgetLimit:
    quota = build_ingest_quota(settings, None)
    assert quota is not None and quota.budget is not None
    return quota.budget.limit


def test_one_replica_by_default_keeps_the_whole_budget() -> None:
    assert Settings().ingest.replicas == 1
    assert _budget(Settings(ingest=IngestSettings(budget_alerts_per_minute=480))) == BudgetLimit(480, 40)


def test_each_replica_enforces_its_share_of_the_budget_and_of_the_burst(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RCAFLOW_INGEST__BUDGET_ALERTS_PER_MINUTE", "600")
    monkeypatch.setenv("RCAFLOW_INGEST__BUDGET_BURST", "60")
    monkeypatch.setenv("RCAFLOW_INGEST__REPLICAS", "3")
    limit = _budget(Settings())
    assert limit == BudgetLimit(200, 20)
    assert limit.window_s == BudgetLimit(600, 60).window_s  # the fairness window is the same on every replica


def test_the_default_burst_is_divided_too() -> None:
    # Five seconds' worth of the total (40 at 480/min), a quarter of it per replica.
    assert _budget(Settings(ingest=IngestSettings(budget_alerts_per_minute=480, replicas=4))) == BudgetLimit(120, 10)


def test_a_replica_admits_at_least_one_alert_at_once() -> None:
    assert _budget(Settings(ingest=IngestSettings(budget_alerts_per_minute=60, budget_burst=2, replicas=4))) \
        == BudgetLimit(15, 1)


@pytest.mark.parametrize("replicas", ["0", "-2", "two", "1.5"])
def test_a_replica_count_below_one_or_not_a_whole_number_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                                    replicas: str) -> None:
    monkeypatch.setenv("RCAFLOW_INGEST__REPLICAS", replicas)
    with pytest.raises(ValidationError, match="replicas"):
        Settings()


def test_the_imap_producer_keeps_the_whole_budget_whatever_the_replicas() -> None:
    settings = Settings(ingest=IngestSettings(budget_alerts_per_minute=480, replicas=4))
    quota = build_ingest_quota(settings, None, replicated=False)  # as `rcaflow ingest imap` builds it
    assert quota is not None and quota.budget is not None and quota.budget.limit == BudgetLimit(480, 40)


def test_tenant_quotas_are_not_divided() -> None:
    tenants = {"acme": TenantSettings(namespaces=["acme"], senders=["*@acme.test"],
                                      ingest=TenantIngestSettings(alerts_per_minute=600))}
    quota = build_ingest_quota(Settings(tenants=tenants, ingest=IngestSettings(replicas=3)), None)
    assert quota is not None and quota.budget is None and quota.limits == {"acme": QuotaLimit(600, 100)}


def test_three_replicas_together_admit_the_budget_once_not_three_times() -> None:
    settings = Settings(ingest=IngestSettings(budget_alerts_per_minute=720, budget_burst=60, replicas=3))
    clock = Clock()
    replicas = []
    for _ in range(3):  # what each API pod builds from the same configuration
        quota = build_ingest_quota(settings, None)
        assert quota is not None
        replicas.append(IngestQuota.build(quota.limits, ["acme"], clock=clock, budget=quota.budget))
    # One tenant alone, balanced evenly: each replica admits until it defers the tenant.
    admitted = 0
    for replica in replicas:
        while (admission := replica.admit("acme", 1, source="events-api")).admitted:
            admitted += 1
        assert admission.reason == OVER_FAIR_SHARE
    assert admitted == 60  # the configured burst, not 3 × 60
    clock.now += 10.0  # 720/min: 120 alerts' worth, 40 per replica, but at most the burst at once
    assert sum(1 for replica in replicas for _ in range(60)
               if replica.admit("acme", 1, source="events-api").admitted) == 60
