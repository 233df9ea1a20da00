"""Asking the quota before the work of counting a request: ``precheck`` takes nothing and refuses only when no
count could pass now; ``room`` is how many one-alert requests could pass one after the other. The IMAP producer
asks both before fetching mail bodies (docs/tenants.md); fake clock."""

from __future__ import annotations

import copy

import pytest
from prometheus_client import CollectorRegistry

from producers.intake_budget import BudgetLimit, IntakeBudget
from producers.quota import OVER_FAIR_SHARE, QUOTA_EXCEEDED, IngestQuota, QuotaLimit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_precheck_takes_nothing() -> None:
    clock = Clock()
    quota = IngestQuota.build({"acme": QuotaLimit(per_minute=60, burst=2)}, ["acme"], clock=clock)
    assert all(quota.precheck("acme", source="imap").admitted for _ in range(5))
    assert [quota.admit("acme", 1, source="imap").admitted for _ in range(3)] == [True, True, False]


def test_a_refused_precheck_means_no_count_passes_and_counts_one_deferred_alert() -> None:
    clock, registry = Clock(), CollectorRegistry()
    quota = IngestQuota.build({"acme": QuotaLimit(per_minute=60, burst=4)}, ["acme"], clock=clock, registry=registry)
    assert quota.admit("acme", 3, source="imap").admitted
    clock.now += 0.5  # 1.5 alerts in the bucket: a one-alert mail could pass
    assert quota.precheck("acme", source="imap").admitted
    assert quota.admit("acme", 1, source="imap").admitted  # 0.5 left
    refused = quota.precheck("acme", source="imap")
    assert (refused.admitted, refused.reason, refused.retry_after_s) == (False, QUOTA_EXCEEDED, 1.0)
    assert registry.get_sample_value("rcaflow_ingest_throttled_total", {
        "tenant": "acme", "source": "imap", "reason": QUOTA_EXCEEDED}) == 1.0
    assert not any(quota.admit("acme", n, source="imap").admitted for n in range(1, 10))  # (a refusal takes nothing)


def test_from_a_full_bucket_a_digest_above_the_burst_still_passes() -> None:
    quota = IngestQuota.build({"acme": QuotaLimit(per_minute=60, burst=4)}, ["acme"], clock=Clock())
    assert quota.precheck("acme", source="imap").admitted and quota.room("acme") == 4
    assert quota.admit("acme", 6, source="imap").admitted
    assert not quota.precheck("acme", source="imap").admitted and quota.room("acme") == 0


def test_a_tenant_above_its_fair_share_is_refused_by_the_precheck_too() -> None:
    clock = Clock()
    quota = IngestQuota.build({}, ["noisy", "quiet"], clock=clock,
                              budget=IntakeBudget(BudgetLimit(per_minute=60, burst=4)))
    assert all(quota.admit("noisy", 1, source="imap").admitted for _ in range(4))  # the budget is empty
    refused = quota.precheck("noisy", source="imap")
    assert (refused.admitted, refused.reason) == (False, OVER_FAIR_SHARE)
    assert quota.precheck("quiet", source="imap").admitted  # within its share of the window


def _admitted_in_a_row(quota: IngestQuota, tenant: str) -> int:
    """One-alert requests admitted one after the other on a copy of ``quota``, until the first refusal."""
    probe = copy.deepcopy(quota)
    n = 0
    while n < 1000 and probe.admit(tenant, 1, source="imap").admitted:
        n += 1
    return n


@pytest.mark.parametrize("history", [
    [],                                       # full buckets
    [("acme", 1)],
    [("acme", 3), ("wait", 0.4)],             # fractional tokens
    [("acme", 6)],                            # a digest above the burst: in debt
    [("other", 4)],                           # the budget emptied by another tenant: acme within its share
    [("other", 4), ("acme", 1)],
    [("acme", 2), ("other", 2), ("wait", 1.5)],
    [("other", 4), ("wait", 5.0), ("acme", 2)],  # the window expired
])
def test_room_is_the_number_of_one_alert_requests_that_would_pass_in_a_row(
        history: list[tuple[str, float]]) -> None:
    clock = Clock()
    quota = IngestQuota.build({"acme": QuotaLimit(per_minute=60, burst=3)}, ["acme", "other"], clock=clock,
                              budget=IntakeBudget(BudgetLimit(per_minute=60, burst=4)))
    for what, amount in history:
        if what == "wait":
            clock.now += amount
        else:
            quota.admit(what, int(amount), source="imap")
    room = quota.room("acme")
    assert room == _admitted_in_a_row(quota, "acme")
    assert quota.precheck("acme", source="imap").admitted == (room is not None and room > 0)


def test_no_quota_and_no_budget_leaves_the_room_unbounded() -> None:
    quota = IngestQuota.build({"acme": QuotaLimit(per_minute=60, burst=3)}, ["acme", "other"], clock=Clock())
    assert quota.room("other") is None and quota.room("acme") == 3
