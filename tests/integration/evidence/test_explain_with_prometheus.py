"""`rcaflow explain` on an etcd alert mail, with a real Prometheus holding slow-fsync series."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.evidence.conftest import RunningPrometheus

ROOT = Path(__file__).resolve().parents[3]


def test_explain_measures_the_evidence_and_names_the_slow_disk(prometheus: RunningPrometheus) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RCAFLOW_", "QWEN_"))}
    env["RCAFLOW_EVIDENCE__PROMETHEUS_URL"] = prometheus.url
    env["RCAFLOW_TENANTS__DEFAULT__NAMESPACES"] = '["*"]'  # an unscoped tenant is read-only: nothing would run
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "explain", "--json", str(ROOT / "samples" / "etcd_latency.eml")],
        env=env, capture_output=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    firing = [json.loads(line) for line in done.stdout.decode().splitlines()
              if json.loads(line)["status"] == "firing"]
    report = firing[0]
    fsync = next(e for e in report["evidence"] if "etcd_disk_wal_fsync" in e["query"])
    assert fsync["status"] == "success", fsync
    assert "slow for its WAL" in report["diagnosis"]
    # Nothing ran: explain only says what would happen.
    assert {a["would"] for a in report["actions"]} <= {"would run", "would wait for approval", "refused by the policy"}
    # The measured cause is the disk: the policy's `not_for` keeps a member restart (which cannot fix it) out.
    assert not any(a["name"] == "restart_etcd_member" for a in report["actions"]), report["actions"]
