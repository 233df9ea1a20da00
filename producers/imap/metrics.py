"""The IMAP producer's counters as Prometheus metrics, read at scrape time from its stats."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from producers.imap.producer import ImapProducer

_HELP = {
    "published": "Mails published to raw-mail (broker-acknowledged).",
    "duplicates": "Mails skipped because their Message-ID was already published.",
    "filtered": "Mails skipped by the sender allow-list or subject keywords.",
    "dead_lettered": "Mails kept in dead-letter (for example over the size limit).",
    "deferred": "Mails left in the folder for later because the tenant was over its ingest quota.",
    "bodies_fetched": "Mail bodies downloaded from the server; a mail deferred for its tenant's quota before its "
                      "body was needed is not downloaded.",
    "checkpoints": "Checkpoints written to ingest-checkpoints.",
    "connects": "Successful logins to the IMAP server.",
    "failures": "Connection or session failures (each followed by a backoff).",
    "waits": "IDLE commands entered or poll sleeps begun.",
}


class ImapStatsCollector(Collector):
    """``rcaflow_imap_<counter>_total{mailbox=...}``, ``rcaflow_imap_connected`` and the IDLE heartbeat
    ``rcaflow_imap_idle_last_activity_timestamp_seconds``; one collector per producer."""

    def __init__(self, producer: ImapProducer, mailbox: str) -> None:
        self._producer = producer
        self._mailbox = mailbox

    def collect(self) -> Iterator[Metric]:
        stats = self._producer.stats
        for field in dataclasses.fields(stats):
            family = CounterMetricFamily(f"rcaflow_imap_{field.name}", _HELP.get(field.name, field.name),
                                         labels=["mailbox"])
            family.add_metric([self._mailbox], float(getattr(stats, field.name)))
            yield family
        health = self._producer.health
        connected = GaugeMetricFamily("rcaflow_imap_connected", "1 while the mailbox's IMAP connection is up.",
                                      labels=["mailbox"])
        connected.add_metric([self._mailbox], 1.0 if health.connected else 0.0)
        yield connected
        activity = GaugeMetricFamily(
            "rcaflow_imap_idle_last_activity_timestamp_seconds",
            "When the IMAP server last answered (IDLE accepted, keepalive or other line during IDLE, IDLE done, "
            "NOOP, SEARCH), Unix time: a silently dead IDLE stops moving it.", labels=["mailbox"])
        if health.last_activity is not None:
            activity.add_metric([self._mailbox], health.last_activity)
        yield activity
