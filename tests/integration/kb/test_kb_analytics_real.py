"""Analytics from the knowledge base on a real Elasticsearch: MTTA, MTTR, adoption and rollback rates per tenant
and class, the same numbers after a replay, and on the metrics port."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from elasticsearch import Elasticsearch
from prometheus_client import CollectorRegistry, generate_latest

from streams.kb.analytics import KbStatsCollector, class_stats
from streams.kb.store import KbStore
from tests.integration.kb.records import T0, lifecycle
from tests.support.es.server import EsNode, free_port


@pytest.fixture
def kb(elasticsearch_node: EsNode) -> Iterator[KbStore]:
    with Elasticsearch(elasticsearch_node.url, request_timeout=60) as client:
        store = KbStore(client, prefix=f"kba{uuid.uuid4().hex[:8]}", replicas=0)
        store.install_template()
        store.apply(lifecycle("acme", "a-1", start=T0))                                   # fixed, resolved in 300 s
        store.apply(lifecycle("acme", "a-2", start=T0 + timedelta(hours=1), succeed=False))  # ran, failed
        store.apply(lifecycle("acme", "a-3", start=T0 + timedelta(hours=2), resolve=False))  # still open
        store.apply(lifecycle("globex", "g-1", start=T0))
        yield store


def test_per_tenant_and_class_numbers(kb: KbStore) -> None:
    [acme] = class_stats(kb.client, kb.prefix, tenant="acme")
    assert (acme.tenant, acme.alert_class, acme.incidents, acme.resolved) == ("acme", "vminsert_write_errors", 3, 2)
    assert acme.mtta_s == 4.0 and acme.mttr_s == 300.0  # alert → policy diagnosis; alert → resolved
    assert acme.llm_latency_ms == 900.0 and acme.llm_tokens == 3600
    assert acme.actions == {"proposed": 3, "approved": 3, "ran": 3, "succeeded": 2, "rolled_back": 0}
    assert acme.adoption_rate == pytest.approx(2 / 3) and acme.rollback_rate == 0.0
    assert acme.top_alerts == [("VminsertWriteErrors", 5)]  # 3 incidents, two of them with a resolve event
    assert {r.tenant for r in class_stats(kb.client, kb.prefix)} == {"acme", "globex"}


def test_a_replay_gives_the_same_numbers(kb: KbStore) -> None:
    before = class_stats(kb.client, kb.prefix)
    kb.apply(lifecycle("acme", "a-1", start=T0) + lifecycle("globex", "g-1", start=T0))
    assert class_stats(kb.client, kb.prefix) == before


def test_the_metrics_port_shows_them_and_survives_a_kb_outage(kb: KbStore) -> None:
    registry = CollectorRegistry()
    registry.register(KbStatsCollector(kb.client, kb.prefix))
    text = generate_latest(registry).decode()
    assert 'rcaflow_kb_mttr_seconds{alert_class="vminsert_write_errors",tenant="acme"} 300.0' in text
    down = CollectorRegistry()
    with Elasticsearch(f"http://127.0.0.1:{free_port()}", request_timeout=1, max_retries=0) as nowhere:
        down.register(KbStatsCollector(nowhere, kb.prefix))
        assert "rcaflow_kb_incidents" in generate_latest(down).decode()
