"""``rcaflow --config F --secrets-dir D run``: every role it starts reads F and D (issue 19).

Nothing comes from the environment here: the API port, the Prometheus the worker measures with and the
IMAP mailbox are only in F, the mailbox password only in D. The API answering on F's port, an incident's
evidence measured by F's Prometheus and a mail from F's mailbox turning into an analysis show all three
roles (and the IMAP producer ``run`` starts) read the same configuration.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import yaml

from schemas.codec import make_codec
from schemas.records import EvidenceStatus, RcaResult, Record, SourceKind
from schemas.topics import RCA_RESULT
from tests.integration.evidence.conftest import RunningPrometheus, _free_port
from tests.integration.flow.helpers import TopicReader
from tests.integration.imap.imap_helpers import Dovecot, make_dovecot

SAMPLES = Path(__file__).resolve().parents[3] / "samples"


def _clean_env() -> dict[str, str]:
    """The test's environment without anything that would configure rcaflow: F and D must do it all."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("RCAFLOW_") and k not in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL")}


def test_run_hands_its_config_file_and_secrets_dir_to_every_role(prometheus: RunningPrometheus,
                                                                 tmp_path: Path) -> None:
    dovecots = make_dovecot(idle=True)
    dovecot = next(dovecots)
    try:
        _run_and_check(prometheus, dovecot, tmp_path)
    finally:
        dovecots.close()


def _run_and_check(prometheus: RunningPrometheus, dovecot: Dovecot, tmp_path: Path) -> None:
    port = _free_port()
    prefix = f"c{uuid.uuid4().hex[:6]}."
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "mailboxes__alerts__password").write_text(dovecot.password)
    config = tmp_path / "rcaflow.yaml"
    config.write_text(yaml.safe_dump({
        "api": {"port": port},
        "evidence": {"prometheus_url": prometheus.url},
        "kafka": {"topic_prefix": prefix, "embedded": {"data_dir": str(tmp_path / "broker")}},
        "worker": {"data_dir": str(tmp_path / "worker"), "metrics_port": 0},
        "executor": {"metrics_port": 0},
        "mailboxes": {"alerts": {"host": "127.0.0.1", "port": dovecot.port,
                                 "tls": "plain", "allow_plain": True, "username": dovecot.user,
                                 "tenant": "default", "poll_interval_seconds": 1}},
    }))
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "--config", str(config), "--secrets-dir", str(secrets), "run"],
            env=_clean_env(), stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 180
        bootstrap = None
        while bootstrap is None and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-4000:]
            found = re.search(r"rcaflow running: Kafka (\S+),", log.read_text())
            bootstrap = found.group(1) if found else None
            time.sleep(0.5)
        assert bootstrap, log.read_text()[-4000:]

        # The API listens on F's port (not the default 8080).
        seed = {"alert": "PrometheusRemoteWriteBehind", "severity": "P2",
                "labels": {"cluster": "HK-DCE5-PLATFORM", "namespace": "insight-system",
                           "pod": "prometheus-insight-agent-0"},
                "metrics": {"times": 1}, "raw": {"mail_subject": "Control Cluster Details"}}
        response = None
        while response is None and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-4000:]
            try:
                response = httpx.post(f"http://127.0.0.1:{port}/events", json=seed, timeout=15)
            except httpx.TransportError:
                time.sleep(0.5)
        assert response is not None and response.status_code == 202, response and response.text
        fingerprint = response.json()["events"][0]["fingerprint"]

        # A mail in F's mailbox (password from D) is ingested by the producer `run` started.
        dovecot.append((SAMPLES / "jenkins_restart.eml").read_bytes())

        def alive() -> None:
            assert proc.poll() is None, log.read_text()[-4000:]

        reader = TopicReader(bootstrap, make_codec(None), RCA_RESULT, prefix, alive=alive)
        try:
            def from_event(records: list[Record]) -> RcaResult | None:
                return next((r for r in records if isinstance(r, RcaResult) and r.incident.fingerprint == fingerprint),
                            None)

            def from_mail(records: list[Record]) -> RcaResult | None:
                return next((r for r in records if isinstance(r, RcaResult)
                             and r.incident.event.source.kind is SourceKind.IMAP), None)

            reader.wait_for(lambda rs: from_event(rs) is not None and from_mail(rs) is not None, timeout=120,
                            what="the analyses of the posted event and of the mail")
            result = from_event(reader.records)
            assert result is not None
        finally:
            reader.close()
        # The worker measured with F's Prometheus: the exporter's queue is 600 s behind.
        lag = next(e for e in result.evidence if "prometheus_remote_storage_highest_timestamp" in e.query)
        assert lag.status is EvidenceStatus.SUCCESS, lag
        assert "= 600" in lag.summary, lag.summary
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    assert code == 0, log.read_text()[-4000:]
