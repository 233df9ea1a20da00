"""What the mail intakes learned by downloading a mail they then had to defer: its cost, so they need not download it
again before their tenant can take it.

A mail's cost (its alerts, ``producers.mail.alert_count``) is known only from its body. A digest its tenant could
take one alert of but not all of is downloaded, counted and deferred; remembering its count lets the next rounds ask
the quota for that count before downloading it (``IngestQuota.precheck(count=...)``), so it is downloaded once more,
when it fits, instead of once per round. Held in memory only, bounded: a restart or an evicted entry forgets a cost,
which costs one more download of that mail and nothing else (the mail is deferred or taken exactly as before).
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["DEFERRED_COSTS_CAPACITY", "DeferredCosts"]

#: Per mailbox. A throttled tenant defers one mail per round (the rest wait behind it unread), so a few thousand
#: outlive any realistic backlog of digests while bounding memory in a storm (a key and an int each).
DEFERRED_COSTS_CAPACITY = 4096


class DeferredCosts:
    """Mail identity -> the alerts it carries, for mails downloaded and deferred; forgets the oldest first.

    Not thread-safe: one per mailbox, used from its producer's event loop.
    """

    def __init__(self, capacity: int = DEFERRED_COSTS_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._costs: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._costs)

    def cost(self, key: str) -> int:
        """The remembered cost of the mail, or 1 (the least a mail costs) when it was never counted or forgotten."""
        return self._costs.get(key, 1)

    def remember(self, key: str, cost: int) -> None:
        """Note a deferred mail's cost (a cost of 1 is what :meth:`cost` answers anyway: not stored)."""
        self._costs.pop(key, None)
        if cost <= 1:
            return
        self._costs[key] = cost
        while len(self._costs) > self._capacity:
            self._costs.popitem(last=False)

    def forget(self, key: str) -> None:
        """The mail was taken (or will never be asked about again)."""
        self._costs.pop(key, None)
