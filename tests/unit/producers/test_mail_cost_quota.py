"""A digest mail larger than the tenant's whole burst (and the intake budget's) is admitted from a full bucket
and leaves it in debt, so a big digest is never deferred forever; the tenant's next mail waits for the debt."""

from __future__ import annotations

from pathlib import Path

from producers.intake_budget import BudgetLimit, IntakeBudget
from producers.mail.alert_count import MailCost
from producers.quota import QUOTA_EXCEEDED, IngestQuota, QuotaLimit

DIGEST = (Path(__file__).resolve().parents[2] / "fixtures" / "mail" / "dce5_control_cluster_details"
          / "rowspan-cluster-digest.eml")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_digest_above_the_burst_gets_in_from_a_full_bucket_and_the_next_mail_waits_for_its_debt() -> None:
    cost = MailCost()(DIGEST.read_bytes())
    assert cost == 6
    clock = Clock()
    quota = IngestQuota.build({"acme": QuotaLimit(per_minute=60, burst=4)}, ["acme"], clock=clock,
                              budget=IntakeBudget(BudgetLimit(per_minute=60, burst=4)))
    assert quota.admit("acme", cost, source="imap").admitted
    refused = quota.admit("acme", 1, source="imap")
    assert (refused.admitted, refused.retry_after_s, refused.reason) == (False, 3.0, QUOTA_EXCEEDED)
    clock.now += 3.0
    assert quota.admit("acme", 1, source="imap").admitted


def test_a_digest_waits_while_the_bucket_is_not_full_then_gets_in() -> None:
    cost = MailCost()(DIGEST.read_bytes())
    clock = Clock()
    quota = IngestQuota.build({"acme": QuotaLimit(per_minute=60, burst=4)}, ["acme"], clock=clock)
    assert quota.admit("acme", 1, source="imap").admitted
    refused = quota.admit("acme", cost, source="imap")
    assert (refused.admitted, refused.retry_after_s) == (False, 1.0)  # until the bucket is full again
    clock.now += 1.0
    assert quota.admit("acme", cost, source="imap").admitted
