"""The two things a new user does first: `rcaflow run` then POST /events, and `rcaflow demo`."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from schemas.codec import make_codec
from schemas.records import RcaResult
from schemas.topics import RCA_RESULT
from tests.integration.flow.helpers import TopicReader

NINE_CLASSES = {
    "jenkins_restart", "vmalert_config_reload_failure", "prometheus_remote_write_behind",
    "prometheus_remote_write_desired_shards", "prometheus_remote_storage_failures", "log_flood",
    "rule_evaluation_failures", "vminsert_write_errors", "etcd_latency",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update({
        "RCAFLOW_WORKER__DATA_DIR": str(tmp / "worker"),
        "RCAFLOW_WORKER__METRICS_PORT": "0",
        "RCAFLOW_EXECUTOR__METRICS_PORT": "0",
        "RCAFLOW_KAFKA__EMBEDDED__DATA_DIR": str(tmp / "broker"),
    })
    env.update(extra)
    return env


def _processes_using(path: Path) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def test_run_starts_an_embedded_broker_serves_events_and_stops_cleanly(tmp_path: Path) -> None:
    port = _free_port()
    prefix = f"r{uuid.uuid4().hex[:6]}."
    log = tmp_path / "run.log"
    env = _env(tmp_path, RCAFLOW_API__PORT=str(port), RCAFLOW_KAFKA__TOPIC_PREFIX=prefix)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "run"], env=env, stdout=out, stderr=out)
    try:
        bootstrap = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and bootstrap is None:
            assert proc.poll() is None, log.read_text()
            found = re.search(r"rcaflow running: Kafka (\S+),", log.read_text())
            bootstrap = found.group(1) if found else None
            time.sleep(0.5)
        assert bootstrap, log.read_text()
        seed = {"alert": "JenkinsRestarted", "severity": "P3",
                "labels": {"cluster": "HK-DCE5-PLATFORM", "namespace": "amamba-system", "workload": "amamba-jenkins-0"},
                "metrics": {"times": 1}, "raw": {"mail_subject": "Control Cluster Details"}}
        response = None
        while time.monotonic() < deadline:
            try:
                response = httpx.post(f"http://127.0.0.1:{port}/events", json=seed, timeout=15)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert response is not None and response.status_code == 202, response and response.text
        fingerprint = response.json()["events"][0]["fingerprint"]
        reader = TopicReader(bootstrap, make_codec(None), RCA_RESULT, prefix)
        reader.wait_for(
            lambda rs: any(isinstance(r, RcaResult) and r.incident.fingerprint == fingerprint for r in rs),
            timeout=90, what="the RCA result of the posted event",
        )
        reader.close()
        # The line a new user waits for: everything answers, and where the CLI in another shell finds the broker.
        while time.monotonic() < deadline and "rcaflow ready:" not in log.read_text():
            time.sleep(0.5)
        assert f"export KAFKA_BOOTSTRAP_SERVERS={bootstrap}" in log.read_text(), log.read_text()[-3000:]
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    assert code == 0, log.read_text()[-3000:]
    assert not _processes_using(tmp_path / "broker"), "the embedded broker outlived `rcaflow run`"


def _demo_rows(env: dict[str, str], *args: str) -> list[dict[str, object]]:
    done = subprocess.run([sys.executable, "-m", "streams.cli", "demo", "--json", *args], env=env,
                          capture_output=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]
    return [json.loads(line) for line in done.stdout.decode().splitlines() if line.strip()]


def test_demo_prints_every_class_then_shows_dedup(broker: object, tmp_path: Path) -> None:
    env = _env(tmp_path, KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap)  # type: ignore[attr-defined]
    rows = _demo_rows(env)
    first = [r for r in rows if r["round"] == 1]
    second = [r for r in rows if r["round"] == 2]
    assert {r["alert_class"] for r in first} >= NINE_CLASSES
    for row in rows:
        assert {"subject", "alert", "alert_class", "incident_id", "diagnosis", "actions"} <= set(row)
        assert not row["error"], row
    analysed = [r for r in first if not r["suppressed"] and r["incident_id"]]
    assert analysed and all(r["actions"] for r in analysed)
    states = {a["state"] for r in analysed for a in r["actions"]}  # type: ignore[attr-defined]
    assert {"dry-run", "awaiting_approval"} <= states and "succeeded" not in states  # the demo acts on nothing
    # The second round is all repeats: nothing new is analysed or run.
    assert second and all(r["suppressed"] or not r["incident_id"] for r in second)
    # On a real cluster the demo leaves nothing behind: its topics and the worker's internal ones are deleted.
    from confluent_kafka.admin import AdminClient

    topics = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10).topics  # type: ignore[attr-defined]
    assert sorted(t for t in topics if t.startswith("demo-") or t.startswith("decide-demo-")) == []


def test_a_demo_that_fails_still_leaves_no_topics_behind(broker: object, tmp_path: Path) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    prefix = f"d{uuid.uuid4().hex[:6]}."  # the demo's run prefix goes under it: only this test's topics match
    env = _env(tmp_path, KAFKA_BOOTSTRAP_SERVERS=bootstrap, RCAFLOW_KAFKA__TOPIC_PREFIX=prefix)
    # Results cannot arrive in 1 s: the demo gives up with an error after its topics and roles were made.
    done = subprocess.run([sys.executable, "-m", "streams.cli", "demo", "--rounds", "1", "--timeout", "1"],
                          env=env, capture_output=True, timeout=600, check=False)
    err = done.stderr.decode(errors="replace")
    assert done.returncode != 0 and "timed out" in err, err[-3000:]
    deleted = re.search(r"demo: deleted (\d+) topic\(s\) under '(\S+)'", err)
    assert deleted and int(deleted.group(1)) > 0 and deleted.group(2).startswith(f"{prefix}demo-"), err[-3000:]
    from confluent_kafka.admin import AdminClient

    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    assert sorted(t for t in topics if t.startswith(prefix) or t.startswith(f"decide-{prefix}")) == []


@pytest.mark.tansu
def test_demo_smoke_on_tansu(tmp_path: Path) -> None:
    rows = _demo_rows(_env(tmp_path, RCAFLOW_KAFKA__EMBEDDED__PREFER="tansu"), "--rounds", "1")
    assert {r["alert_class"] for r in rows} >= NINE_CLASSES
    assert not [r for r in rows if r["error"]]
    # Every auto-approved action is seen finished: its executor records follow its approval.
    analysed = [r for r in rows if not r["suppressed"] and r["incident_id"]]
    assert analysed and all(r["actions"] for r in analysed)
    states = {a["state"] for r in analysed for a in r["actions"]}  # type: ignore[attr-defined]
    assert {"dry-run", "awaiting_approval"} <= states and "succeeded" not in states  # the demo acts on nothing
