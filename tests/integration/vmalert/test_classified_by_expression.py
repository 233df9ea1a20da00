"""Real rules, real notifications: vmalert evaluates them over a real VictoriaMetrics, a real Alertmanager
sends its webhook, and rcaflow classifies alerts whose names no policy lists by their expression or name.

vmalert is started with ``-external.alert.source`` so its generatorURL carries the rule's PromQL (vmui's
``#/?g0.expr=``), as a deployment that wants rcaflow to see the expression configures it.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from policies import load_policies
from policies.compiled import Rank
from producers.alertmanager import WebhookBody, webhook_to_events
from tests.integration.vmalert.conftest import (
    RunningVictoriaMetrics,
    _answers,
    _binary,
    _free_port,
    _stop,
    _wait_ready,
)

RULES = """\
groups:
  - name: rcaflow-classify
    interval: 1s
    rules:
      # VictoriaMetrics' RowsRejectedOnIngestion, under a name no policy lists.
      - alert: IngestRowsDropped
        expr: sum by (reason) (max_over_time(vm_rows_ignored_total[10m])) > 0
        labels: {severity: warning}
      # The upstream rule under its own name.
      - alert: RowsRejectedOnIngestion
        expr: max_over_time(vm_rows_ignored_total[10m]) > 0
        labels: {severity: warning}
      # A log flood by its log-line metric, under a name no policy lists.
      - alert: NoisyContainer
        expr: sum by (pod) (max_over_time(fluentbit_input_records_total[10m])) > 100
        labels: {severity: warning}
      # A log flood by a Chinese rule name only (DCE 5 users name their rules).
      - alert: 容器日志量过大
        expr: vector(1) > 0
        labels: {severity: warning}
"""


class _Receiver(BaseHTTPRequestHandler):
    bodies: queue.Queue[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        type(self).bodies.put(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def webhook_bodies() -> Iterator[tuple[str, queue.Queue[dict[str, Any]]]]:
    bodies: queue.Queue[dict[str, Any]] = queue.Queue()
    handler = type("Receiver", (_Receiver,), {"bodies": bodies})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/webhook", bodies
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def alertmanager(tmp_path: Path, webhook_bodies: tuple[str, queue.Queue[dict[str, Any]]]) -> Iterator[str]:
    binary = _binary("prometheus-alertmanager", "prometheus-alertmanager")
    config = tmp_path / "alertmanager.yml"
    config.write_text(f"""\
route:
  receiver: rcaflow
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: rcaflow
    webhook_configs:
      - url: {webhook_bodies[0]}
        send_resolved: true
""")
    port = _free_port()
    log = tmp_path / "alertmanager.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.path={tmp_path / 'am-data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
            stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready("alertmanager", lambda: _answers(f"{url}/-/ready"), proc, log)
        yield url
    finally:
        _stop(proc)


@pytest.fixture
def vmalert_to_alertmanager(victoria_metrics: RunningVictoriaMetrics, alertmanager: str,
                            tmp_path: Path) -> Iterator[None]:
    # Samples a minute old: the single-node VictoriaMetrics hides the newest 30 s from queries by default.
    stamp = int((time.time() - 60) * 1000)
    payload = (f'vm_rows_ignored_total{{reason="too_long_label"}} 7 {stamp}\n'
               f'fluentbit_input_records_total{{pod="order-api-0"}} 50000 {stamp}\n')
    httpx.post(f"{victoria_metrics.url}/api/v1/import/prometheus", content=payload, timeout=10).raise_for_status()
    binary = _binary("vmalert")
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES, encoding="utf-8")
    port = _free_port()
    log = tmp_path / "vmalert.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, f"-rule={rules}", f"-datasource.url={victoria_metrics.url}",
             f"-notifier.url={alertmanager}", f"-httpListenAddr=127.0.0.1:{port}",
             f"-external.url=http://127.0.0.1:{port}",
             "-external.alert.source=vmui/#/?g0.expr={{$expr|queryEscape}}"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready("vmalert", lambda: _answers(f"http://127.0.0.1:{port}/api/v1/rules"), proc, log)
        yield
    finally:
        _stop(proc)


def test_real_rules_come_out_classified(
    vmalert_to_alertmanager: None, webhook_bodies: tuple[str, queue.Queue[dict[str, Any]]]
) -> None:
    wanted = {"IngestRowsDropped", "RowsRejectedOnIngestion", "NoisyContainer", "容器日志量过大"}
    policies = load_policies()
    got: dict[str, tuple[str, Rank | None, str]] = {}
    deadline = time.monotonic() + 90
    while set(got) != wanted:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"Alertmanager sent only {sorted(got)} of {sorted(wanted)}")
        try:
            body = webhook_bodies[1].get(timeout=remaining)
        except queue.Empty:
            continue
        for event in webhook_to_events(WebhookBody.model_validate(body), tenant="acme", received_at=datetime.now(UTC)):
            classification = policies.classification(event)
            got[event.alert] = (classification.alert_class, classification.rank,
                                event.annotations.get("generatorURL", ""))
    assert got["IngestRowsDropped"][:2] == ("vminsert_write_errors", Rank.EXPRESSION)
    assert "g0.expr=" in got["IngestRowsDropped"][2]
    assert got["RowsRejectedOnIngestion"][:2] == ("vminsert_write_errors", Rank.NAME)
    assert got["NoisyContainer"][:2] == ("log_flood", Rank.EXPRESSION)
    assert got["容器日志量过大"][:2] == ("log_flood", Rank.PATTERN)
