"""Per-tenant ingest quotas: a tenant sending a storm waits alone, and the sender is told when to come back.

One token bucket per configured tenant, counted in alerts (a webhook batch of 40 costs 40, a digest mail
its rows: ``producers.mail.alert_count``). A tenant
over its quota is not dropped: the HTTP intake answers 429 + Retry-After (Alertmanager retries it),
the mail producers leave the mail where it is (unread, checkpoint not advanced) and try again later.
Tenants without a quota, and every other tenant, are never slowed by it.

With an intake budget (``producers.intake_budget``) a tenant within its quota may still be deferred, for the
other reason: the intake is at its budget and the tenant is above its fair share of it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter

from producers.intake_budget import IntakeBudget
from schemas.tenant_label import OTHER_TENANT, TenantLabels

__all__ = ["OTHER_TENANT", "OVER_FAIR_SHARE", "QUOTA_EXCEEDED", "Admission", "IngestQuota", "QuotaLimit"]

#: Why an admission was refused: the tenant's own quota, or its fair share of a short intake budget.
QUOTA_EXCEEDED = "quota_exceeded"
OVER_FAIR_SHARE = "over_fair_share"


@dataclass(frozen=True, slots=True)
class QuotaLimit:
    """``per_minute`` alerts on average, at most ``burst`` at once after a quiet spell."""

    per_minute: float
    burst: float


class Admission(NamedTuple):
    admitted: bool
    #: Seconds until the same request would be admitted (0 when admitted).
    retry_after_s: float
    #: ``QUOTA_EXCEEDED`` or ``OVER_FAIR_SHARE`` when refused; empty when admitted.
    reason: str = ""


@dataclass
class _Bucket:
    limit: QuotaLimit
    tokens: float
    at: float


@dataclass
class IngestQuota:
    """Admits or defers a tenant's alerts; ``throttled`` counts deferrals by tenant, source and reason.

    ``budget``: the intake's budget shared by all tenants (also those without a quota); None: none.
    """

    limits: Mapping[str, QuotaLimit]
    tenants: frozenset[str]
    clock: Callable[[], float] = time.monotonic
    registry: CollectorRegistry | None = None
    budget: IntakeBudget | None = None
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    throttled: Counter | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.registry is not None:
            self.throttled = Counter(
                "rcaflow_ingest_throttled", "Alerts deferred (a mail counts the alerts it carries) because their "
                "tenant was over its ingest quota (reason quota_exceeded) or above its fair share of the intake's "
                "budget while the budget was short (over_fair_share); the sender was told to retry (429) or the mail "
                "was left for later.",
                ["tenant", "source", "reason"], registry=self.registry)

    @classmethod
    def build(cls, limits: Mapping[str, QuotaLimit], tenants: Iterable[str], *,
              registry: CollectorRegistry | None = None, clock: Callable[[], float] = time.monotonic,
              budget: IntakeBudget | None = None) -> IngestQuota:
        return cls(limits=dict(limits), tenants=frozenset(tenants), clock=clock, registry=registry, budget=budget)

    def admit(self, tenant: str, count: int, *, source: str) -> Admission:
        """Take ``count`` alerts from the tenant's bucket and the intake's budget, or say how long to wait and
        why (nothing is taken then): the tenant's quota first, then its fair share of the budget.

        A batch larger than the burst is admitted once the bucket is full and leaves it in debt, so one big
        Alertmanager group is never refused forever; the tenant's next batches wait for the debt to drain.
        """
        if count <= 0:
            return Admission(True, 0.0)
        now = self.clock()
        refusal = self._refusal(tenant, count, now)
        if refusal is not None:
            return self._refused(tenant, count, source, *refusal)
        if self.budget is not None:
            self.budget.take(tenant, count, now)
        bucket = self._buckets.get(tenant)
        if bucket is not None:
            bucket.tokens -= count
        return Admission(True, 0.0)

    def precheck(self, tenant: str, *, source: str, count: int = 1) -> Admission:
        """Whether the tenant could have a request of at least one alert admitted now, taking nothing.

        For an intake that has work to do before it knows a request's size: the IMAP producer fetches and parses
        a mail's body to count its alerts. A refusal here means :meth:`admit` would refuse any count now (a larger
        count needs at least as many tokens and as much share), so the intake defers without doing the work.
        The refusal is a deferral like :meth:`admit`'s and is counted as one alert, the least a request carries.

        ``count``: the request's size when an earlier attempt learned it (a mail downloaded, counted and deferred,
        ``producers.deferred_costs``). Then, when one alert could pass, the answer is :meth:`admit`'s for
        ``count`` (a refusal counted as ``count`` alerts, as that admit would have), so the intake does the work
        only when the request fits.
        """
        now = self.clock()
        refusal = self._refusal(tenant, 1, now)
        if refusal is not None:
            return self._refused(tenant, 1, source, *refusal)
        if count > 1:
            refusal = self._refusal(tenant, count, now)
            if refusal is not None:
                return self._refused(tenant, count, source, *refusal)
        return Admission(True, 0.0)

    def room(self, tenant: str) -> int | None:
        """At most how many requests of one alert each the tenant could have admitted one after the other now,
        taking nothing; None when nothing limits it (no quota for the tenant, no budget).

        An upper bound for requests of unknown size (each costs at least one alert): the IMAP producer fetches
        no more mail bodies at once than could pass, so a throttled tenant's round does not fetch a whole batch
        of bodies to admit one.
        """
        now = self.clock()
        bounds: list[int] = []
        limit = self.limits.get(tenant)
        if limit is not None:
            tokens = self._bucket(tenant, limit, now).tokens
            one = min(1.0, limit.burst)
            bounds.append(math.floor(tokens - one) + 1 if tokens >= one else 0)
        if self.budget is not None:
            bounds.append(self.budget.room(tenant, now))
        return min(bounds) if bounds else None

    def _bucket(self, tenant: str, limit: QuotaLimit, now: float) -> _Bucket:
        """The tenant's bucket, refilled up to ``now`` (refilling twice for one ``now`` changes nothing)."""
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = self._buckets[tenant] = _Bucket(limit, limit.burst, now)
        bucket.tokens = min(limit.burst, bucket.tokens + (now - bucket.at) * limit.per_minute / 60.0)
        bucket.at = now
        return bucket

    def _refusal(self, tenant: str, count: int, now: float) -> tuple[float, str] | None:
        """Why ``count`` alerts of the tenant may not be admitted at ``now`` (seconds to wait, reason), or None;
        takes nothing."""
        limit = self.limits.get(tenant)
        if limit is not None:
            bucket = self._bucket(tenant, limit, now)
            need = min(float(count), limit.burst)
            if bucket.tokens < need:
                rate = limit.per_minute / 60.0
                return max(1.0, math.ceil((need - bucket.tokens) / rate)), QUOTA_EXCEEDED
        if self.budget is not None:
            verdict = self.budget.check(tenant, count, now)
            if not verdict.admitted:
                return verdict.retry_after_s, OVER_FAIR_SHARE
        return None

    def _refused(self, tenant: str, count: int, source: str, retry_after_s: float, reason: str) -> Admission:
        if self.throttled is not None:
            self.throttled.labels(TenantLabels(self.tenants)(tenant), source, reason).inc(count)
        return Admission(False, retry_after_s, reason)
