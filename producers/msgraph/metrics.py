"""The Graph producer's subscription expiry and MIME downloads as Prometheus metrics, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from producers.msgraph.ingest import GraphIngest
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


class BodiesFetchedCollector(Collector):
    """``rcaflow_msgraph_bodies_fetched_total{mailbox}``: mails whose MIME (``$value``) the process downloaded.

    The cost a throttled tenant puts on Graph and on the intake: a mail its tenant cannot take now is deferred
    before it is downloaded, so under a storm this grows with what is published, not with the rounds. Mailbox ids
    come from the configuration, so the label stays bounded.
    """

    def __init__(self, ingest: GraphIngest) -> None:
        self._ingest = ingest

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("rcaflow_msgraph_bodies_fetched", "Mails whose full MIME was downloaded from "
                                     "Graph; a mail deferred for its tenant's quota before it was needed is not "
                                     "downloaded.", labels=["mailbox"])
        for mailbox, count in sorted(self._ingest.bodies_fetched.items()):
            family.add_metric([mailbox], float(count))
        yield family
