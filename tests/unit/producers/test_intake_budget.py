"""The intake budget's fair shares on a fake clock: when the budget is short, the tenant above its share waits."""

from __future__ import annotations

from collections import Counter

import pytest
from prometheus_client import CollectorRegistry

from producers.intake_budget import BudgetLimit, IntakeBudget, fair_share
from producers.quota import OVER_FAIR_SHARE, QUOTA_EXCEEDED, IngestQuota, QuotaLimit

#: 8 alerts/s for all tenants, 40 at once: a fairness window of 5 s.
LIMIT = BudgetLimit(per_minute=480, burst=40)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(budget: IntakeBudget, senders: dict[str, float], seconds: float) -> tuple[Counter[str], Counter[str]]:
    """Each tenant posts one alert at a steady rate (alerts/s), interleaved in time; admitted and refused."""
    posts = sorted((n / rate, tenant) for tenant, rate in senders.items() for n in range(int(seconds * rate)))
    admitted: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    for now, tenant in posts:
        (admitted if budget.admit(tenant, 1, now).admitted else refused)[tenant] += 1
    return admitted, refused


def test_the_fair_share_is_the_weighted_part_of_the_window_budget_among_the_active_tenants() -> None:
    assert fair_share(40, 1, 3) == pytest.approx(40 / 3)
    assert fair_share(40, 2, 4) == 20  # weight 2 among 2 + 1 + 1
    assert fair_share(40, 1, 1) == 40  # alone: the whole window
    with pytest.raises(ValueError, match="weight"):
        fair_share(40, 2, 1)  # the tenant's own weight is always among the active ones
    with pytest.raises(ValueError, match="weight"):
        fair_share(40, 0, 1)


def test_the_window_lasts_as_long_as_the_burst_at_the_budget_rate() -> None:
    assert LIMIT.rate_per_s == 8 and LIMIT.window_s == 5
    assert BudgetLimit(per_minute=6000, burst=10).window_s == 1.0  # never shorter than a second
    with pytest.raises(ValueError, match="budget"):
        BudgetLimit(per_minute=0, burst=10)


def test_with_budget_left_every_tenant_is_admitted_up_to_the_burst_at_once() -> None:
    budget = IntakeBudget(LIMIT)
    # A tenant storming after a quiet spell gets the burst, not more: the budget bounds what goes in at once.
    assert [budget.admit("noisy", 1, 0.0).admitted for _ in range(41)] == [True] * 40 + [False]
    # Ten quiet minutes later: the burst again, not ten minutes' worth.
    assert [budget.admit("noisy", 1, 600.0).admitted for _ in range(41)] == [True] * 40 + [False]


def test_when_the_budget_is_short_the_tenant_above_its_share_waits_and_the_others_are_admitted() -> None:
    budget = IntakeBudget(LIMIT)
    for _ in range(40):
        assert budget.admit("noisy", 1, 0.0).admitted  # the storm empties the budget
    refused = budget.admit("noisy", 1, 0.1)
    assert not refused.admitted and 1 <= refused.retry_after_s <= LIMIT.window_s
    # Empty budget, but quiet1 and quiet2 are within their share (40 / 3 in the window): admitted, into debt.
    assert all(budget.admit("quiet1", 1, 0.2).admitted for _ in range(13))
    assert all(budget.admit("quiet2", 1, 0.2).admitted for _ in range(13))
    assert budget.tokens is not None and budget.tokens < 0
    assert not budget.admit("quiet1", 1, 0.3).admitted  # the 14th is above its share too
    assert not budget.admit("noisy", 1, 1.0).admitted  # the debt is paid by the storm, not by the quiet


def test_a_storm_over_a_minute_gets_what_the_quiet_tenants_leave_and_the_total_stays_within_the_budget() -> None:
    budget = IntakeBudget(LIMIT)
    admitted, refused = _run(budget, {"noisy": 100.0, "quiet1": 2.0, "quiet2": 2.0}, seconds=60)
    assert admitted["quiet1"] == admitted["quiet2"] == 120 and not refused["quiet1"] and not refused["quiet2"]
    # The budget (480 a minute) plus its burst, nothing more; the storm takes the rest of it (work conserving).
    assert sum(admitted.values()) <= 480 + 40
    assert admitted["noisy"] >= 480 - 240 and refused["noisy"] == 6000 - admitted["noisy"]


def test_weights_give_each_storming_tenant_at_least_its_weighted_part_of_a_short_budget() -> None:
    # "light" asks first whenever both post at once, so the weighted tenant cannot win by the order of requests.
    budget = IntakeBudget(BudgetLimit(per_minute=540, burst=45), weights={"weighty": 2.0})
    admitted, _ = _run(budget, {"light": 100.0, "weighty": 100.0}, seconds=60)
    assert sum(admitted.values()) <= 540 + 45
    assert admitted["weighty"] >= 0.95 * 540 * 2 / 3, admitted
    assert admitted["light"] >= 0.95 * 540 / 3, admitted


def test_a_batch_larger_than_the_share_gets_through_once_the_tenant_has_nothing_in_the_window() -> None:
    budget = IntakeBudget(LIMIT)
    for now in (0.0, 0.0, 0.1):
        budget.admit("noisy", 20, now)  # budget empty, noisy active
    assert budget.admit("hook", 30, 0.2).admitted  # above any share, but the first batch of the window
    assert not budget.admit("hook", 1, 0.3).admitted  # then it waits like anyone above its share
    later = budget.admit("hook", 30, 0.2 + LIMIT.window_s + 0.1)  # its window empty again
    assert later.admitted


def test_the_quota_refuses_first_and_a_budget_refusal_takes_nothing_from_the_tenant_quota() -> None:
    clock, registry = Clock(), CollectorRegistry()
    # acme: 3 alerts, then one a minute (no refill to speak of in this test).
    quota = IngestQuota.build({"acme": QuotaLimit(per_minute=1, burst=3)}, ["acme", "noisy"], clock=clock,
                              registry=registry, budget=IntakeBudget(BudgetLimit(per_minute=60, burst=4)))
    assert all(quota.admit("noisy", 1, source="events-api").admitted for _ in range(4))
    assert all(quota.admit("acme", 1, source="events-api").admitted for _ in range(2))  # its share: 2 of 4
    refused = quota.admit("acme", 1, source="events-api")
    assert refused == (False, refused.retry_after_s, OVER_FAIR_SHARE) and refused.retry_after_s >= 1
    # acme's quota still holds the token the refused alert did not take: once its share allows, it goes in.
    clock.now += 4.5  # the window (4 s) over, the budget refilled
    assert quota.admit("acme", 1, source="events-api").admitted
    over = quota.admit("acme", 5, source="events-api")  # more than its quota holds: the quota answers first
    assert over.reason == QUOTA_EXCEEDED
    sample = registry.get_sample_value
    assert sample("rcaflow_ingest_throttled_total",
                  {"tenant": "acme", "source": "events-api", "reason": OVER_FAIR_SHARE}) == 1.0
    assert sample("rcaflow_ingest_throttled_total",
                  {"tenant": "acme", "source": "events-api", "reason": QUOTA_EXCEEDED}) == 5.0
