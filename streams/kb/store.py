"""The knowledge base's Elasticsearch side: template, folding a batch of facts in, retention.

Uses the official ``elasticsearch`` client (8.x; its transport retries connection errors and
timeouts, ``helpers.streaming_bulk`` retries 429s) from worker threads: callers in async code go
through ``asyncio.to_thread``.

Writes are read-modify-write with optimistic concurrency, because the integ-test distribution and
many managed offerings have no painless for scripted updates, and because two KB consumers may
hold partitions that carry records of the same incident (actions are keyed by action id, rca
results by incident id): a new document is written with ``op_type=create``, an existing one with
``if_seq_no``/``if_primary_term``; a conflict re-reads and re-folds. Bulk requests refresh the
shard, so the next batch's lookup (a search) sees what this one wrote.
"""

from __future__ import annotations

import copy
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from elasticsearch import Elasticsearch, helpers
from elasticsearch import TransportError as EsTransportError
from elasticsearch.exceptions import ApiError

from schemas.records import ActionEvent, ApprovalDecision, Incident, RcaResult, Record
from streams.errors import StreamsError
from streams.kb import document as kbdoc
from streams.settings import KbSettings

logger = logging.getLogger(__name__)

#: Conflicts (another KB consumer wrote the same incident in between) re-read and re-fold this often.
MAX_CONFLICT_ROUNDS = 5


class KbError(StreamsError):
    """Elasticsearch did not take a batch; nothing of it may be committed. ``retriable`` for outages."""

    def __init__(self, message: str, *, retriable: bool = True, index: str | None = None) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.index = index


@dataclass
class ApplyReport:
    """What one batch did: documents written, and records ES refused for good (logged, counted)."""

    written: int = 0
    conflicts: int = 0
    rejected: list[str] = field(default_factory=list)


def index_template(prefix: str, replicas: int) -> dict[str, Any]:
    """The template shipped in the package (the copy in deploy/elasticsearch/ is tested equal)."""
    body: dict[str, Any] = json.loads(resources.files("streams.kb").joinpath("index_template.json").read_text())
    body["index_patterns"] = [f"{prefix}-*"]
    body["template"]["settings"]["number_of_replicas"] = replicas
    return body


def make_client(settings: KbSettings, *, max_retries: int = 3) -> Elasticsearch:
    """The official client from the KB section: basic auth or an API key, a private CA, retries on timeouts."""
    if not settings.elasticsearch_url:
        raise KbError("kb.elasticsearch_url is not set", retriable=False)
    auth = settings.auth
    options: dict[str, Any] = {"request_timeout": settings.request_timeout_s, "retry_on_timeout": max_retries > 0,
                               "max_retries": max_retries}
    if auth.username is not None and auth.password is not None:
        options["basic_auth"] = (auth.username, auth.password.get_secret_value())
    elif auth.api_key is not None:
        options["api_key"] = auth.api_key.get_secret_value()
    elif auth.bearer_token is not None:
        options["bearer_auth"] = auth.bearer_token.get_secret_value()
    if auth.ca_file is not None:
        options["ca_certs"] = str(auth.ca_file)
    if not auth.verify_tls:
        options["verify_certs"] = False
    return Elasticsearch(settings.elasticsearch_url, **options)


