"""Similar past incidents of one tenant: BM25 over alert, labels and diagnosis, plus what fixed them last.

Tenant isolation is two locks: the search only names the tenant's own indices
(``<prefix>-<tenant>.*``, which no other tenant's pattern matches) and filters on the ``tenant``
keyword. Alert text goes into ``match``/``term`` clauses only (analysed as plain text, never parsed
as query syntax), clipped, so a label cannot add a clause, a wildcard or a script.

No kNN: the alerts are short structured strings (names, label pairs, templated diagnoses) where
BM25 already finds the same alert class; a local embedding model would add a model download and
CPU per incident on the worker for little gain here (docs/knowledge-base.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from elasticsearch import Elasticsearch
from elasticsearch import TransportError as EsTransportError
from elasticsearch.exceptions import ApiError
from pydantic import BaseModel, ConfigDict, Field

from executors.llm.prompt import PastIncident
from schemas.records import Incident
from streams.kb import document as kbdoc
from streams.settings import KbSettings

logger = logging.getLogger(__name__)

MAX_QUERY_CHARS = 1000


class SimilarQuery(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant: str
    alert: str
    alert_class: str = ""
    fingerprint: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    diagnosis: str = ""
    #: The incident being analysed, which must not count as its own past.
    exclude_incident_id: str | None = None


class SimilarIncident(BaseModel):
    model_config = ConfigDict(frozen=True)

    incident_id: str
    alert: str
    alert_class: str = ""
    diagnosis: str = ""
    cause: str = ""
    resolved_at: str | None = None
    fixed_by: str | None = None
    fixed_by_dry_run: bool = False
    score: float = 0.0


class SimilarResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    incidents: list[SimilarIncident] = Field(default_factory=list)
    #: Past incidents of the same alert (same fingerprint) of this tenant, open or resolved.
    seen: int = 0
    #: The action that fixed the latest resolved incident of the same alert (outcome feedback).
    last_fixed_by: str | None = None
    last_fixed_dry_run: bool = False

    def summary_line(self) -> str:
        """``seen 3 times; last fixed by restart-vmagent`` (empty when there is nothing to say)."""
        parts = []
        if self.seen:
            parts.append(f"seen {self.seen} time{'s' if self.seen != 1 else ''} before")
        if self.last_fixed_by:
            parts.append(f"last fixed by {self.last_fixed_by}" + (" (dry run)" if self.last_fixed_dry_run else ""))
        return "; ".join(parts)


def _clip(text: str) -> str:
    return text[:MAX_QUERY_CHARS]


def _scope(prefix: str, query: SimilarQuery) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """The tenant's own indices, the tenant/kind filter, and the incident itself excluded."""
    filters: list[dict[str, Any]] = [{"term": {"tenant": query.tenant}}, {"term": {"kind": kbdoc.KIND_INCIDENT}}]
    must_not = [{"ids": {"values": [query.exclude_incident_id]}}] if query.exclude_incident_id else []
    return kbdoc.tenant_pattern(prefix, query.tenant), filters, must_not


def find_similar(client: Elasticsearch, prefix: str, query: SimilarQuery, *, k: int = 3) -> SimilarResult:
    """Top-``k`` resolved incidents of ``query.tenant`` like this one, how often this alert was seen, and what
    fixed it last. Blocking: call it through ``asyncio.to_thread`` from async code."""
    index, filters, must_not = _scope(prefix, query)
    pairs = [f"{key}={value}" for key, value in sorted(query.labels.items())][:32]
    should: list[dict[str, Any]] = [
        {"match": {"alert": {"query": _clip(query.alert), "boost": 3}}},
        {"match": {"labels_text": {"query": _clip(" ".join(pairs))}}},
    ]
    if pairs:
        should.append({"terms": {"label_pairs": pairs}})
    if query.alert_class:
        should.append({"term": {"alert_class": {"value": query.alert_class, "boost": 2}}})
    if query.fingerprint:
        should.append({"term": {"fingerprint": {"value": query.fingerprint, "boost": 4}}})
    if query.diagnosis:
        should.append({"match": {"diagnosis_text": {"query": _clip(query.diagnosis)}}})
    options: dict[str, Any] = {"index": index, "ignore_unavailable": True, "allow_no_indices": True}
    answer = client.search(**options, size=k, query={"bool": {
        "filter": [*filters, {"term": {"status": "resolved"}}], "must_not": must_not,
        "should": should, "minimum_should_match": 1}})
    incidents = [_incident(hit) for hit in answer["hits"]["hits"]]
    same = {"term": {"fingerprint": query.fingerprint}} if query.fingerprint else \
        {"term": {"alert.raw": query.alert[:512]}}
    seen = client.count(index=index, ignore_unavailable=True, allow_no_indices=True,
                        query={"bool": {"filter": [*filters, same], "must_not": must_not}})["count"]
    fixed = client.search(**options, size=1, sort=[{"resolved_at": {"order": "desc"}}],
                          query={"bool": {"filter": [*filters, same, {"exists": {"field": "resolution.fixed_by"}}],
                                          "must_not": must_not}})["hits"]["hits"]
    resolution = fixed[0]["_source"].get("resolution", {}) if fixed else {}
    return SimilarResult(incidents=incidents, seen=int(seen), last_fixed_by=resolution.get("fixed_by"),
                         last_fixed_dry_run=bool(resolution.get("dry_run")))


