"""The analytics consumer's Elasticsearch side: per-incident facts, and daily documents rolled up from them.

Why its own facts and not the knowledge base's documents: the analytics consumer is a consumer
group of its own, and reading another group's output would make its numbers depend on which of the
two got further (a daily document computed before the KB caught up would be short). So it folds the
same four topics into its own copy of the incident documents (the KB's fold, ``<prefix>-facts-…``)
and, after every batch, recomputes the daily documents of the (tenant, day, class) the batch
touched from them. Both writes are idempotent, so a batch read again after a failure, or a replay
into fresh indices, gives the same documents.

Daily documents live in one index per tenant (``<prefix>-daily-<tenant>``) with the tenant in
every document and the alias ``<prefix>-daily`` over all of them; their id is ``tenant:day:class``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from elasticsearch import Elasticsearch, helpers
from elasticsearch import TransportError as EsTransportError
from elasticsearch.exceptions import ApiError

from schemas.records import ActionEvent, Incident, RcaResult, Record
from streams.kb import daily
from streams.kb import document as kbdoc
from streams.kb.store import ApplyReport, KbError, KbStore

logger = logging.getLogger(__name__)

DAILY_MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "tenant": {"type": "keyword"},
        "day": {"type": "date", "format": "strict_date"},
        "alert_class": {"type": "keyword"},
        "incidents": {"type": "integer"},
        "resolved": {"type": "integer"},
        "alerts": {"type": "integer"},
        "adoption_rate": {"type": "float"},
        "rollback_rate": {"type": "float"},
    },
}


def daily_alias(prefix: str) -> str:
    return f"{prefix}-daily"


def daily_index(prefix: str, tenant: str) -> str:
    return f"{prefix}-daily-{kbdoc.tenant_slug(tenant)}"


class AnalyticsStore:
    """``apply`` (for KbConsumer): fold the batch into the facts, then rewrite the daily documents it touched."""

    def __init__(self, client: Elasticsearch, *, prefix: str = "rcaflow-analytics", replicas: int = 1) -> None:
        self.client = client
        self.prefix = prefix
        self.replicas = replicas
        self.facts = KbStore(client, prefix=f"{prefix}-facts", replicas=replicas)

    def install_template(self) -> None:
        """Idempotent: the facts' template (the KB's) and the daily documents' template with the alias."""
        self.facts.install_template()
        body: dict[str, Any] = {"index_patterns": [f"{self.prefix}-daily-*"], "priority": 100,
                "_meta": {"description": "rcaflow analytics: one document per tenant, UTC day and alert class",
                          "managed_by": "rcaflow kb analytics"},
                "template": {"settings": {"number_of_shards": 1, "number_of_replicas": self.replicas},
                             "mappings": DAILY_MAPPING, "aliases": {daily_alias(self.prefix): {}}}}
        try:
            self.client.indices.put_index_template(name=f"{self.prefix}-daily", **body)
        except (ApiError, EsTransportError) as exc:
            raise KbError(f"cannot install the index template {self.prefix}-daily: {exc}") from exc

    def apply(self, records: Iterable[Record]) -> ApplyReport:
        batch = list(records)
        report = self.facts.apply(batch)
        touched = {(r.tenant, r.incident_id) for r in batch if isinstance(r, Incident | RcaResult | ActionEvent)}
        keys = self._daily_keys(touched)
        if keys:
            self._write_daily(keys, report)
        return report

    def _daily_keys(self, touched: set[tuple[str, str]]) -> set[tuple[str, str, str]]:
        """(tenant, day, class) of the incidents the batch touched, from their facts (an action seen before
        its incident has no ``opened_at`` yet: its day is rolled up when the incident comes)."""
        by_tenant: dict[str, list[str]] = defaultdict(list)
        for tenant, incident_id in touched:
            by_tenant[tenant].append(incident_id)
        keys: set[tuple[str, str, str]] = set()
        for tenant, ids in by_tenant.items():
            for doc in self._search_facts(tenant, [{"ids": {"values": sorted(ids)}}]):
                if doc.get("opened_at") and doc.get("alert_class"):
                    keys.add((tenant, daily.day_of(str(doc["opened_at"])), str(doc["alert_class"])))
        return keys

    def _search_facts(self, tenant: str, filters: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        query = {"bool": {"filter": [*filters, {"term": {"tenant": tenant}},
                                     {"term": {"kind": kbdoc.KIND_INCIDENT}}]}}
        try:
            for hit in helpers.scan(self.client, index=kbdoc.tenant_pattern(self.facts.prefix, tenant),
                                    ignore_unavailable=True, allow_no_indices=True, query={"query": query}):
                yield hit["_source"]
        except (ApiError, EsTransportError) as exc:
            raise KbError(f"analytics: reading the facts of {tenant} failed: {exc}") from exc

    def _write_daily(self, keys: set[tuple[str, str, str]], report: ApplyReport) -> None:
        actions = []
        for tenant, day, alert_class in sorted(keys):
            start, end = daily.day_range(day)
            facts = self._search_facts(tenant, [{"term": {"alert_class": alert_class}},
                                                {"range": {"opened_at": {"gte": start, "lt": end}}}])
            body = daily.rollup(tenant, day, alert_class, facts)
            actions.append({"_op_type": "index", "_index": daily_index(self.prefix, tenant),
                            "_id": daily.doc_id(tenant, day, alert_class), "_source": body})
        try:
            for ok, item in helpers.streaming_bulk(self.client, actions, raise_on_error=False,
                                                   raise_on_exception=True, max_retries=3, initial_backoff=1,
                                                   refresh=True):
                op = next(iter(item.values()))
                if ok:
                    report.written += 1
                elif op.get("status", 500) >= 500 or op.get("status") == 429:
                    raise KbError(f"elasticsearch refused {op.get('_id')}: {op.get('status')}", index=op.get("_index"))
                else:
                    logger.error("analytics: daily document %s refused for good: %s", op.get("_id"), op.get("error"))
                    report.rejected.append(str(op.get("_id")))
        except (ApiError, EsTransportError, helpers.BulkIndexError) as exc:
            raise KbError(f"analytics: daily documents not written: {exc}") from exc

    # ------------------------------------------------------------------ reads
    def daily_documents(self, *, tenant: str | None = None, since: datetime | None = None) -> list[dict[str, Any]]:
        return read_daily(self.client, self.prefix, tenant=tenant, since=since)


def read_daily(client: Elasticsearch, prefix: str, *, tenant: str | None = None,
               since: datetime | None = None) -> list[dict[str, Any]]:
    """The daily documents (one tenant's index only when given), oldest day first.

    Raises KbError when the alias does not exist (the analytics consumer never ran) or ES is away,
    so a caller can fall back to another source and say so.
    """
    index = daily_index(prefix, tenant) if tenant else daily_alias(prefix)
    filters: list[dict[str, Any]] = []
    if tenant:
        filters.append({"term": {"tenant": tenant}})
    if since is not None:
        filters.append({"range": {"day": {"gte": since.date().isoformat()}}})
    try:
        if not client.indices.exists_alias(name=daily_alias(prefix)):
            raise KbError(f"no analytics documents: the alias {daily_alias(prefix)} does not exist", retriable=False)
        hits = [hit["_source"] for hit in helpers.scan(client, index=index, ignore_unavailable=True,
                                                        query={"query": {"bool": {"filter": filters}}})]
    except (ApiError, EsTransportError) as exc:
        raise KbError(f"analytics documents unavailable: {exc}") from exc
    return sorted(hits, key=lambda d: (str(d["day"]), str(d["tenant"]), str(d["alert_class"])))
