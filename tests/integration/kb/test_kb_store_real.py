"""The knowledge base on a real Elasticsearch: one document per incident, the same whatever order and however
often the records arrive, similar incidents only of the same tenant, "last fixed by", retention by month."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from elasticsearch import Elasticsearch

from schemas.records import AlertStatus
from streams.kb.similar import SimilarQuery, find_similar
from streams.kb.store import KbStore
from tests.integration.kb.records import T0, lifecycle
from tests.support.es.server import EsNode


@pytest.fixture
def es(elasticsearch_node: EsNode) -> Iterator[Elasticsearch]:
    with Elasticsearch(elasticsearch_node.url, request_timeout=60) as client:
        yield client


def store(client: Elasticsearch) -> KbStore:
    kb = KbStore(client, prefix=f"kbt{uuid.uuid4().hex[:8]}", replicas=0)
    kb.install_template()
    return kb


def test_one_document_per_incident_with_everything_that_happened(es: Elasticsearch) -> None:
    kb = store(es)
    kb.apply(lifecycle("acme", "inc-1"))
    doc = kb.get("acme", "inc-1")
    assert doc is not None
    assert doc["alert"] == "VminsertWriteErrors" and doc["alert_class"] == "vminsert_write_errors"
    assert doc["labels"]["namespace"] == "insight-system" and "cluster=HK-DCE5-PLATFORM" in doc["label_pairs"]
    assert doc["diagnosis"]["policy"]["diagnosis"].startswith("vminsert cannot reach")
    assert doc["diagnosis"]["llm"]["model"] == "qwen"
    assert "es.count [success]: 120 errors" in doc["evidence_summary"]
    [action] = doc["actions"]
    assert action["state"] == "succeeded" and action["approver"] == "slack:U42"
    assert doc["approver"] == "slack:U42"
    assert doc["status"] == "resolved" and doc["timings"]["to_resolve_s"] == 300.0
    assert doc["resolution"]["fixed_by"] == "restart-vminsert"  # the outcome feedback "last fixed by" reads
    # the incident lives in the month it opened; the approval decision is its own document
    assert es.indices.exists(index=f"{kb.prefix}-acme.2026.11")
    assert es.count(index=f"{kb.prefix}-acme.*", query={"term": {"kind": "approval"}})["count"] == 1


def test_a_failed_action_or_an_unresolved_alert_fixed_nothing(es: Elasticsearch) -> None:
    kb = store(es)
    kb.apply([*lifecycle("acme", "failed", succeed=False), *lifecycle("acme", "open", resolve=False)])
    failed, still_open = kb.get("acme", "failed"), kb.get("acme", "open")
    assert failed is not None and failed["status"] == "resolved" and failed["resolution"]["fixed_by"] is None
    assert still_open is not None and still_open["status"] == "open" and still_open["resolution"]["fixed_by"] is None


def test_replaying_in_any_order_and_twice_gives_the_same_documents(es: Elasticsearch) -> None:
    records = [r for n in range(4) for r in lifecycle("acme", f"inc-{n}", start=T0 + timedelta(hours=n),
                                                      succeed=n % 2 == 0)]
    first = store(es)
    for record in records:  # one record per batch, in topic order
        first.apply([record])
    replay = store(es)
    shuffled = records * 2  # at-least-once: everything delivered twice
    random.Random(7).shuffle(shuffled)
    for start in range(0, len(shuffled), 5):
        replay.apply(shuffled[start:start + 5])
    assert sorted(first.documents("acme"), key=lambda d: d["incident_id"]) == \
        sorted(replay.documents("acme"), key=lambda d: d["incident_id"])


def test_similar_incidents_stay_within_the_tenant(es: Elasticsearch) -> None:
    kb = store(es)
    kb.apply(lifecycle("acme", "acme-1", start=T0))
    kb.apply(lifecycle("acme", "acme-2", start=T0 + timedelta(days=1), action="scale-vminsert"))
    # acme-prod shares the prefix "acme" and has the very same alert, and many more of them
    for n in range(5):
        kb.apply(lifecycle("acme-prod", f"prod-{n}", start=T0 + timedelta(days=2, hours=n), action="prod-only-fix"))
    query = SimilarQuery(tenant="acme", alert="VminsertWriteErrors", alert_class="vminsert_write_errors",
                         fingerprint="fp-acme-VminsertWriteErrors",
                         labels={"namespace": "insight-system", "workload": "vminsert"}, exclude_incident_id="new")
    found = find_similar(es, kb.prefix, query, k=10)
    assert {i.incident_id for i in found.incidents} == {"acme-1", "acme-2"}
    assert found.seen == 2 and found.last_fixed_by == "scale-vminsert"
    assert found.summary_line() == "seen 2 times before; last fixed by scale-vminsert"
    other = find_similar(es, kb.prefix, query.model_copy(update={"tenant": "acme-prod"}), k=10)
    assert {i.incident_id for i in other.incidents} == {f"prod-{n}" for n in range(5)}
    assert other.seen == 0  # acme's fingerprint is not acme-prod's
    assert find_similar(es, kb.prefix, query.model_copy(update={"tenant": "nobody"})).incidents == []


def test_alert_text_is_never_parsed_as_query_syntax(es: Elasticsearch) -> None:
    """Mail text full of Lucene syntax (unbalanced quotes, a regex, field names) is matched as words: no 400,
    no wildcard, and the other tenant stays out."""
    kb = store(es)
    kb.apply(lifecycle("acme", "acme-1"))
    kb.apply(lifecycle("other", "other-1"))
    hostile = SimilarQuery(tenant="acme", alert='VminsertWriteErrors") OR (tenant:"other" /.*/ *:*',
                           labels={"x": '") OR (tenant:"other'}, diagnosis="*:* AND status:open~")
    ids = {i.incident_id for i in find_similar(es, kb.prefix, hostile, k=10).incidents}
    assert ids == {"acme-1"}


def test_retention_deletes_whole_months(es: Elasticsearch) -> None:
    kb = store(es)
    kb.apply(lifecycle("acme", "old", start=datetime(2026, 1, 10, tzinfo=UTC)))
    kb.apply(lifecycle("acme", "new", start=datetime(2026, 11, 10, tzinfo=UTC)))
    deleted = kb.prune(keep_months=3, now=datetime(2026, 12, 6, tzinfo=UTC))
    assert deleted == [f"{kb.prefix}-acme.2026.01"]
    assert kb.get("acme", "old") is None and kb.get("acme", "new") is not None


def test_resolved_status_comes_from_the_latest_update_whatever_the_order(es: Elasticsearch) -> None:
    kb = store(es)
    records = lifecycle("acme", "inc")
    resolved = records[-1]
    kb.apply([resolved])  # the resolve update first
    kb.apply(records[:-1])
    doc = kb.get("acme", "inc")
    assert doc is not None and doc["status"] == AlertStatus.RESOLVED.value and doc["count"] == 2