def _incident(hit: dict[str, Any]) -> SimilarIncident:
    source = hit["_source"]
    diagnosis = source.get("diagnosis") or {}
    best = diagnosis.get("llm") or diagnosis.get("policy") or {}
    resolution = source.get("resolution") or {}
    return SimilarIncident(
        incident_id=source["incident_id"], alert=source.get("alert", ""), alert_class=source.get("alert_class", ""),
        diagnosis=best.get("diagnosis", ""), cause=best.get("cause", ""), resolved_at=source.get("resolved_at"),
        fixed_by=resolution.get("fixed_by"), fixed_by_dry_run=bool(resolution.get("dry_run")),
        score=float(hit.get("_score") or 0.0))


class SimilarLookup:
    """What the worker asks for each incident: async, bounded in time, never raising.

    The knowledge base is a nice-to-have for the pipeline: a slow, failing or empty KB yields an empty
    result after at most ``timeout_s`` (and a warning), never an error or a stall. Results are cached
    per incident (the LLM stage and the first notification ask for the same incident).
    """

    def __init__(self, client: Elasticsearch, prefix: str, *, k: int = 3, timeout_s: float = 2.0,
                 cache_size: int = 256) -> None:
        self._client = client
        self._prefix = prefix
        self._k = k
        self._timeout_s = timeout_s
        self._cache: OrderedDict[str, SimilarResult] = OrderedDict()
        self._cache_size = cache_size

    async def for_incident(self, incident: Incident) -> SimilarResult:
        key = f"{incident.tenant}:{incident.incident_id}"
        if key in self._cache:
            return self._cache[key]
        event = incident.event
        query = SimilarQuery(tenant=incident.tenant, alert=event.alert, alert_class=incident.alert_class,
                             fingerprint=incident.fingerprint, labels=dict(event.labels),
                             exclude_incident_id=incident.incident_id)
        try:
            result = await asyncio.wait_for(
                asyncio.to_thread(find_similar, self._client, self._prefix, query, k=self._k), self._timeout_s)
        except (TimeoutError, ApiError, EsTransportError) as exc:
            logger.warning("knowledge base: no similar incidents for %s (%s: %s)", key, type(exc).__name__, exc,
                           extra={"tenant": incident.tenant, "incident_id": incident.incident_id})
            return SimilarResult()
        self._cache[key] = result
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return result

    async def past_incidents(self, incident: Incident) -> list[PastIncident]:
        """For the LLM prompt (``executors.llm.prompt.PastIncident``)."""
        found = await self.for_incident(incident)
        return [PastIncident(incident_id=i.incident_id, alert=i.alert, diagnosis=i.diagnosis[:1000],
                             cause=i.cause[:500],
                             resolution=f"fixed by {i.fixed_by}" if i.fixed_by else "resolved without an action")
                for i in found.incidents]

    async def history_line(self, incident: Incident) -> str:
        """For the first response: ``seen 3 times before; last fixed by X`` (empty when nothing is known)."""
        return (await self.for_incident(incident)).summary_line()


def lookup_from_settings(settings: KbSettings) -> SimilarLookup | None:
    """The worker's lookup, or None when no KB is configured or ``kb.similar_k`` is 0 (then nothing asks)."""
    if not settings.enabled or settings.similar_k == 0:
        return None
    from streams.kb.store import make_client

    reader = settings.model_copy(update={"request_timeout_s": settings.similar_timeout_s})
    return SimilarLookup(make_client(reader, max_retries=0), settings.index_prefix, k=settings.similar_k,
                         timeout_s=settings.similar_timeout_s)
