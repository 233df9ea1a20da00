"""Per-tenant ingest quotas on a fake clock: a tenant over its quota waits alone, told for how long."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from producers.quota import IngestQuota, QuotaLimit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _quota(clock: Clock, registry: CollectorRegistry | None = None) -> IngestQuota:
    return IngestQuota.build({"acme": QuotaLimit(per_minute=60, burst=3)}, ["acme", "other"], clock=clock,
                             registry=registry)


def test_a_tenant_over_its_quota_is_deferred_and_others_are_not() -> None:
    clock, registry = Clock(), CollectorRegistry()
    quota = _quota(clock, registry)
    assert [quota.admit("acme", 1, source="events-api").admitted for _ in range(3)] == [True, True, True]
    refused = quota.admit("acme", 1, source="events-api")
    assert refused.admitted is False and refused.retry_after_s == 1.0
    assert all(quota.admit("other", 1, source="events-api").admitted for _ in range(100))
    assert registry.get_sample_value("rcaflow_ingest_throttled_total",
                                     {"tenant": "acme", "source": "events-api", "reason": "quota_exceeded"}) == 1.0
    clock.now += 1.0  # 60/min refills one alert per second
    assert quota.admit("acme", 1, source="events-api").admitted


def test_a_batch_larger_than_the_burst_waits_for_a_full_bucket_then_goes_in_debt() -> None:
    clock = Clock()
    quota = _quota(clock)
    assert quota.admit("acme", 10, source="alertmanager-webhook").admitted  # full bucket: never refused forever
    after = quota.admit("acme", 1, source="alertmanager-webhook")
    assert after.admitted is False and after.retry_after_s == 8.0  # 7 alerts of debt + 1 needed, at 1/s


def test_an_unknown_tenant_is_counted_as_the_bounded_other_label() -> None:
    registry = CollectorRegistry()
    quota = IngestQuota.build({"ghost": QuotaLimit(per_minute=1, burst=1)}, ["acme"], clock=Clock(),
                              registry=registry)
    quota.admit("ghost", 1, source="imap")
    quota.admit("ghost", 1, source="imap")
    assert registry.get_sample_value("rcaflow_ingest_throttled_total",
                                     {"tenant": "_other", "source": "imap", "reason": "quota_exceeded"}) == 1.0
