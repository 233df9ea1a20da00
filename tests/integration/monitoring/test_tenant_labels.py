"""The tenant on the metrics of a running stack (api + worker on the embedded Kafka): a configured tenant by
name, any other tenant as the one bounded value ``_other``, however many a sender invents. (The executor's
tenant label: tests/integration/monitoring/test_executor_metrics.py.)"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from producers.publisher import KafkaPublisher
from producers.seed_event import SeedEvent, seed_to_event
from schemas.codec import make_codec
from schemas.tenant_label import OTHER_TENANT
from schemas.topics import NORMALIZED
from streams.broker.base import free_loopback_port
from streams.wiring.supervisor import Stack
from tests.integration.flow.conftest import stack_for

TOKENS = {"acme": "acme-metrics-token", "globex": "globex-metrics-token"}
SEED = {
    "alert": "PrometheusRemoteWriteBehind", "severity": "P2",
    "labels": {"cluster": "c1", "namespace": "team-a", "workload": "prometheus-0", "component": "prometheus"},
    "metrics": {"times": 1, "first_occur": "2026-12-06T09:00:00Z"},
    "raw": {"mail_subject": "s", "mail_id": "<1@x>"},
}
#: Tenants nobody configured, as a hostile writer to the normalized topic would invent them.
INVENTED = [f"intruder-{uuid.uuid4().hex[:6]}" for _ in range(3)]
T = TypeVar("T")


def _tenant_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for name, namespace in (("acme", "team-a"), ("globex", "team-b")):
        prefix = f"RCAFLOW_TENANTS__{name.upper()}__"
        env |= {f"{prefix}TOKEN": TOKENS[name], f"{prefix}NAMESPACES": json.dumps([namespace]),
                f"{prefix}SENDERS": json.dumps([f"*@{name}.test"])}
    return env


@pytest.fixture
def stack(broker: object, tmp_path: Path) -> Iterator[tuple[Stack, dict[str, str]]]:
    ports = {role: free_loopback_port() for role in ("api", "worker")}
    running = stack_for(broker.bootstrap, tmp_path, ("api", "worker"),  # type: ignore[attr-defined]
                        tenants_env=_tenant_env(),
                        extra_env={"RCAFLOW_API__PORT": str(ports["api"]),
                                   "RCAFLOW_WORKER__METRICS_PORT": str(ports["worker"])})
    with running:
        yield running, {role: f"http://127.0.0.1:{port}" for role, port in ports.items()}


def _get(url: str) -> str | None:
    try:
        answer = httpx.get(url, timeout=5)
    except httpx.TransportError:
        return None
    return answer.text if answer.status_code == 200 else None


def _series(page: str, name: str) -> list[str]:
    return [line for line in page.splitlines() if line.startswith(name + "{")]


def _wait(stack: Stack, what: str, ready: Callable[[], T | None], timeout: float = 180.0) -> T:
    deadline = time.monotonic() + timeout  # processes starting on two shared CPUs
    while time.monotonic() < deadline:
        stack.check()  # a role that died fails here, with its exit code
        found = ready()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _post_as_acme(url: str) -> bool | None:
    try:
        answer = httpx.post(url + "/events", json=SEED, headers={"Authorization": f"Bearer {TOKENS['acme']}"},
                            timeout=10)
    except httpx.TransportError:
        return None  # not listening yet
    assert answer.status_code in (202, 503), answer.text  # 503: the API's producer is not connected yet
    return answer.status_code == 202 or None


def test_metrics_carry_the_configured_tenant_and_bound_every_other(stack: tuple[Stack, dict[str, str]]) -> None:
    running, urls = stack
    # acme posts through the API, as any sender with its token.
    _wait(running, "the API to take acme's event", lambda: _post_as_acme(urls["api"]))
    # Records of tenants nobody configured, written straight to the normalized topic.
    publisher = KafkaPublisher(running.bootstrap, make_codec(None), running.settings.kafka.topic_prefix)
    try:
        for tenant in INVENTED:
            event = seed_to_event(SeedEvent.model_validate(SEED), tenant=tenant, received_at=datetime.now(UTC),
                                  request_id=uuid.uuid4().hex)
            publisher.publish_sync(NORMALIZED, f"{tenant}:{event.fingerprint}", event)
    finally:
        publisher.close_sync()

    def dedup_done() -> str | None:
        page = _get(urls["worker"] + "/metrics")
        if page is None:
            return None
        done = [s for s in _series(page, "rcaflow_stage_processed_total") if 'stage="dedup"' in s]
        # Counted under whatever label the invented tenants got; what that label is, is asserted below.
        others = sum(float(s.rsplit(" ", 1)[1]) for s in done if 'tenant="acme"' not in s)
        if any('tenant="acme"' in s for s in done) and others >= len(INVENTED):
            return page
        return None

    worker = _wait(running, "dedup to finish acme's event and the invented tenants' records", dedup_done)
    api = _get(urls["api"] + "/metrics") or ""

    # The configured tenant by name, on the stage counts, timings and waits of the worker and on the API's.
    for name in ("rcaflow_stage_latency_seconds_count", "rcaflow_stage_wait_seconds_count"):
        assert any('stage="dedup"' in s and 'tenant="acme"' in s for s in _series(worker, name)), name
    assert any('stage="api_events"' in s and 'tenant="acme"' in s
               for s in _series(api, "rcaflow_stage_processed_total")), _series(api, "rcaflow_stage_processed_total")
    # Every tenant nobody configured is one bounded value: no series names them, on any process.
    for page in (worker, api):
        assert not any(tenant in page for tenant in INVENTED)
    tenants = {value for page in (worker, api) for value in re.findall(r'tenant="([^"]*)"', page)}
    assert tenants <= {"acme", "globex", OTHER_TENANT}, tenants
    assert any('stage="dedup"' in s and f'tenant="{OTHER_TENANT}"' in s
               for s in _series(worker, "rcaflow_stage_wait_seconds_count"))
    # The pending-approvals gauge names each configured tenant, even with nothing waiting.
    assert {'tenant="acme"', 'tenant="globex"'} <= {
        m.group(0) for m in re.finditer(r'tenant="[^"]*"', "\n".join(_series(api, "rcaflow_pending_approvals")))}
