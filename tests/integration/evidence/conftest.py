"""A real Prometheus (the Debian ``prometheus`` package) on a free loopback port, scraping a synthetic exporter.

Without the binary the tests skip, except in CI (``CI=true``), where a missing
binary is a failure: `make test` must install the ``prometheus`` package.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from string import Template

import httpx
import pytest

from tests.integration.evidence.exporter import Exporter

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass(frozen=True)
class RunningPrometheus:
    url: str
    exporter: Exporter


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until(check: str, probe: object, deadline_s: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prometheus exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if callable(probe) and probe():
            return
        time.sleep(0.2)
    pytest.fail(f"prometheus: {check} not reached in {deadline_s}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPrometheus]:
    binary = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if binary is None:
        message = "the prometheus binary is missing: apt-get install -y prometheus"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    work = tmp_path_factory.mktemp("prometheus")
    with Exporter() as exporter:
        config = work / "prometheus.yml"
        template = Template((FIXTURES / "prometheus.yml.tmpl").read_text())
        config.write_text(template.substitute(exporter_port=exporter.port))
        port = _free_port()
        log = work / "prometheus.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
                stdout=out, stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        def has_rates() -> bool:
            # rate() needs two scrapes in its window: wait until the histogram has a rate.
            answer = httpx.post(f"{url}/api/v1/query", timeout=2,
                                data={"query": "rate(etcd_disk_wal_fsync_duration_seconds_count[1m])"}).json()
            return bool(answer.get("data", {}).get("result"))

        try:
            _wait_until("ready", ready, 60, proc, log)
            _wait_until("two scrapes", has_rates, 60, proc, log)
            yield RunningPrometheus(url, exporter)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
