"""es.count / es.search against an Elasticsearch ``_search`` stand-in: alert text only ever as term values."""

from __future__ import annotations

import pytest

from executors.evidence.base import Observation
from executors.evidence.es import Count, EsApi, EsConfig, Search, parse_filter
from schemas.records import EvidenceStatus
from tests.unit.executors.evidence.helpers import NOW, run
from tests.unit.executors.evidence.standins import EsStandIn
from tests.unit.executors.exec_helpers import asgi_client

POLICY_QUERY = ('kubernetes.namespace_name:"insight-system" AND kubernetes.pod_name:"{pod}" '
                "AND @timestamp:[now-5m TO now]")


@pytest.fixture
def es() -> EsStandIn:
    s = EsStandIn()
    s.add_logs("noisy-0", "level=error msg=\"dial tcp 10.0.0.{i}:8400: connect: connection refused\"", 120)
    s.add_logs("noisy-0", "level=info msg=\"flushed\"", 5, container="sidecar")
    s.add_logs("quiet-0", "level=info msg=\"ok\"", 3)
    s.add_logs("noisy-0", "old line", 50, minutes_ago=30)
    return s


def observe(es: EsStandIn, tool_cls: type[Count] | type[Search], query: str,
            index: str = "insight-es-k8s-logs-*") -> Observation:
    async def go() -> Observation:
        client = asgi_client(es.app(), "http://es.test:9200")
        api = EsApi.create(client, EsConfig(base_url="http://es.test:9200", index=index))
        try:
            return await tool_cls(api).observe_query(query, now=NOW)
        finally:
            await client.aclose()
    return run(go)


def test_count_gives_volume_by_pod_container_and_minute(es: EsStandIn) -> None:
    obs = observe(es, Count, POLICY_QUERY.format(pod="noisy-0"))
    assert obs.values[""] == 125.0 and obs.values["per_min_max"] == 125.0
    assert "by container: main 120, sidecar 5" in obs.evidence.summary
    _, body, _ = es.requests[-1]
    assert body["size"] == 0 and body["track_total_hits"] is True
    assert body["query"] == {"bool": {"filter": [
        {"term": {"kubernetes.namespace_name": "insight-system"}},
        {"term": {"kubernetes.pod_name": "noisy-0"}},
        {"range": {"@timestamp": {"gte": "2026-11-25T09:55:00.000Z", "lte": "2026-11-25T10:00:00.000Z"}}}]}}
    assert '"term"' in obs.evidence.query and "/insight-es-k8s-logs-*/_search" in obs.evidence.query


def test_search_folds_repeated_messages(es: EsStandIn) -> None:
    obs = observe(es, Search, POLICY_QUERY.format(pod="noisy-0"))
    assert obs.values[""] == 125.0
    top = obs.evidence.summary.splitlines()[1]
    assert top.startswith("- x120: ") and "connection refused" in top


def test_nothing_matched_is_no_data_with_the_filter_shown(es: EsStandIn) -> None:
    obs = observe(es, Count, POLICY_QUERY.format(pod="absent-0"))
    assert obs.evidence.status is EvidenceStatus.NO_DATA and obs.values == {"": 0.0}
    assert "absent-0" in obs.evidence.query


@pytest.mark.parametrize("value", ['a" OR *:*', "../../etc", "x) OR (y", "*", "x\\\" AND pod:\\\"y"])
def test_hostile_values_stay_one_exact_term(es: EsStandIn, value: str) -> None:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    obs = observe(es, Count, f'kubernetes.pod_name:"{escaped}"')
    assert obs.evidence.status is EvidenceStatus.NO_DATA
    _, body, _ = es.requests[-1]
    assert body["query"] == {"bool": {"filter": [{"term": {"kubernetes.pod_name": value}}]}}


@pytest.mark.parametrize(
    "query",
    [
        'kubernetes.pod_name:"a" OR kubernetes.pod_name:"b"',
        "kubernetes.pod_name:noisy-0",
        'kubernetes.pod_name:"' + "a" * 10_000 + '"',
        'kubernetes.pod_name:"x\n"',
        '@timestamp:[now-5m TO now]',
        'kubernetes.pod_name:"a" AND @timestamp:[2020-01-01 TO now]',
        'kubernetes.pod_name:"a" AND _source:{"script":1}',
    ],
)
def test_anything_but_terms_and_a_time_range_is_refused_before_sending(es: EsStandIn, query: str) -> None:
    obs = observe(es, Count, query)
    assert obs.evidence.status is EvidenceStatus.ERROR
    assert es.requests == []


@pytest.mark.parametrize(
    ("fail", "words"),
    [
        ((401, "security_exception", "missing authentication credentials for REST request [/_search]"),
         "security_exception"),
        ((403, "security_exception", "action [indices:data/read/search] is unauthorized for user [rcaflow]"),
         "is unauthorized"),
        ((503, "search_phase_execution_exception", "all shards failed"), "all shards failed"),
    ],
)
def test_upstream_errors_carry_type_and_reason(es: EsStandIn, fail: tuple[int, str, str], words: str) -> None:
    es.fail = fail
    obs = observe(es, Count, POLICY_QUERY.format(pod="noisy-0"))
    assert obs.evidence.status is EvidenceStatus.ERROR and words in (obs.evidence.error or "")
    assert str(fail[0]) in (obs.evidence.error or "")


def test_missing_index_is_an_error_naming_it(es: EsStandIn) -> None:
    obs = observe(es, Count, POLICY_QUERY.format(pod="noisy-0"), index="other-logs")
    assert "index_not_found_exception" in (obs.evidence.error or "")


def test_parse_filter_unescapes_quoted_values() -> None:
    flt = parse_filter(r'f:"a\"b" AND g:"c AND d"')
    assert flt.terms == (("f", 'a"b'), ("g", "c AND d")) and flt.range is None


def test_date_math_is_pinned_to_the_analysis_time() -> None:
    from executors.evidence.es import resolve_date_math

    assert resolve_date_math("now-1h/h", NOW.replace(minute=42)) == "2026-11-25T09:00:00.000Z"
    assert resolve_date_math("now", NOW) == "2026-11-25T10:00:00.000Z"


def test_configured_index_is_validated() -> None:
    with pytest.raises(ValueError):
        EsApi.create(asgi_client(EsStandIn().app()), EsConfig(base_url="http://es:9200", index="../_all"))
