"""One tenant storms the running stack (``rcaflow api`` over real HTTP + ``rcaflow worker`` on real Kafka): its
posts over the quota get 429 with the reason and are counted, nothing of them enters the pipeline, and the other
tenant's alerts, sent during the storm, are all accepted and all triaged.

The quota comes from the deployed configuration (environment → settings → the API process), which the in-process
test (tests/integration/flow/test_ingest_quota.py) builds by hand. The second test does the same with the intake
budget shared by the tenants: once the storm has emptied it, the storming tenant (within its own quota) is refused
as above its fair share, while the other tenant, under its share, is still admitted."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas.codec import Codec
from schemas.records import AlertEvent, RcaResult
from schemas.topics import NORMALIZED, RCA_RESULT
from streams.broker.base import free_loopback_port
from streams.wiring.supervisor import Stack
from tests.integration.flow.conftest import stack_for
from tests.integration.flow.helpers import TopicReader

TOKENS = {"acme": "acme-storm-token", "globex": "globex-storm-token"}
#: acme: a burst of 3, then one alert a minute (no refill while the test runs); globex: a quota it stays under.
TENANTS_ENV = {
    "RCAFLOW_TENANTS__ACME__TOKEN": TOKENS["acme"],
    "RCAFLOW_TENANTS__ACME__NAMESPACES": '["insight-system"]',
    "RCAFLOW_TENANTS__ACME__SENDERS": '["*@acme.test"]',
    "RCAFLOW_TENANTS__ACME__INGEST__ALERTS_PER_MINUTE": "1",
    "RCAFLOW_TENANTS__ACME__INGEST__BURST": "3",
    "RCAFLOW_TENANTS__GLOBEX__TOKEN": TOKENS["globex"],
    "RCAFLOW_TENANTS__GLOBEX__NAMESPACES": '["insight-system"]',
    "RCAFLOW_TENANTS__GLOBEX__SENDERS": '["*@globex.test"]',
    "RCAFLOW_TENANTS__GLOBEX__INGEST__ALERTS_PER_MINUTE": "600",
}


#: Both tenants within generous quotas; the intake's budget: 4 alerts at once, then one every 10 minutes (no refill
#: while the test runs), so its window is 40 minutes and each of two active tenants' share is 2 alerts.
BUDGET_ENV = {
    **TENANTS_ENV,
    "RCAFLOW_TENANTS__ACME__INGEST__ALERTS_PER_MINUTE": "600",
    "RCAFLOW_TENANTS__ACME__INGEST__BURST": "600",
    "RCAFLOW_INGEST__BUDGET_ALERTS_PER_MINUTE": "0.1",
    "RCAFLOW_INGEST__BUDGET_BURST": "4",
}


def _stack(broker: object, tmp_path: Path, tenants_env: dict[str, str]) -> Iterator[tuple[Stack, str]]:
    port = free_loopback_port()
    running = stack_for(broker.bootstrap, tmp_path, ("api", "worker"),  # type: ignore[attr-defined]
                        tenants_env=tenants_env, extra_env={"RCAFLOW_API__PORT": str(port)})
    with running:
        yield running, f"http://127.0.0.1:{port}"


@pytest.fixture
def stack(broker: object, tmp_path: Path) -> Iterator[tuple[Stack, str]]:
    yield from _stack(broker, tmp_path, TENANTS_ENV)


@pytest.fixture
def budget_stack(broker: object, tmp_path: Path) -> Iterator[tuple[Stack, str]]:
    yield from _stack(broker, tmp_path, BUDGET_ENV)


def _event(workload: str) -> dict[str, Any]:
    return {"alert": "PrometheusRemoteWriteBehind", "severity": "P2",
            "labels": {"cluster": "c1", "namespace": "insight-system", "workload": workload,
                       "component": "prometheus"},
            "metrics": {"times": 1, "first_occur": "2026-12-06T09:00:00Z"},
            "raw": {"mail_subject": "s", "mail_id": f"<{workload}@x>"}}


def _wait_listening(stack: Stack, url: str) -> None:
    deadline = time.monotonic() + 180  # two processes starting on shared CPUs
    while True:
        stack.check()  # a role that died fails here, with its exit code
        try:
            if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "rcaflow api never answered /healthz"
        time.sleep(0.3)


def _throttled(page: str) -> dict[str, float]:
    """``tenant/source/reason`` -> value of rcaflow_ingest_throttled_total."""
    out = {}
    for line in page.splitlines():
        if line.startswith("rcaflow_ingest_throttled_total{"):
            labels, value = line.rsplit(" ", 1)
            fields = dict(part.split("=", 1) for part in labels[labels.index("{") + 1:-1].split(","))
            out["/".join(json.loads(fields[k]) for k in ("tenant", "source", "reason"))] = float(value)
    return out


def _triaged_and_normalized(running: Stack, codec: Codec, admitted: set[str]) -> None:
    """Every admitted alert gets its rca-result, and nothing but them reached ``normalized``."""
    prefix = running.settings.kafka.topic_prefix
    results = TopicReader(running.bootstrap, codec, RCA_RESULT, prefix, alive=running.check)
    try:
        found = results.wait_for(
            lambda rs: admitted <= {r.incident.event.labels.get("workload") for r in rs if isinstance(r, RcaResult)},
            timeout=180, what="an rca-result for each admitted alert")
    finally:
        results.close()
    triaged = {r.incident.event.labels.get("workload") for r in found if isinstance(r, RcaResult)}
    assert triaged == admitted
    # Nothing of a refused post reached the pipeline: the API answered each request after its publish.
    normalized = TopicReader(running.bootstrap, codec, NORMALIZED, prefix)
    try:
        events = normalized.wait_for(lambda rs: len(rs) >= len(admitted), timeout=60, what="the admitted alerts")
        normalized.poll(2.0)
    finally:
        normalized.close()
    assert sorted(str(e.labels.get("workload")) for e in events if isinstance(e, AlertEvent)) == sorted(admitted)


@contextmanager
def _tenant_clients(url: str) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """HTTP clients of acme and globex, each with its own bearer token."""
    acme = httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {TOKENS['acme']}"})
    globex = httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {TOKENS['globex']}"})
    try:
        yield acme, globex
    finally:
        acme.close()
        globex.close()


def test_a_storming_tenant_is_throttled_while_the_other_tenants_alerts_are_triaged(
    stack: tuple[Stack, str], codec: Codec
) -> None:
    running, url = stack
    _wait_listening(running, url)
    with _tenant_clients(url) as (acme, globex):
        # The storm: acme sends 10 alerts, globex one after each of acme's.
        acme_answers, globex_answers = [], []
        for i in range(10):
            acme_answers.append(acme.post("/events", json=_event(f"acme-{i}")))
            globex_answers.append(globex.post("/events", json=_event(f"globex-{i}")))
        hook = acme.post("/webhook", json={"version": "4", "status": "firing", "alerts": [
            {"status": "firing", "labels": {"alertname": "X", "namespace": "insight-system", "pod": f"p{i}"}}
            for i in range(2)]})
        metrics = httpx.get(url + "/metrics", timeout=10).text

    assert [a.status_code for a in acme_answers] == [202] * 3 + [429] * 7, [a.text for a in acme_answers]
    for answer in acme_answers[3:]:
        assert answer.json()["reason"] == "quota_exceeded", answer.text
        assert "tenant acme is over its ingest quota" in answer.json()["detail"]
        assert int(answer.headers["retry-after"]) >= 1
    assert hook.status_code == 429 and hook.json()["reason"] == "quota_exceeded", hook.text
    assert [a.status_code for a in globex_answers] == [202] * 10, [a.text for a in globex_answers]
    # Every deferred alert is counted for acme and its intake; globex has no series at all.
    assert _throttled(metrics) == {"acme/events-api/quota_exceeded": 7.0,
                                   "acme/alertmanager-webhook/quota_exceeded": 2.0}

    # Through the worker: every alert of globex's and acme's three admitted ones are triaged.
    _triaged_and_normalized(running, codec, {f"acme-{i}" for i in range(3)} | {f"globex-{i}" for i in range(10)})


def test_with_the_intake_budget_short_the_tenant_above_its_fair_share_waits_and_the_other_is_admitted(
    budget_stack: tuple[Stack, str], codec: Codec
) -> None:
    running, url = budget_stack
    _wait_listening(running, url)
    with _tenant_clients(url) as (acme, globex):
        # acme storms first and empties the budget (4 alerts), then is above its share (4, alone in the window).
        acme_answers = [acme.post("/events", json=_event(f"acme-{i}")) for i in range(8)]
        # globex arrives at an empty budget: its share is 2 of the window's 4 now that two tenants are active;
        # acme (6 of its 8 alerts are still within its own quota of 600) keeps being refused in between.
        globex_answers, acme_more = [], []
        for i in range(2):
            globex_answers.append(globex.post("/events", json=_event(f"globex-{i}")))
            acme_more.append(acme.post("/events", json=_event(f"acme-more-{i}")))
        hook = acme.post("/webhook", json={"version": "4", "status": "firing", "alerts": [
            {"status": "firing", "labels": {"alertname": "X", "namespace": "insight-system", "pod": f"p{i}"}}
            for i in range(2)]})
        globex_over = globex.post("/events", json=_event("globex-over"))  # a third: above its share too
        metrics = httpx.get(url + "/metrics", timeout=10).text

    assert [a.status_code for a in acme_answers] == [202] * 4 + [429] * 4, [a.text for a in acme_answers]
    for answer in [*acme_answers[4:], *acme_more, hook]:
        assert answer.status_code == 429, answer.text
        assert answer.json()["reason"] == "over_fair_share", answer.text
        assert "tenant acme is above its fair share of the intake budget" in answer.json()["detail"]
        assert int(answer.headers["retry-after"]) >= 1
    assert [a.status_code for a in globex_answers] == [202, 202], [a.text for a in globex_answers]
    assert globex_over.status_code == 429 and globex_over.json()["reason"] == "over_fair_share", globex_over.text
    assert _throttled(metrics) == {"acme/events-api/over_fair_share": 6.0,
                                   "acme/alertmanager-webhook/over_fair_share": 2.0,
                                   "globex/events-api/over_fair_share": 1.0}
    _triaged_and_normalized(running, codec, {f"acme-{i}" for i in range(4)} | {"globex-0", "globex-1"})
