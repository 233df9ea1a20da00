"""The intake budget and the quotas as the processes build them from the settings (defaults included)."""

from __future__ import annotations

import pytest

from producers.intake_budget import BudgetLimit
from producers.quota import QuotaLimit
from streams.settings import IngestSettings, Settings, TenantIngestSettings, TenantSettings
from streams.wiring.tenants import build_ingest_quota


def _tenant(name: str, ingest: TenantIngestSettings) -> TenantSettings:
    return TenantSettings(namespaces=[name], senders=[f"*@{name}.test"], ingest=ingest)


def test_nothing_configured_builds_nothing() -> None:
    assert build_ingest_quota(Settings(), None) is None


def test_a_budget_alone_is_shared_by_every_tenant_with_the_configured_weights() -> None:
    settings = Settings(ingest=IngestSettings(budget_alerts_per_minute=480),
                        tenants={"acme": _tenant("acme", TenantIngestSettings(weight=2)),
                                 "other": _tenant("other", TenantIngestSettings())})
    quota = build_ingest_quota(settings, None)
    assert quota is not None and quota.limits == {} and quota.budget is not None
    assert quota.budget.limit == BudgetLimit(per_minute=480, burst=40)  # burst: five seconds' worth
    assert quota.budget.weights == {"acme": 2.0, "other": 1.0}


def test_a_quota_bursts_ten_seconds_worth_unless_told_otherwise() -> None:
    settings = Settings(tenants={
        "acme": _tenant("acme", TenantIngestSettings(alerts_per_minute=600)),
        "slow": _tenant("slow", TenantIngestSettings(alerts_per_minute=3)),
        "own": _tenant("own", TenantIngestSettings(alerts_per_minute=600, burst=1200)),
    }, ingest=IngestSettings(budget_alerts_per_minute=600, budget_burst=300))
    quota = build_ingest_quota(settings, None)
    assert quota is not None and quota.budget is not None
    assert quota.limits == {"acme": QuotaLimit(600, 100), "slow": QuotaLimit(3, 1), "own": QuotaLimit(600, 1200)}
    assert quota.budget.limit == BudgetLimit(per_minute=600, burst=300)


def test_the_budget_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RCAFLOW_INGEST__BUDGET_ALERTS_PER_MINUTE", "720")
    monkeypatch.setenv("RCAFLOW_TENANTS__DEFAULT__INGEST__WEIGHT", "3")
    quota = build_ingest_quota(Settings(), None)
    assert quota is not None and quota.budget is not None
    assert quota.budget.limit == BudgetLimit(per_minute=720, burst=60) and quota.budget.weights == {"default": 3.0}
