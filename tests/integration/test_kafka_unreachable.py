"""No broker where KAFKA_BOOTSTRAP_SERVERS points: each command says so in one line and exits 2, never floods.

One-shot commands stop at once on a refused connection (``check_cluster(fail_fast=True)``); the long-running
processes say it once as a warning, keep trying for their start-up patience (a supervisor may restart them while
the broker restarts too), then stop with the same kind of line. Wrong credentials: tests/integration/security.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: A guard against a command that retries forever, not a timing goal.
HANG_GUARD_S = 120.0

#: One-shot commands: they read or copy records and exit.
ONE_SHOT = {
    "stats": ["stats", "--since", "1d"],
    "audit verify": ["audit", "verify"],
    "topic read": ["topic", "read", "actions"],
    "topic read --decode": ["topic", "read", "actions", "--decode"],
    "replay": ["replay", "--since", "1d", "--limit", "1"],
    "rollback": ["rollback", "a-1", "--by", "alice"],
    "demo": ["demo"],
    "ingest imap --once": ["ingest", "imap", "--once"],
}
#: Long-running processes: patient at start-up, then the same one line.
LONG_RUNNING = {
    "api": ["api"],
    "worker": ["worker"],
    "executor": ["executor"],
    "ingest imap": ["ingest", "imap", "--mailbox", "m"],
}


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("RCAFLOW_") or k == "RCAFLOW_TEST_BROKER"}
    return {**inherited, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_closed_port()}",
            "RCAFLOW_WORKER__DATA_DIR": str(tmp_path / "worker"), "RCAFLOW_WORKER__METRICS_PORT": "0",
            "RCAFLOW_API__PORT": str(_closed_port()), "RCAFLOW_LOG_LEVEL": "INFO",
            "RCAFLOW_SECURITY__DECISION_KEY": "d" * 40, "RCAFLOW_SECURITY__APPROVAL_KEY": "a" * 40,
            # a mailbox for `ingest imap --once`: Kafka is checked before the mail server is reached
            "RCAFLOW_MAILBOXES__M__HOST": "127.0.0.1", "RCAFLOW_MAILBOXES__M__USERNAME": "u",
            "RCAFLOW_MAILBOXES__M__PASSWORD": "p", "RCAFLOW_MAILBOXES__M__TENANT": "default"}


def _run_all(commands: dict[str, list[str]], env: dict[str, str]) -> dict[str, tuple[int, str]]:
    started = {name: subprocess.Popen([sys.executable, "-m", "streams.cli", *args], env=env, cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name, args in commands.items()}
    outcomes = {}
    try:
        for name, proc in started.items():
            _out, err = proc.communicate(timeout=HANG_GUARD_S)
            outcomes[name] = (proc.returncode, err)
    finally:
        for proc in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return outcomes


def test_one_shot_commands_stop_with_one_line_naming_the_address(env: dict[str, str]) -> None:
    where = env["KAFKA_BOOTSTRAP_SERVERS"]
    for name, (code, err) in _run_all(ONE_SHOT, env).items():
        assert code == 2, f"{name}: exit {code}\n{err[-3000:]}"
        lines = err.splitlines()
        assert len(lines) == 1, f"{name} said {len(lines)} lines:\n{err[-3000:]}"
        assert f"kafka: no broker at {where} (PLAINTEXT) (Connect to ipv4#{where} failed: Connection refused)" \
            in lines[0], f"{name}: {lines[0]}"
        assert "|FAIL|" not in err and "%3|" not in err, f"{name}: raw librdkafka lines\n{err[-3000:]}"


def test_long_running_processes_warn_once_then_stop_with_one_line(env: dict[str, str]) -> None:
    where = env["KAFKA_BOOTSTRAP_SERVERS"]
    for name, (code, err) in _run_all(LONG_RUNNING, env).items():
        assert code == 2, f"{name}: exit {code}\n{err[-3000:]}"
        lines = err.splitlines()
        assert len(lines) <= 3, f"{name} flooded stderr ({len(lines)} lines):\n{err[-3000:]}"
        warned = [line for line in lines if f"kafka: no broker at {where}" in line and "waiting up to" in line]
        assert len(warned) == 1, f"{name}:\n{err}"
        assert lines[-1].startswith(f"rcaflow: kafka: no broker answered at {where}"), f"{name}:\n{err}"
        assert "Traceback" not in err
        assert "|FAIL|" not in err and "%3|" not in err, f"{name}: raw librdkafka lines\n{err[-3000:]}"
