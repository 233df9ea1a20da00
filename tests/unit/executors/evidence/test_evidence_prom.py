"""prom.query / prom.query_range against a stand-in speaking the Prometheus HTTP API JSON envelope."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import pytest

from executors.evidence.base import Observation
from executors.evidence.prom import PromApi, Query, QueryRange
from schemas.records import EvidenceStatus
from tests.unit.executors.evidence.helpers import NOW, mock_client, run

BASE = "http://prom.test:9090"
Q = 'max(vm_storage_is_read_only{namespace="insight-system"})'


def prom_json(body: dict[str, object], status: int = 200) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        handler.seen.append(request)  # type: ignore[attr-defined]
        return httpx.Response(status, json=body)
    handler.seen = []  # type: ignore[attr-defined]
    return handler


def vector(*pairs: tuple[dict[str, str], str]) -> dict[str, object]:
    return {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": m, "value": [1764064800, v]} for m, v in pairs]}}


def ask(handler: Callable[[httpx.Request], httpx.Response], query: str = Q, *, ranged: bool = False,
        method: str = "POST") -> Observation:
    async def go() -> Observation:
        async with mock_client(handler) as client:
            api = PromApi.create(client, BASE, method=method)  # type: ignore[arg-type]
            tool = QueryRange(api) if ranged else Query(api)
            return await tool.observe_query(query, now=NOW)
    return run(go)


def test_instant_query_is_posted_as_a_form_pinned_to_the_analysis_time() -> None:
    handler = prom_json(vector(({"pod": "vmstorage-0"}, "1"), ({"pod": "vmstorage-1"}, "0")))
    obs = ask(handler)
    request = handler.seen[0]  # type: ignore[attr-defined]
    assert request.method == "POST" and request.url.path == "/api/v1/query"
    form = parse_qs(request.content.decode())
    assert form["query"] == [Q] and form["time"] == [f"{NOW.timestamp():.3f}"]
    assert obs.evidence.status is EvidenceStatus.SUCCESS
    assert obs.values == {"": 1.0, "series": 2.0, "min": 0.0, "sum": 1.0}
    assert 'vmstorage-0' in obs.evidence.summary.splitlines()[1]  # largest first
    assert obs.evidence.query.startswith(f"POST {BASE}/api/v1/query ")
    assert json.loads(obs.evidence.query.split(" ", 2)[2])["query"] == Q


def test_get_is_available_for_proxies_that_refuse_post() -> None:
    handler = prom_json(vector(({}, "3")))
    obs = ask(handler, method="GET")
    assert handler.seen[0].url.params["query"] == Q  # type: ignore[attr-defined]
    assert obs.values[""] == 3.0


def test_empty_result_is_no_data_not_zero() -> None:
    obs = ask(prom_json(vector()))
    assert obs.evidence.status is EvidenceStatus.NO_DATA
    assert obs.values == {}
    assert "no series matched" in obs.evidence.summary


def test_nan_is_shown_but_not_handed_to_thresholds() -> None:
    obs = ask(prom_json(vector(({}, "NaN"))))
    assert obs.evidence.status is EvidenceStatus.SUCCESS
    assert "" not in obs.values


def test_bad_query_returns_prometheus_error_type_and_message() -> None:
    body = {"status": "error", "errorType": "bad_data",
            "error": 'invalid parameter "query": 1:5: parse error: unexpected identifier "bar"'}
    obs = ask(prom_json(body, 400))
    assert obs.evidence.status is EvidenceStatus.ERROR
    assert "bad_data" in (obs.evidence.error or "") and "unexpected identifier" in (obs.evidence.error or "")
    assert json.loads(obs.evidence.query.split(" ", 2)[2])["query"] == Q  # the exact query, to rerun


def test_execution_timeout_and_unavailable_are_errors_with_the_upstream_words() -> None:
    for status, kind, text in [(422, "execution", "query processing would load too many samples"),
                               (503, "timeout", "query timed out in expression evaluation")]:
        obs = ask(prom_json({"status": "error", "errorType": kind, "error": text}, status))
        assert obs.evidence.status is EvidenceStatus.ERROR
        assert text in (obs.evidence.error or "")


def test_a_proxy_html_page_is_reported_as_such() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html><body>502 Bad Gateway</body></html>")
    obs = ask(handler)
    assert obs.evidence.status is EvidenceStatus.ERROR
    assert "not a JSON answer" in (obs.evidence.error or "") and "502 Bad Gateway" in (obs.evidence.error or "")


def test_warnings_reach_the_summary() -> None:
    body = vector(({}, "2"))
    body["warnings"] = ["PromQL info: metric might not be a counter"]
    obs = ask(prom_json(body))
    assert "might not be a counter" in obs.evidence.summary


def test_timeout_and_refused_connection_become_error_evidence() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    assert "timed out" in (ask(slow).evidence.error or "")
    assert "cannot reach" in (ask(refused).evidence.error or "")


def test_range_query_summarises_min_max_avg_last_of_the_top_series() -> None:
    body = {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"pod": "a"}, "values": [[1, "1"], [2, "5"], [3, "3"]]},
        {"metric": {"pod": "b"}, "values": [[1, "0"], [2, "1"]]},
    ]}}
    handler = prom_json(body)
    obs = ask(handler, ranged=True)
    form = parse_qs(handler.seen[0].content.decode())  # type: ignore[attr-defined]
    assert handler.seen[0].url.path == "/api/v1/query_range"  # type: ignore[attr-defined]
    assert float(form["end"][0]) - float(form["start"][0]) == 1800.0 and form["step"] == ["60s"]
    assert obs.values == {"": 3.0, "min": 1.0, "max": 5.0, "avg": 3.0, "series": 2.0}
    assert "min=1 max=5 avg=3 last=3" in obs.evidence.summary


def test_range_with_too_many_points_uses_a_coarser_step() -> None:
    handler = prom_json({"status": "success", "data": {"resultType": "matrix", "result": []}})

    async def go() -> Observation:
        async with mock_client(handler) as client:
            tool = QueryRange(PromApi.create(client, BASE))
            return await tool.observe({"query": "up", "range": "7d", "step": "15s"}, now=NOW)
    obs = run(go)
    form = parse_qs(handler.seen[0].content.decode())  # type: ignore[attr-defined]
    assert (float(form["end"][0]) - float(form["start"][0])) / int(form["step"][0][:-1]) <= 2000
    assert obs.evidence.status is EvidenceStatus.NO_DATA


@pytest.mark.parametrize("query", ['up{a="x"}) or vector(1) #"}', "x" * 5000, 'up{a="'])
def test_refused_queries_never_reach_prometheus(query: str) -> None:
    handler = prom_json(vector(({}, "1")))
    obs = ask(handler, query)
    assert handler.seen == []  # type: ignore[attr-defined]
    assert obs.evidence.status is EvidenceStatus.ERROR
    assert "refused prom.query" in (obs.evidence.error or "")


def test_base_url_must_be_plain_http() -> None:
    with pytest.raises(ValueError):
        PromApi.create(httpx.AsyncClient(), "http://user:pw@prom:9090")