class KbStore:
    """One tenant-partitioned set of month indices under ``prefix``."""

    def __init__(self, client: Elasticsearch, *, prefix: str = "rcaflow-kb", replicas: int = 1) -> None:
        self.client = client
        self.prefix = prefix
        self.replicas = replicas

    def install_template(self) -> None:
        """Idempotent: put the composable index template (mappings, shards, replicas) for ``<prefix>-*``."""
        body = index_template(self.prefix, self.replicas)
        try:
            self.client.indices.put_index_template(name=self.prefix, **body)
        except (ApiError, EsTransportError) as exc:
            raise KbError(f"cannot install the index template {self.prefix}: {exc}") from exc

    # ------------------------------------------------------------------ writes
    def apply(self, records: Iterable[Record]) -> ApplyReport:
        """Fold ``records`` into their documents; returns once Elasticsearch acknowledged every write.

        Raises :class:`KbError` when a write did not happen for a reason that may pass (an outage,
        an overloaded node): the caller must not commit the batch and retries it.
        """
        report = ApplyReport()
        by_incident: dict[tuple[str, str], list[Record]] = defaultdict(list)
        approvals: list[ApprovalDecision] = []
        for record in records:
            if isinstance(record, ApprovalDecision):
                approvals.append(record)
            elif isinstance(record, Incident | RcaResult | ActionEvent):
                by_incident[(record.tenant, record.incident_id)].append(record)
        pending = dict(by_incident)
        for _round in range(MAX_CONFLICT_ROUNDS):
            if not pending:
                break
            conflicted = self._write_incidents(pending, report)
            report.conflicts += len(conflicted)
            pending = {key: pending[key] for key in conflicted}
        if pending:
            raise KbError(f"{len(pending)} incident document(s) still conflicting after {MAX_CONFLICT_ROUNDS} rounds")
        if approvals:
            self._bulk([self._approval_action(a) for a in approvals], report)
        return report

    def _approval_action(self, decision: ApprovalDecision) -> dict[str, Any]:
        doc_id, body = kbdoc.approval_document(decision)
        return {"_op_type": "index", "_index": kbdoc.index_name(self.prefix, decision.tenant, decision.decided_at),
                "_id": doc_id, "_source": body}

    def _write_incidents(self, pending: dict[tuple[str, str], list[Record]],
                         report: ApplyReport) -> set[tuple[str, str]]:
        found = self._lookup(pending)
        actions = []
        for key, records in pending.items():
            tenant, incident_id = key
            current = found.get(key)
            doc = copy.deepcopy(current["_source"]) if current else kbdoc.new_document(tenant, incident_id)
            for record in records:
                _fold(doc, record)
            kbdoc.finish(doc)
            action: dict[str, Any] = {"_id": incident_id, "_source": doc}
            if current:
                action.update({"_op_type": "index", "_index": current["_index"], "if_seq_no": current["_seq_no"],
                               "if_primary_term": current["_primary_term"]})
            else:
                action.update({"_op_type": "create", "_index": kbdoc.index_name(self.prefix, tenant,
                                                                                 _home_moment(doc, records))})
            actions.append(action)
        conflicts = self._bulk(actions, report)
        return {(a["_source"]["tenant"], a["_id"]) for a in actions if a["_id"] in conflicts}

    def _lookup(self, pending: dict[tuple[str, str], list[Record]]) -> dict[tuple[str, str], dict[str, Any]]:
        """The current documents (any month) by id, with their sequence numbers for the conditional write."""
        tenants: dict[str, list[str]] = defaultdict(list)
        for tenant, incident_id in pending:
            tenants[tenant].append(incident_id)
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for tenant, ids in tenants.items():
            try:
                answer = self.client.search(
                    index=kbdoc.tenant_pattern(self.prefix, tenant), ignore_unavailable=True,
                    allow_no_indices=True, size=len(ids), seq_no_primary_term=True,
                    query={"bool": {"filter": [{"ids": {"values": ids}}, {"term": {"tenant": tenant}},
                                               {"term": {"kind": kbdoc.KIND_INCIDENT}}]}})
            except (ApiError, EsTransportError) as exc:
                raise KbError(f"knowledge base lookup failed: {exc}") from exc
            for hit in answer["hits"]["hits"]:
                found[(tenant, hit["_id"])] = hit
        return found

    def _bulk(self, actions: list[dict[str, Any]], report: ApplyReport) -> set[str]:
        """Send ``actions``; returns the ids that hit a version conflict. Refreshes, so lookups see them."""
        conflicts: set[str] = set()
        try:
            for ok, item in helpers.streaming_bulk(self.client, actions, raise_on_error=False,
                                                   raise_on_exception=True, max_retries=3, initial_backoff=1,
                                                   refresh=True):
                op = next(iter(item.values()))
                if ok:
                    report.written += 1
                elif op.get("status") == 409:
                    conflicts.add(op["_id"])
                elif op.get("status", 500) >= 500 or op.get("status") == 429:
                    raise KbError(f"elasticsearch refused {op.get('_id')}: {op.get('status')} {op.get('error')}",
                                  index=op.get("_index"))
                else:  # a 4xx for this document only (mapping, size): retrying would fail the same way
                    logger.error("knowledge base: document %s refused for good: %s", op.get("_id"), op.get("error"),
                                 extra={"index": op.get("_index")})
                    report.rejected.append(str(op.get("_id")))
        except (ApiError, EsTransportError, helpers.BulkIndexError) as exc:
            raise KbError(f"knowledge base bulk write failed: {exc}") from exc
        return conflicts

    # ------------------------------------------------------------------ reads and retention
    def get(self, tenant: str, incident_id: str) -> dict[str, Any] | None:
        answer = self.client.search(index=kbdoc.tenant_pattern(self.prefix, tenant), ignore_unavailable=True,
                                    allow_no_indices=True, size=1,
                                    query={"bool": {"filter": [{"ids": {"values": [incident_id]}},
                                                               {"term": {"tenant": tenant}}]}})
        hits = answer["hits"]["hits"]
        return kbdoc.public(hits[0]["_source"]) if hits else None

    def documents(self, tenant: str) -> Iterator[dict[str, Any]]:
        """Every incident document of ``tenant`` (for exports and the replay test)."""
        for hit in helpers.scan(self.client, index=kbdoc.tenant_pattern(self.prefix, tenant), ignore_unavailable=True,
                                query={"query": {"bool": {"filter": [{"term": {"tenant": tenant}},
                                                                     {"term": {"kind": kbdoc.KIND_INCIDENT}}]}}}):
            yield kbdoc.public(hit["_source"])

    def prune(self, keep_months: int, now: datetime | None = None) -> list[str]:
        """Delete whole month indices older than ``keep_months`` (no ILM or delete_by_query needed)."""
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        cutoff = (moment.year * 12 + moment.month - 1) - (keep_months - 1)
        doomed = []
        for name in self.client.indices.get(index=f"{self.prefix}-*", expand_wildcards="open,closed"):
            _, _, month = name.rpartition(".")
            _, _, year = name[: -len(month) - 1].rpartition(".")
            if year.isdigit() and month.isdigit() and int(year) * 12 + int(month) - 1 < cutoff:
                doomed.append(name)
        for name in sorted(doomed):
            self.client.indices.delete(index=name)
            logger.info("knowledge base: deleted %s (older than %d months)", name, keep_months)
        return sorted(doomed)


def _fold(doc: dict[str, Any], record: Record) -> None:
    if isinstance(record, RcaResult):
        kbdoc.fold_rca(doc, record)
    elif isinstance(record, Incident):
        kbdoc.fold_incident(doc, record)
    elif isinstance(record, ActionEvent):
        kbdoc.fold_action(doc, record)


def _home_moment(doc: dict[str, Any], records: list[Record]) -> datetime:
    """The month a new document lives in: when the incident opened, or (an action seen before its incident)
    the earliest action time of the batch."""
    if doc.get("opened_at"):
        return datetime.fromisoformat(str(doc["opened_at"]).replace("Z", "+00:00"))
    return min(r.at for r in records if isinstance(r, ActionEvent))
