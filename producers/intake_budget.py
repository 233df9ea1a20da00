"""The intake's budget, shared fairly: when it runs short, a tenant above its fair share waits first.

Per-tenant quotas bound what each tenant may send, but their sum may exceed what the workers carry, and the
workers take records in arrival order, not by tenant: one tenant storming within its quota delays everyone.
This budget is sized by the operator below the workers' measured capacity (alerts per minute for this intake
process). While it has tokens, every tenant is admitted. When it is short, a tenant whose admitted alerts in
the last window are within its fair share (the window's budget × its weight ÷ the weights of the tenants
active in the window) is still admitted, drawing the budget into debt that the others' refill pays back; a
tenant above its share is deferred. So a storming tenant gets what the others leave, and the quiet tenants
keep their rate. The budget's burst bounds what all tenants together inject at once after a quiet spell, and
the window is as long as that burst lasts at the budget's rate.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["BudgetLimit", "IntakeBudget", "fair_share"]


@dataclass(frozen=True, slots=True)
class BudgetLimit:
    """``per_minute`` alerts on average for all tenants together, at most ``burst`` at once after a quiet spell."""

    per_minute: float
    burst: float

    def __post_init__(self) -> None:
        if self.per_minute <= 0 or self.burst < 1:
            raise ValueError(f"an intake budget needs per_minute > 0 and burst >= 1, not {self!r}")

    @property
    def rate_per_s(self) -> float:
        return self.per_minute / 60.0

    @property
    def window_s(self) -> float:
        """How far back a tenant's admitted alerts count against its share: as long as the burst lasts at the
        budget's rate (at least a second), so the shares of one window add up to the burst."""
        return max(1.0, self.burst / self.rate_per_s)


def fair_share(window_budget: float, weight: float, active_weights: float) -> float:
    """Alerts a tenant may have admitted in the window while the budget is short: its weighted part of the
    window's budget among the tenants active in the window (itself included in ``active_weights``)."""
    if weight <= 0 or active_weights < weight:
        raise ValueError(f"weight {weight} must be > 0 and within the active weights {active_weights}")
    return window_budget * weight / active_weights


@dataclass(frozen=True, slots=True)
class BudgetVerdict:
    admitted: bool
    #: Seconds until the same request could be admitted (0 when admitted).
    retry_after_s: float = 0.0


@dataclass
class _Usage:
    """A tenant's admitted alerts in the window, oldest first, and their sum."""

    entries: deque[tuple[float, int]] = field(default_factory=deque)
    total: int = 0

    def expire(self, before: float) -> None:
        while self.entries and self.entries[0][0] <= before:
            self.total -= self.entries.popleft()[1]


@dataclass
class IntakeBudget:
    """One intake process's budget; ``weights`` per tenant (a tenant not named weighs 1).

    Not thread-safe: one per process, called from its event loop (the API's routes, the Graph drain, the IMAP
    producer), like :class:`producers.quota.IngestQuota` that holds it.
    """

    limit: BudgetLimit
    weights: Mapping[str, float] = field(default_factory=dict)
    tokens: float | None = None
    at: float = 0.0
    _usage: dict[str, _Usage] = field(default_factory=dict)

    def admit(self, tenant: str, count: int, now: float) -> BudgetVerdict:
        """Take ``count`` alerts for ``tenant`` at ``now`` (monotonic seconds), or say how long to wait."""
        verdict = self.check(tenant, count, now)
        if verdict.admitted:
            self.take(tenant, count, now)
        return verdict

    def check(self, tenant: str, count: int, now: float) -> BudgetVerdict:
        """What :meth:`admit` would answer at ``now``, taking nothing (the refill and the window's expiry are
        brought up to ``now``, which :meth:`admit` would do first anyway)."""
        self._refresh(now)
        assert self.tokens is not None
        # A batch larger than the burst is admitted from a full budget (and leaves it in debt), as the quota does.
        need = min(float(count), self.limit.burst)
        used = self._usage[tenant].total if tenant in self._usage else 0
        share = self.share(tenant)
        # Within its share (or nothing admitted in the window: one batch, however large, always gets through)
        # a tenant is admitted even from an empty budget; the debt is what the tenants over their share wait for.
        if self.tokens >= need or used == 0 or used + count <= share:
            return BudgetVerdict(True)
        return BudgetVerdict(False, self._wait(tenant, count, need, share, now))

    def take(self, tenant: str, count: int, now: float) -> None:
        """Charge ``count`` alerts to the budget and the tenant's window (after :meth:`check` admitted them)."""
        self._refresh(now)
        assert self.tokens is not None
        self.tokens -= count
        usage = self._usage.setdefault(tenant, _Usage())
        usage.entries.append((now, count))
        usage.total += count

    def room(self, tenant: str, now: float) -> int:
        """How many requests of one alert each the tenant could have admitted one after the other at ``now``,
        taking nothing: an upper bound for requests of unknown size (each costs at least one alert), so an
        intake that must fetch a mail to count it fetches no more mails than could pass."""
        self._refresh(now)
        assert self.tokens is not None
        one = min(1.0, self.limit.burst)
        used = self._usage[tenant].total if tenant in self._usage else 0
        # The i-th such request (from 0) passes while tokens - i >= one, or used + i + 1 <= share, or i == used == 0:
        # each a prefix of the sequence, so the longest prefix is the largest of the three.
        by_tokens = math.floor(self.tokens - one) + 1 if self.tokens >= one else 0
        by_share = math.floor(self.share(tenant) - used)
        return max(0, by_tokens, by_share, 1 if used == 0 else 0)

    def _refresh(self, now: float) -> None:
        """Refill the tokens and expire the window up to ``now``; doing it twice for one ``now`` changes nothing."""
        limit = self.limit
        if self.tokens is None:
            self.tokens = limit.burst
        else:
            self.tokens = min(limit.burst, self.tokens + (now - self.at) * limit.rate_per_s)
        self.at = now
        for usage in self._usage.values():
            usage.expire(now - limit.window_s)

    def share(self, tenant: str) -> float:
        """The tenant's fair share of the current window, counting the tenants with alerts admitted in it."""
        active = {name for name, usage in self._usage.items() if usage.total > 0} | {tenant}
        weight = self.weights.get(tenant, 1.0)
        return fair_share(self.limit.rate_per_s * self.limit.window_s, weight,
                          sum(self.weights.get(name, 1.0) for name in active))

    def _wait(self, tenant: str, count: int, need: float, share: float, now: float) -> float:
        """Seconds until the budget has ``need`` again or enough of the tenant's window expires, whichever
        comes first (an estimate: other tenants may take the budget meanwhile); at least one second."""
        tokens = self.tokens if self.tokens is not None else self.limit.burst
        waits = [(need - tokens) / self.limit.rate_per_s]
        usage = self._usage.get(tenant, _Usage())
        left = usage.total
        for at, n in usage.entries:
            left -= n
            if left == 0 or left + count <= share:
                waits.append(at + self.limit.window_s - now)
                break
        return max(1.0, math.ceil(min(waits)))
