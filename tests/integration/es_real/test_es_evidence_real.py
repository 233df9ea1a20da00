"""es.count / es.search against a real Elasticsearch: the DCE 5 log layout, alert text as literal terms only,
and the login a production (security on) cluster requires."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from elasticsearch import Elasticsearch, helpers

from executors.evidence.auth import BackendAuth
from executors.evidence.base import Observation
from executors.evidence.es import Count, EsApi, EsConfig, Search
from schemas.records import EvidenceStatus
from tests.support.es.server import EsNode

NOW = datetime.now(UTC).replace(microsecond=0)
Q = 'kubernetes.namespace_name:"{ns}" AND kubernetes.pod_name:"{pod}" AND @timestamp:[now-5m TO now]'

MAPPING = {"properties": {
    "@timestamp": {"type": "date"}, "log": {"type": "text"},
    "kubernetes": {"properties": {"pod_name": {"type": "keyword"}, "namespace_name": {"type": "keyword"},
                                  "container_name": {"type": "keyword"}}}}}


def _fill(client: Elasticsearch, index: str) -> None:
    client.indices.create(index=index, settings={"number_of_shards": 1, "number_of_replicas": 0}, mappings=MAPPING)
    docs = []
    for i in range(40):
        docs.append({"_index": index, "@timestamp": (NOW - timedelta(seconds=5 * i)).isoformat(),
                     "log": f'level=error msg="dial tcp 10.0.0.{i % 3}:8400: connect: connection refused"',
                     "kubernetes": {"pod_name": "vminsert-0", "namespace_name": "insight-system",
                                    "container_name": "vminsert"}})
    for i in range(7):  # another tenant's namespace, same pod name
        docs.append({"_index": index, "@timestamp": (NOW - timedelta(seconds=7 * i)).isoformat(),
                     "log": "secret line of another team",
                     "kubernetes": {"pod_name": "vminsert-0", "namespace_name": "team-b", "container_name": "x"}})
    docs.append({"_index": index, "@timestamp": (NOW - timedelta(hours=2)).isoformat(), "log": "old",
                 "kubernetes": {"pod_name": "vminsert-0", "namespace_name": "insight-system"}})
    helpers.bulk(client, docs, refresh="wait_for")


@pytest.fixture(scope="module")
def logs_index(elasticsearch_node: EsNode) -> str:
    index = f"insight-es-k8s-logs-{uuid.uuid4().hex[:8]}"
    with Elasticsearch(elasticsearch_node.url) as client:
        _fill(client, index)
    return index


def observe(url: str, index: str, tool: type[Count] | type[Search], query: str,
            auth: BackendAuth | None = None) -> Observation:
    async def go() -> Observation:
        api = EsApi.from_config(EsConfig(base_url=url, index=index, auth=auth or BackendAuth()))
        try:
            return await tool(api).observe_query(query, now=NOW)
        finally:
            await api.aclose()
    return asyncio.run(go())


def test_count_and_search_read_the_real_index(elasticsearch_node: EsNode, logs_index: str) -> None:
    count = observe(elasticsearch_node.url, logs_index, Count, Q.format(ns="insight-system", pod="vminsert-0"))
    assert count.evidence.status is EvidenceStatus.SUCCESS, count.evidence
    assert count.values[""] == 40.0  # the 2-hour-old line and the other namespace are outside the filter
    assert "by container: vminsert 40" in count.evidence.summary
    search = observe(elasticsearch_node.url, logs_index, Search, Q.format(ns="insight-system", pod="vminsert-0"))
    assert search.values[""] == 40.0
    assert "connection refused" in search.evidence.summary and "another team" not in search.evidence.summary


@pytest.mark.parametrize("pod", [
    "*",                                        # a wildcard is a literal pod name, not "every pod"
    "vminsert-*",
    r'vminsert-0\" OR kubernetes.namespace_name:\"team-b',  # an attempt to add a clause
    "vminsert-0 OR team-b",
])
def test_alert_text_is_a_literal_term_on_the_real_server(elasticsearch_node: EsNode, logs_index: str,
                                                         pod: str) -> None:
    obs = observe(elasticsearch_node.url, logs_index, Count, Q.format(ns="insight-system", pod=pod))
    # Either refused before any request, or asked literally and found nothing: never the 40 (or 47) lines.
    assert obs.values.get("", 0.0) == 0.0, obs.evidence
    assert obs.evidence.status in (EvidenceStatus.NO_DATA, EvidenceStatus.ERROR)


def test_security_on_needs_the_configured_login(elasticsearch_secure_node: EsNode) -> None:
    node = elasticsearch_secure_node
    index = f"insight-es-k8s-logs-{uuid.uuid4().hex[:8]}"
    with Elasticsearch(node.url, basic_auth=node.auth) as admin:
        _fill(admin, index)
    query = Q.format(ns="insight-system", pod="vminsert-0")

    anonymous = observe(node.url, index, Count, query)
    assert anonymous.evidence.status is EvidenceStatus.ERROR and "401" in (anonymous.evidence.error or "")

    assert node.auth is not None
    basic = BackendAuth(username=node.auth[0], password=node.auth[1])
    assert observe(node.url, index, Count, query, basic).values[""] == 40.0
    wrong = BackendAuth(username=node.auth[0], password=node.password + "x")
    assert "401" in (observe(node.url, index, Count, query, wrong).evidence.error or "")
    # An API key is sent as "ApiKey <key>"; the integ-test distribution cannot mint one (its security index needs
    # the analysis-common filters it lacks), so here an unknown key must be refused, not ignored.
    unknown_key = observe(node.url, index, Count, query, BackendAuth(api_key="bm9wZTpub3Bl"))
    assert "401" in (unknown_key.evidence.error or "")
    # The secret never lands in the evidence record (which is published to Kafka and shown to the LLM).
    recorded = observe(node.url, index, Search, query, basic).evidence.model_dump_json()
    assert node.password not in recorded


def test_a_private_ca_is_used_for_the_connection(tmp_path: object) -> None:
    """``ca_file`` reaches the client: a CA file that does not exist fails when the client is built."""
    with pytest.raises(FileNotFoundError):
        BackendAuth(ca_file="/nonexistent/ca.pem").verify()  # type: ignore[arg-type]
    assert isinstance(httpx.AsyncClient(verify=BackendAuth().verify()), httpx.AsyncClient)
