"""`rcaflow api` on a non-loopback address without tenant tokens would let anyone post alerts: it refuses to start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_api_refuses_to_listen_on_all_interfaces_when_no_tenant_has_a_token(broker: object,
                                                                                 tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RCAFLOW_", "KAFKA_"))}
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,  # type: ignore[attr-defined]  # a real cluster answers
        "RCAFLOW_API__HOST": "0.0.0.0",
        "RCAFLOW_API__PORT": str(_free_port()),
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path),
        "XDG_STATE_HOME": str(tmp_path),
    })
    rcaflow = Path(sys.executable).parent / "rcaflow"
    with subprocess.Popen([str(rcaflow), "api"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as process:
        try:
            output, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            raise AssertionError(f"rcaflow api kept running on 0.0.0.0 without tenant tokens:\n{output}") from None
    assert process.returncode != 0, output
    assert "refusing to serve on 0.0.0.0 without tenant tokens" in output, output
