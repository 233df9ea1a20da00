"""rcaflow on a Kafka that wants a login (SASL_PLAINTEXT, SCRAM-SHA-512): every client logs in, or says why not.

With the credentials, the real processes (`rcaflow api`, `worker`, `executor` as `rcaflow run` starts them)
take a mail to an executed dry-run action and the operator tools read the secured topics. Without them, or
with a wrong password, each process and tool stops at once with exit code 2 and one line naming the broker,
the protocol and the user, never the password.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from producers.publisher import KafkaPublisher
from schemas.codec import Codec, make_codec
from schemas.records import ActionEvent, ActionState, RawMail, SourceKind
from schemas.topics import ACTIONS, RAW_MAIL
from streams.broker import EmbeddedBroker, ScramUser
from streams.ops.topic_read import read_to_end
from streams.settings import KafkaSecuritySettings, KafkaSettings, Settings, client_config, producer_config
from streams.wiring.supervisor import Stack

#: A guard against a process that retries forever, not a timing goal.
HANG_GUARD_S = 90.0
ROOT = Path(__file__).resolve().parents[3]
_DECISION_KEY = secrets.token_hex(32)
TENANT = "acme"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _security(user: str | None, password: str | None) -> dict[str, str]:
    """The environment an operator sets for a secured cluster; no user means an unauthenticated client."""
    if user is None or password is None:
        return {}
    return {
        "RCAFLOW_KAFKA__SECURITY__PROTOCOL": "SASL_PLAINTEXT",
        "RCAFLOW_KAFKA__SECURITY__SASL_MECHANISM": "SCRAM-SHA-512",
        "RCAFLOW_KAFKA__SECURITY__USERNAME": user,
        "RCAFLOW_KAFKA__SECURITY__PASSWORD": password,
    }


def _env(bootstrap: str, prefix: str, tmp: Path, security: dict[str, str]) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("RCAFLOW_KAFKA__SECURITY__")}
    return {
        **inherited,
        **security,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "RCAFLOW_KAFKA__TOPIC_PREFIX": prefix,
        "RCAFLOW_WORKER__DATA_DIR": str(tmp / "worker"),
        "RCAFLOW_WORKER__METRICS_PORT": "0",
        "RCAFLOW_EXECUTOR__METRICS_PORT": "0",
        "RCAFLOW_API__PORT": str(_free_port()),
        "RCAFLOW_LOG_LEVEL": "WARNING",
        # The worker signs what it approves and the executor runs only what verifies (not this test's subject).
        "RCAFLOW_SECURITY__DECISION_KEY": _DECISION_KEY,
        # A tenant may act in every namespace, so the triage's read-only diagnostics go ahead.
        "RCAFLOW_TENANTS": json.dumps({TENANT: {"namespaces": ["*"]}}),
    }


@dataclass
class Secured:
    stack: Stack
    env: dict[str, str]
    kafka: KafkaSettings

    @property
    def client(self) -> dict[str, str | int]:
        return client_config(self.kafka, self.stack.bootstrap)


@pytest.fixture(scope="module")
def secured(sasl_broker: EmbeddedBroker, scram_user: ScramUser,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """api + worker + executor as `rcaflow run` starts them (subprocesses of the CLI), logged in."""
    tmp = tmp_path_factory.mktemp("secured")
    prefix = f"s{uuid.uuid4().hex[:8]}."
    env = _env(sasl_broker.bootstrap, prefix, tmp, _security(scram_user.username, scram_user.password))
    security = KafkaSecuritySettings.model_validate({"protocol": "SASL_PLAINTEXT", "username": scram_user.username,
                                                     "password": scram_user.password})
    kafka = KafkaSettings(topic_prefix=prefix, security=security)
    settings = Settings(kafka_bootstrap_servers=sasl_broker.bootstrap, kafka=kafka)
    with Stack(settings, roles=("api", "worker", "executor"), env=env, log_dir=tmp / "logs") as stack:
        yield Secured(stack, env, kafka)


def _rcaflow(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=HANG_GUARD_S, check=False)


def _until(found: Callable[[], bool], what: str, alive: Callable[[], None], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive()  # a role that died fails the test at once, with its exit code and its one line
        if found():
            return
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}")


def test_with_credentials_a_mail_becomes_an_executed_dry_run_action(secured: Secured, samples_dir: Path) -> None:
    codec: Codec = make_codec(None)
    prefix = secured.kafka.topic_prefix
    tenant = TENANT
    publisher = KafkaPublisher(secured.stack.bootstrap, codec, prefix, producer_config(secured.kafka))
    mail = RawMail(tenant=tenant, message_id=f"<{uuid.uuid4().hex}@t>", mailbox="t", source=SourceKind.FILE,
                   received_at=datetime.now(UTC), raw=(samples_dir / "jenkins_restart.eml").read_bytes())
    publisher.publish_sync(RAW_MAIL, f"{tenant}:m", mail)
    publisher.close_sync()

    topic = ACTIONS.full_name(prefix)
    executed: list[ActionEvent] = []

    def action_executed() -> bool:
        for _p, _o, value in read_to_end(secured.stack.bootstrap, topic, extra=secured.client, timeout=30):
            action = codec.decode(value, ActionEvent, topic=topic)
            if action.tenant == tenant and action.state is ActionState.SUCCEEDED:
                executed.append(action)
        return bool(executed)

    _until(action_executed, "the executor's succeeded record", secured.stack.check)
    assert executed[0].dry_run, "the executor ran a real action"

    # The API's own consumers (the actions feed behind approvals and /tools) read the secured topic too.
    api = f"http://127.0.0.1:{secured.env['RCAFLOW_API__PORT']}"

    def api_ready() -> bool:
        try:
            return httpx.get(f"{api}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    _until(api_ready, "the API's /readyz", secured.stack.check)


def test_with_credentials_the_operator_tools_read_the_secured_topics(secured: Secured) -> None:
    stats = _rcaflow(["stats", "--since", "1d", "--json"], secured.env)
    assert stats.returncode == 0, stats.stderr
    assert "jenkins_restart" in json.loads(stats.stdout)["classes"]

    audit = _rcaflow(["audit", "verify"], secured.env)
    assert audit.returncode == 0, audit.stderr + audit.stdout

    replay = _rcaflow(["replay", "--since", "1d", "--limit", "1", "--json", "--timeout", "120"], secured.env)
    assert replay.returncode == 0, replay.stderr[-3000:]
    rows = [json.loads(line) for line in replay.stdout.splitlines() if line.startswith("{")]
    assert rows and rows[0].get("diagnosis"), replay.stdout


#: Every process and tool that talks to Kafka, as an operator starts it.
COMMANDS = {
    "run": ["run"],
    "worker": ["worker"],
    "executor": ["executor"],
    "api": ["api"],
    "stats": ["stats", "--since", "1d"],
    "audit verify": ["audit", "verify"],
    "replay": ["replay", "--since", "1d", "--limit", "1"],
    "topic read": ["topic", "read", "actions"],
    "demo": ["demo"],
}


@pytest.mark.parametrize("credentials", ["none", "wrong password"])
def test_without_valid_credentials_every_process_and_tool_stops_with_one_line(
    sasl_broker: EmbeddedBroker, scram_user: ScramUser, tmp_path: Path, credentials: str
) -> None:
    wrong = f"not-{scram_user.password}"
    security = {} if credentials == "none" else _security(scram_user.username, wrong)
    env = _env(sasl_broker.bootstrap, f"x{uuid.uuid4().hex[:8]}.", tmp_path, security)
    started = {name: subprocess.Popen([sys.executable, "-m", "streams.cli", *args], env=env, cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name, args in COMMANDS.items()}
    outcomes = {}
    try:
        for name, proc in started.items():
            out, err = proc.communicate(timeout=HANG_GUARD_S)
            outcomes[name] = (proc.returncode, out + err)
    finally:
        for proc in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    if credentials == "none":
        expected = (f"rcaflow: kafka: {sasl_broker.bootstrap} (PLAINTEXT) closed the connection without an answer, "
                    "as a SASL or TLS listener does to a PLAINTEXT client: check kafka.security")
    else:
        expected = (f"rcaflow: kafka: authentication failed at {sasl_broker.bootstrap} "
                    f"(SASL_PLAINTEXT SCRAM-SHA-512 as user {scram_user.username}): ")
    for name, (code, output) in outcomes.items():
        assert code == 2, f"{name}: exit {code}\n{output[-3000:]}"
        said = [line for line in output.splitlines() if line.startswith("rcaflow: ")]
        assert len(said) == 1 and said[0].startswith(expected), f"{name}:\n{output[-3000:]}"
        assert said[0].endswith("check kafka.security"), said[0]
        assert "Traceback" not in output, f"{name}:\n{output[-3000:]}"
        assert wrong not in output and scram_user.password not in output, f"{name} printed a password"
