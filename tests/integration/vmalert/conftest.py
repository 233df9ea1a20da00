"""Real reloadable servers on free loopback ports: vmalert with a single-node VictoriaMetrics, and Prometheus.

VictoriaMetrics (Debian ``victoria-metrics``) is the datasource and
remote-write target (one per session); each test gets its own vmalert (or
Prometheus, Debian ``prometheus``, with the lifecycle API) and its own rules
file, so reload counters and loaded groups start from a known state. Without
the binaries the tests skip, except in CI (``CI=true``), where that is a
failure: `.ci/system-deps.sh` installs the packages.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

GOOD_RULES = """\
groups:
  - name: rcaflow-base
    interval: 1s
    rules:
      - record: rcaflow:up:count
        expr: count(up)
"""


def _binary(name: str, package: str = "victoria-metrics") -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if found is None:
        message = f"the {name} binary is missing: apt-get install -y {package}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_ready(what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if ready():
            return
        time.sleep(0.1)
    pytest.fail(f"{what} did not answer within 60s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@dataclass(frozen=True)
class RunningVictoriaMetrics:
    url: str


@dataclass(frozen=True)
class RunningRuler:
    """vmalert or Prometheus: both serve the loaded rule groups at /api/v1/rules and reload from ``rules``."""

    url: str
    rules: Path
    log: Path

    def write_rules(self, text: str) -> None:
        self.rules.write_text(text)

    def group_names(self) -> list[str]:
        answer = httpx.get(f"{self.url}/api/v1/rules", timeout=5).json()
        return [group["name"] for group in answer["data"]["groups"]]

    def metric(self, name: str) -> float:
        for line in httpx.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            metric, _, value = line.partition(" ")
            if metric == name:
                return float(value)
        raise AssertionError(f"{self.url} does not expose {name}")



@pytest.fixture(scope="session")
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningVictoriaMetrics]:
    binary = _binary("victoria-metrics")
    work = tmp_path_factory.mktemp("victoria-metrics")
    port = _free_port()
    log = work / "victoria-metrics.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, f"-storageDataPath={work / 'data'}", f"-httpListenAddr=127.0.0.1:{port}",
             "-retentionPeriod=1d", "-loggerLevel=WARN"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready("victoria-metrics", lambda: _answers(f"{url}/health"), proc, log)
        yield RunningVictoriaMetrics(url)
    finally:
        _stop(proc)


@pytest.fixture
def vmalert(victoria_metrics: RunningVictoriaMetrics, tmp_path: Path) -> Iterator[RunningRuler]:
    """vmalert 1.79 has no -notifier.blackhole: alerts go to a closed loopback port and are only logged."""
    binary = _binary("vmalert")
    rules = tmp_path / "rules.yml"
    rules.write_text(GOOD_RULES)
    port = _free_port()
    log = tmp_path / "vmalert.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, f"-rule={rules}", f"-datasource.url={victoria_metrics.url}",
             f"-remoteWrite.url={victoria_metrics.url}", f"-notifier.url=http://127.0.0.1:{_free_port()}",
             f"-httpListenAddr=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready("vmalert", lambda: _answers(f"{url}/api/v1/rules"), proc, log)
        yield RunningRuler(url, rules, log)
    finally:
        _stop(proc)


@pytest.fixture
def prometheus_ruler(tmp_path: Path) -> Iterator[RunningRuler]:
    """Prometheus with --web.enable-lifecycle (else /-/reload is 403) and one rules file, no scrape targets."""
    binary = _binary("prometheus", "prometheus")
    rules = tmp_path / "rules.yml"
    rules.write_text(GOOD_RULES)
    config = tmp_path / "prometheus.yml"
    config.write_text(f"global:\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\n")
    port = _free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready("prometheus", lambda: _answers(f"{url}/-/ready"), proc, log)
        yield RunningRuler(url, rules, log)
    finally:
        _stop(proc)
