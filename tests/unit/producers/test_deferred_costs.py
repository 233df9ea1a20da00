"""The mail intakes' memory of deferred mails' costs: bounded (a storm cannot grow it), a forgotten or unknown mail
costs one (one more download, nothing lost); and the quota's precheck for a remembered count answers what admitting
that count would (fake clock)."""

from __future__ import annotations

import copy

import pytest
from prometheus_client import CollectorRegistry

from producers.deferred_costs import DeferredCosts
from producers.intake_budget import BudgetLimit, IntakeBudget
from producers.quota import OVER_FAIR_SHARE, QUOTA_EXCEEDED, IngestQuota, QuotaLimit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_memory_is_bounded_and_forgets_the_oldest_first() -> None:
    costs = DeferredCosts(capacity=3)
    for n in range(1000):
        costs.remember(f"uid-{n}", 6)
    assert len(costs) == 3
    assert [costs.cost(f"uid-{n}") for n in (0, 996, 997, 998, 999)] == [1, 1, 6, 6, 6]


def test_a_mail_taken_or_costing_one_is_not_kept() -> None:
    costs = DeferredCosts(capacity=3)
    costs.remember("digest", 6)
    costs.remember("single", 1)
    assert (len(costs), costs.cost("digest"), costs.cost("single")) == (1, 6, 1)
    costs.remember("digest", 1)  # counted again (templates changed on a restart): the new count holds
    assert (len(costs), costs.cost("digest")) == (0, 1)
    costs.remember("digest", 6)
    costs.forget("digest")
    assert (len(costs), costs.cost("digest")) == (0, 1)


def throttled(registry: CollectorRegistry, reason: str) -> float:
    return registry.get_sample_value("rcaflow_ingest_throttled_total", {
        "tenant": "acme", "source": "imap", "reason": reason}) or 0.0


@pytest.mark.parametrize("history", [
    [],                                        # full buckets
    [("acme", 1)],                             # 3 left of 4: a one-alert mail passes, the digest not
    [("acme", 3), ("wait", 2.5)],              # fractional tokens
    [("acme", 6)],                             # in debt: nothing passes
    [("acme", 6), ("wait", 6.0)],              # the debt paid, a full bucket: a digest above the burst passes
    [("other", 4), ("acme", 1)],               # the budget emptied by another tenant, acme at its share
    [("acme", 1), ("other", 3), ("wait", 2.0)],
])
def test_a_precheck_for_a_remembered_count_answers_what_admitting_it_would(
        history: list[tuple[str, float]]) -> None:
    clock = Clock()
    quota = IngestQuota.build({"acme": QuotaLimit(per_minute=60, burst=4)}, ["acme", "other"], clock=clock,
                              registry=None, budget=IntakeBudget(BudgetLimit(per_minute=60, burst=6)))
    for who, n in history:
        if who == "wait":
            clock.now += n
        else:
            quota.admit(who, int(n), source="imap")
    one_passes = copy.deepcopy(quota).precheck("acme", source="imap").admitted
    for count in (1, 2, 3, 4, 6, 9):
        answer = copy.deepcopy(quota).precheck("acme", source="imap", count=count)
        admitted = copy.deepcopy(quota).admit("acme", count, source="imap")
        # Same verdict; when not even one alert could pass, the wait is the one-alert precheck's (as before).
        assert answer.admitted == admitted.admitted, count
        assert answer == admitted or not one_passes, count


def test_a_refused_precheck_counts_what_fetching_and_admitting_would_have() -> None:
    """One alert when not even a one-alert mail could pass (as before), else the remembered count (as admitting
    the downloaded digest did); nothing is taken either way."""
    clock, registry = Clock(), CollectorRegistry()
    quota = IngestQuota.build({"acme": QuotaLimit(per_minute=60, burst=4)}, ["acme"], clock=clock,
                              registry=registry)
    assert quota.admit("acme", 1, source="imap").admitted  # 3 left
    refused = quota.precheck("acme", source="imap", count=6)
    assert (refused.admitted, refused.reason, refused.retry_after_s) == (False, QUOTA_EXCEEDED, 1.0)
    assert throttled(registry, QUOTA_EXCEEDED) == 6
    assert quota.admit("acme", 3, source="imap").admitted  # the precheck took nothing: 0 left
    refused = quota.precheck("acme", source="imap", count=6)
    assert (refused.admitted, refused.retry_after_s) == (False, 1.0)  # the wait for one alert, as before
    assert throttled(registry, QUOTA_EXCEEDED) == 6 + 1
    clock.now += 4.0
    assert quota.precheck("acme", source="imap", count=6).admitted
    assert quota.admit("acme", 6, source="imap").admitted
    assert throttled(registry, OVER_FAIR_SHARE) == 0
