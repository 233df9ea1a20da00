"""Analytics: per tenant and alert class, incidents, MTTA, MTTR, LLM latency and tokens, action adoption and
rollback rates, and the noisiest alerts.

Two readers. ``class_stats``/``KbStatsCollector`` aggregate the knowledge base's documents on the fly
(``rcaflow kb stats`` and ``rcaflow kb run``'s metrics port). ``AnalyticsCollector`` exports the daily
documents the analytics consumer keeps (``rcaflow kb analytics``, streams/kb/analytics_store.py),
which ``rcaflow stats`` also reads. MTTA is alert → first response (the policy's diagnosis, which the
first message posts); MTTR is alert → resolved.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from elasticsearch import Elasticsearch
from elasticsearch import TransportError as EsTransportError
from elasticsearch.exceptions import ApiError
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, ConfigDict

from streams.kb import document as kbdoc

logger = logging.getLogger(__name__)

COUNTS = ("proposed", "approved", "ran", "succeeded", "rolled_back")


class ClassStats(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant: str
    alert_class: str
    incidents: int
    resolved: int
    mtta_s: float | None
    mttr_s: float | None
    llm_latency_ms: float | None
    llm_tokens: int
    actions: dict[str, int]
    top_alerts: list[tuple[str, int]]

    @property
    def adoption_rate(self) -> float | None:
        """Proposed actions that ran and succeeded (the seed's 动作采纳率)."""
        return self.actions["succeeded"] / self.actions["proposed"] if self.actions["proposed"] else None

    @property
    def rollback_rate(self) -> float | None:
        return self.actions["rolled_back"] / self.actions["ran"] if self.actions["ran"] else None


def class_stats(client: Elasticsearch, prefix: str, *, tenant: str | None = None,
                since: datetime | None = None) -> list[ClassStats]:
    """One row per (tenant, class) of incidents opened since ``since``; one tenant's indices only when given."""
    index = kbdoc.tenant_pattern(prefix, tenant) if tenant else f"{prefix}-*"
    filters: list[dict[str, Any]] = [{"term": {"kind": kbdoc.KIND_INCIDENT}}]
    if tenant:
        filters.append({"term": {"tenant": tenant}})
    if since is not None:
        filters.append({"range": {"opened_at": {"gte": since.isoformat()}}})
    per_class: dict[str, Any] = {
        "resolved": {"filter": {"term": {"status": "resolved"}}},
        "mtta": {"avg": {"field": "timings.to_diagnosis_s"}},
        "mttr": {"avg": {"field": "timings.to_resolve_s"}},
        "llm_latency": {"avg": {"field": "timings.llm_latency_ms"}},
        "llm_tokens": {"sum": {"field": "llm_tokens"}},
        "top_alerts": {"terms": {"field": "alert.raw", "size": 5, "order": {"events": "desc"}},
                       "aggs": {"events": {"sum": {"field": "count"}}}},
        **{name: {"sum": {"field": f"action_counts.{name}"}} for name in COUNTS},
    }
    answer = client.search(index=index, ignore_unavailable=True, allow_no_indices=True, size=0,
                           query={"bool": {"filter": filters}},
                           aggs={"tenants": {"terms": {"field": "tenant", "size": 1000}, "aggs": {
                               "classes": {"terms": {"field": "alert_class", "size": 200}, "aggs": per_class}}}})
    rows = []
    for t in answer["aggregations"]["tenants"]["buckets"]:
        for c in t["classes"]["buckets"]:
            rows.append(ClassStats(
                tenant=t["key"], alert_class=c["key"], incidents=c["doc_count"], resolved=c["resolved"]["doc_count"],
                mtta_s=c["mtta"]["value"], mttr_s=c["mttr"]["value"], llm_latency_ms=c["llm_latency"]["value"],
                llm_tokens=int(c["llm_tokens"]["value"] or 0),
                actions={name: int(c[name]["value"] or 0) for name in COUNTS},
                top_alerts=[(b["key"], int(b["events"]["value"])) for b in c["top_alerts"]["buckets"]]))
    return rows


class KbStatsCollector:
    """Prometheus collector for ``rcaflow kb run``'s metrics port: the stats, read from the KB on each scrape."""

    def __init__(self, client: Elasticsearch, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["tenant", "alert_class"]
        families = {
            "incidents": GaugeMetricFamily("rcaflow_kb_incidents", "Incidents in the knowledge base", labels=labels),
            "mtta": GaugeMetricFamily("rcaflow_kb_mtta_seconds", "Mean time from alert to diagnosis", labels=labels),
            "mttr": GaugeMetricFamily("rcaflow_kb_mttr_seconds", "Mean time from alert to resolved", labels=labels),
            "adoption": GaugeMetricFamily("rcaflow_kb_action_adoption_ratio",
                                          "Proposed actions that ran and succeeded", labels=labels),
            "rollback": GaugeMetricFamily("rcaflow_kb_action_rollback_ratio", "Actions that ran and were rolled back",
                                          labels=labels),
        }
        try:
            rows = class_stats(self._client, self._prefix)
        except (ApiError, EsTransportError) as exc:  # a scrape must not fail because the KB is away
            logger.warning("knowledge base stats unavailable: %s", exc)
            rows = []
        for row in rows:
            key = [row.tenant, row.alert_class]
            families["incidents"].add_metric(key, row.incidents)
            for name, value in (("mtta", row.mtta_s), ("mttr", row.mttr_s), ("adoption", row.adoption_rate),
                                ("rollback", row.rollback_rate)):
                if value is not None:
                    families[name].add_metric(key, value)
        yield from families.values()


#: Series the analytics collector exports at most per metric: tenants × classes are bounded by the configured
#: tenants and the policy's classes, and this caps them should a label ever not be.
MAX_SERIES = 2000
_LABEL = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class AnalyticsCollector:
    """``rcaflow kb analytics``'s metrics: the daily documents of the last ``window`` merged per tenant and class.

    Labels are only ``tenant`` and ``alert_class`` (never an alert name: top noisy alerts stay in the
    documents and ``rcaflow stats``), both checked against a plain-name pattern, and at most MAX_SERIES rows.
    """

    def __init__(self, client: Elasticsearch, prefix: str, window: timedelta = timedelta(days=7),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._client = client
        self._prefix = prefix
        self._window = window
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from streams.kb.analytics_store import read_daily
        from streams.kb.daily import merge
        from streams.kb.store import KbError

        labels = ["tenant", "alert_class"]
        days = f" over the last {self._window.days} days"
        fams = {
            "incidents": GaugeMetricFamily("rcaflow_analytics_incidents", "Incidents opened" + days, labels=labels),
            "mtta": GaugeMetricFamily("rcaflow_analytics_mtta_seconds", "Mean alert to first response" + days,
                                      labels=labels),
            "mttr": GaugeMetricFamily("rcaflow_analytics_mttr_seconds", "Mean alert to resolved" + days,
                                      labels=labels),
            "llm_latency": GaugeMetricFamily("rcaflow_analytics_llm_latency_seconds", "Mean LLM answer latency" + days,
                                             labels=labels),
            "llm_tokens": GaugeMetricFamily("rcaflow_analytics_llm_tokens", "LLM tokens spent" + days, labels=labels),
            "adoption": GaugeMetricFamily("rcaflow_analytics_action_adoption_ratio",
                                          "Proposed actions that succeeded" + days, labels=labels),
            "rollback": GaugeMetricFamily("rcaflow_analytics_action_rollback_ratio",
                                          "Actions that ran and were rolled back" + days, labels=labels),
        }
        try:
            docs = read_daily(self._client, self._prefix, since=self._clock() - self._window)
        except KbError as exc:  # a scrape must not fail because Elasticsearch is away
            logger.warning("analytics unavailable: %s", exc)
            docs = []
        by_tenant: dict[str, list[dict[str, Any]]] = {}
        for doc in docs:
            if _LABEL.fullmatch(str(doc["tenant"])) and _LABEL.fullmatch(str(doc["alert_class"])):
                by_tenant.setdefault(str(doc["tenant"]), []).append(doc)
        rows = [(tenant, totals) for tenant, group in sorted(by_tenant.items())
                for name, totals in merge(group).items() if name != "*"][:MAX_SERIES]
        for tenant, t in rows:
            key = [tenant, t.alert_class]
            fams["incidents"].add_metric(key, t.incidents)
            fams["llm_tokens"].add_metric(key, t.llm_tokens)
            latency = None if t.llm_latency_ms is None else t.llm_latency_ms / 1000
            for name, value in (("mtta", t.mtta_s), ("mttr", t.mttr_s), ("llm_latency", latency),
                                ("adoption", t.adoption_rate), ("rollback", t.rollback_rate)):
                if value is not None:
                    fams[name].add_metric(key, value)
        yield from fams.values()
