"""The Graph producer's subscription expiry as a Prometheus gauge, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from producers.msgraph.subscriptions import SubscriptionManager


class SubscriptionExpiryCollector(Collector):
    """``rcaflow_msgraph_subscription_expiry_timestamp_seconds{mailbox}``: when each mailbox's subscription ends.

    Graph stops notifying at that moment; an expiry that draws near means renewal is failing. Mailbox ids
    come from the configuration, so the label stays bounded.
    """

    def __init__(self, subscriptions: SubscriptionManager) -> None:
        self._subscriptions = subscriptions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("rcaflow_msgraph_subscription_expiry_timestamp_seconds",
                                   "When the mailbox's Graph change subscription expires (Unix time), as last "
                                   "confirmed by Graph.", labels=["mailbox"])
        for mailbox, expiry in sorted(dict(self._subscriptions.expiries).items()):
            family.add_metric([mailbox], expiry.timestamp())
        yield family
