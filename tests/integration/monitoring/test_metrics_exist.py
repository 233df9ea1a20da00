"""Every metric the dashboard and the alert rules query is served on /metrics of a running stack: the api, worker
and executor processes on the real embedded Kafka, and ``rcaflow ingest imap`` on a real dovecot. Each process
also serves ``rcaflow_build_info``."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.broker.base import free_loopback_port
from streams.wiring.supervisor import Stack
from tests.integration.flow.conftest import stack_for
from tests.integration.imap.imap_helpers import Dovecot, make_dovecot
from tests.support.monitoring import queried_metrics

#: Queried metrics served by processes this test does not start, each with the reason. Keep it short: a name
#: here is checked only by the unit tests of the process that serves it.
SERVED_ELSEWHERE = {
    "rcaflow_kb_mtta_seconds": "rcaflow kb run: needs Elasticsearch (tests/integration/kb)",
    "rcaflow_kb_mttr_seconds": "rcaflow kb run: needs Elasticsearch (tests/integration/kb)",
    "rcaflow_kb_action_adoption_ratio": "rcaflow kb run: needs Elasticsearch (tests/integration/kb)",
    "rcaflow_kb_commit_wait_seconds":
        "rcaflow kb run: needs Elasticsearch (tests/integration/flow/test_kb_commit_stall.py)",
    "rcaflow_analytics_commit_wait_seconds": "rcaflow kb analytics: needs Elasticsearch (tests/integration/kb)",
    "rcaflow_msgraph_subscription_expiry_timestamp_seconds":
        "rcaflow api with msgraph configured: needs Microsoft Graph (tests/unit/producers/msgraph)",
    "rcaflow_msgraph_bodies_fetched_total":
        "rcaflow api with msgraph configured: needs Microsoft Graph (tests/unit/producers/msgraph)",
}
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("_sum", "_count", "_created"), "gauge": (), "info": ("_info",)}


def exposed_names(text: str) -> set[str]:
    """Every series name a /metrics page declares, with the suffixes its families' types imply."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def missing_metrics(exposed: set[str]) -> dict[str, set[str]]:
    """Queried metrics that no started process serves (besides the documented :data:`SERVED_ELSEWHERE`)."""
    return {name: where for name, where in queried_metrics().items()
            if name not in exposed and name not in SERVED_ELSEWHERE}


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    yield from make_dovecot()


@pytest.fixture
def running_stack(broker: object, tmp_path: Path, dovecot: Dovecot) -> Iterator[tuple[Stack, dict[str, str]]]:
    ports = {role: free_loopback_port() for role in ("api", "worker", "executor", "ingest")}
    stack = stack_for(broker.bootstrap, tmp_path, ("api", "worker", "executor"),  # type: ignore[attr-defined]
                      # A quota no test reaches: with one configured, the API serves rcaflow_ingest_throttled_total.
                      extra_env={"RCAFLOW_TENANTS__DEFAULT__INGEST__ALERTS_PER_MINUTE": "100000",
                                 "RCAFLOW_API__PORT": str(ports["api"]),
                                 "RCAFLOW_WORKER__METRICS_PORT": str(ports["worker"]),
                                 "RCAFLOW_EXECUTOR__METRICS_PORT": str(ports["executor"])})
    with stack:
        box = "RCAFLOW_MAILBOXES__OPS__"
        env = {**stack.base_env, "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap, f"{box}HOST": "127.0.0.1",
               f"{box}PORT": str(dovecot.port), f"{box}TLS": "plain", f"{box}ALLOW_PLAIN": "true",
               f"{box}USERNAME": dovecot.user, f"{box}PASSWORD": dovecot.password, f"{box}TENANT": "default"}
        with (tmp_path / "logs" / "ingest.log").open("ab") as log:
            stack.children["ingest"] = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "ingest", "imap", "--mailbox", "ops",
                 "--metrics-port", str(ports["ingest"])], env=env, stdout=log, stderr=subprocess.STDOUT)
        yield stack, {role: f"http://127.0.0.1:{port}/metrics" for role, port in ports.items()}


def scrape(urls: dict[str, str]) -> dict[str, str]:
    pages = {}
    for role, url in urls.items():
        try:
            answer = httpx.get(url, timeout=5)
        except httpx.TransportError:
            continue
        if answer.status_code == 200:
            pages[role] = answer.text
    return pages


def test_every_queried_metric_is_served_by_the_running_stack(running_stack: tuple[Stack, dict[str, str]]) -> None:
    stack, urls = running_stack
    deadline = time.monotonic() + 180  # four processes starting on two shared CPUs
    pages: dict[str, str] = {}
    while time.monotonic() < deadline:
        stack.check()  # a role that died fails here, with its exit code
        pages = scrape(urls)
        exposed = set().union(*(exposed_names(p) for p in pages.values())) if pages else set()
        # The IMAP gauges appear once the producer has logged in; the lag gauges once a group committed.
        if len(pages) == len(urls) and not missing_metrics(exposed) and "rcaflow_imap_connected" in exposed:
            break
        time.sleep(0.5)
    assert sorted(pages) == sorted(urls), f"no /metrics from {sorted(set(urls) - set(pages))}"
    exposed = set().union(*(exposed_names(p) for p in pages.values()))
    assert missing_metrics(exposed) == {}, "queried by deploy/monitoring but served by no process"
    for role, page in pages.items():
        assert "rcaflow_build_info{" in page, f"{role} serves no rcaflow_build_info"
    # The allow-list stays honest: each name in it is queried and really is not served here.
    queried = queried_metrics()
    assert all(name in queried and name not in exposed for name in SERVED_ELSEWHERE), SERVED_ELSEWHERE
