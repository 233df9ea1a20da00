"""`rcaflow worker` on a fresh machine: its state directory's parents do not exist yet."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.flow.conftest import DECISION_KEY


def test_the_worker_creates_its_state_directory_on_a_fresh_home(broker: object, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCAFLOW_")}
    env.update({
        "HOME": str(home),
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,  # type: ignore[attr-defined]
        "RCAFLOW_KAFKA__TOPIC_PREFIX": f"h{uuid.uuid4().hex[:8]}.",
        "RCAFLOW_WORKER__METRICS_PORT": "0",
        "RCAFLOW_SECURITY__DECISION_KEY": DECISION_KEY,
    })
    state = home / ".local" / "state" / "rcaflow" / "worker"
    worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and worker.poll() is None and not any(state.glob("*")):
            time.sleep(0.5)
        alive = worker.poll() is None
    finally:
        worker.terminate()
        try:
            output = worker.communicate(timeout=30)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            worker.kill()
            output = worker.communicate()[0].decode(errors="replace")
    assert alive, f"the worker died on a fresh home:\n{output[-3000:]}"
    assert any(state.glob("*")), f"no worker state under {state}:\n{output[-3000:]}"


pytestmark = pytest.mark.integration
