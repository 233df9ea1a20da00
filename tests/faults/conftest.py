"""The fault-injection suite: real Kafka, real dovecot, real `rcaflow` processes, killed with signals.

Every test here counts its inputs against what came out (outputs and dead letters) and adds a row
to the table printed at the end of the session (and written to ``$RCAFLOW_FAULTS_REPORT``, default
``build/faults-report.md``, which git ignores). ``RCAFLOW_FAULTS_MAILS`` sets the load (default 500).
Skip the whole directory with ``-m "not faults"``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from schemas.codec import Codec, make_codec
from streams.broker import DEFAULT_CACHE_ROOT, BrokerError, EmbeddedBroker, choose_broker
from streams.broker.base import free_loopback_port
from streams.settings import KafkaSettings, Settings
from streams.wiring.supervisor import Stack
from tests.faults.accounting import TABLE_HEADER, Row
from tests.faults.mails import NAMESPACE
from tests.integration.imap.imap_helpers import Dovecot, make_dovecot

_HERE = Path(__file__).parent
ROWS = pytest.StashKey[list[Row]]()
TENANT = "default"
TOKEN = "faults-token-0123456789"
DECISION_KEY = "faults-decision-key-0123456789abcdef0123"


#: The executor settles a run its process died in (``running``, no outcome) as interrupted once its confirm
#: window + stop grace + a 60 s margin are over; small values make that happen within a test.
SETTLE_ABANDONED_ENV = {"RCAFLOW_EXECUTOR__CONFIRM_WITHIN_S": "1", "RCAFLOW_EXECUTOR__STOP_GRACE_S": "0"}


def mails_count() -> int:
    """The load of each case: RCAFLOW_FAULTS_MAILS (default 500)."""
    return int(os.environ.get("RCAFLOW_FAULTS_MAILS", "500"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything here is a fault case on real services: marked ``faults`` and ``integration``."""
    for item in items:
        if _HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.faults)
            item.add_marker(pytest.mark.integration)


def pytest_configure(config: pytest.Config) -> None:
    # Registered here rather than in pyproject.toml: the marker belongs to this directory.
    config.addinivalue_line("markers", "faults: fault-injection suite (kill -9, broker outage, poison input)")
    config.stash[ROWS] = []


def report_path() -> Path:
    default = Path(__file__).resolve().parents[2] / "build" / "faults-report.md"
    return Path(os.environ.get("RCAFLOW_FAULTS_REPORT", str(default)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    rows = config.stash.get(ROWS, [])
    if not rows:
        return
    table = "\n".join([TABLE_HEADER, *(row.markdown() for row in rows)])
    text = f"# Fault-injection accounting (RCAFLOW_FAULTS_MAILS={mails_count()})\n\n{table}\n"
    for row in rows:
        if row.details:
            text += f"\n## {row.fault}: problems\n\n"
            for kind, items in row.details.items():
                listed = list(items.items() if isinstance(items, dict) else items)
                text += f"- {kind}: {len(listed)}, e.g. {listed[:5]}\n"
    terminalreporter.section("fault-injection accounting")
    terminalreporter.write_line(table)
    path = report_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        terminalreporter.write_line(f"(written to {path})")
    except OSError as exc:
        terminalreporter.write_line(f"(could not write {path}: {exc})")


@pytest.fixture
def record_row(request: pytest.FixtureRequest) -> Iterator[list[Row]]:
    """Rows a test adds here go into the end-of-session table, also when its asserts fail."""
    rows: list[Row] = []
    yield rows
    request.config.stash[ROWS].extend(rows)


# ------------------------------------------------------------------------------------------- services
def start_broker(data_dir: Path, port: int | None = None) -> EmbeddedBroker:
    kind = os.environ.get("RCAFLOW_TEST_BROKER", "kafka")
    if kind not in ("kafka", "tansu"):
        pytest.skip("the fault suite runs on an embedded broker it can stop (RCAFLOW_TEST_BROKER=kafka)")
    cache = Path(os.environ.get("RCAFLOW_CACHE_DIR", str(DEFAULT_CACHE_ROOT)))
    try:
        broker = choose_broker(kind, data_dir, cache, port=port)  # type: ignore[arg-type]
        broker.start()
    except BrokerError as exc:
        pytest.fail(f"cannot start the {kind} broker for the fault suite: {exc}")
    return broker


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One embedded broker for the cases that do not stop it (each case has a topic prefix of its own)."""
    embedded = start_broker(tmp_path_factory.mktemp("faults-broker"))
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A broker this test may stop and start again (same data dir, same port)."""
    embedded = start_broker(tmp_path_factory.mktemp("own-broker"), port=free_loopback_port())
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    yield from make_dovecot()


@pytest.fixture(scope="session")
def codec() -> Codec:
    return make_codec(None)


class Pipeline:
    """The rcaflow roles as subprocesses on one topic prefix: a ``Stack`` plus `rcaflow ingest imap`."""

    def __init__(self, bootstrap: str, tmp: Path, roles: tuple[str, ...], env: Mapping[str, str] | None = None,
                 *, name: str = "pipeline") -> None:
        self.prefix = f"x{uuid.uuid4().hex[:8]}."
        self.api_port = free_loopback_port()
        self.tmp = tmp
        # Logs outlive pytest's tmp dirs (kept three sessions only) so a failure can be read afterwards.
        self.log_dir = report_path().parent / "faults-logs" / f"{name}-{self.prefix.rstrip('.')}"
        base_env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "RCAFLOW_KAFKA__TOPIC_PREFIX": self.prefix,
            "RCAFLOW_WORKER__DATA_DIR": str(tmp / "worker"),
            "RCAFLOW_WORKER__METRICS_PORT": "0",
            "RCAFLOW_EXECUTOR__METRICS_PORT": "0",
            "RCAFLOW_API__PORT": str(self.api_port),
            f"RCAFLOW_TENANTS__{TENANT.upper()}__TOKEN": TOKEN,
            # The tenant's scope: its actions may touch the namespace the load's alerts come from.
            f"RCAFLOW_TENANTS__{TENANT.upper()}__NAMESPACES": json.dumps([NAMESPACE]),
            "RCAFLOW_LOG_LEVEL": "INFO",
            # Worker and executor share the key that signs (and verifies) the decisions to run an action.
            "RCAFLOW_SECURITY__DECISION_KEY": DECISION_KEY,
            **(env or {}),
        }
        settings = Settings(kafka_bootstrap_servers=bootstrap, kafka=KafkaSettings(topic_prefix=self.prefix))
        self.stack = Stack(settings, roles=roles, env=base_env, log_dir=self.log_dir)
        self.restarts: dict[str, int] = {}

    @property
    def bootstrap(self) -> str:
        return self.stack.bootstrap

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def __enter__(self) -> Pipeline:
        self.stack.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.__exit__(None, None, None)

    def start_ingest(self, server: Dovecot, folder: str = "INBOX") -> None:
        """`rcaflow ingest imap --mailbox faults` against the private dovecot."""
        box = "RCAFLOW_MAILBOXES__FAULTS__"
        env = {
            **self.stack.base_env,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            f"{box}HOST": "127.0.0.1",
            f"{box}PORT": str(server.port),
            f"{box}TLS": "plain",
            f"{box}ALLOW_PLAIN": "true",
            f"{box}USERNAME": server.user,
            f"{box}PASSWORD": server.password,
            f"{box}FOLDER": folder,
            f"{box}TENANT": TENANT,
            f"{box}BACKOFF__BASE_SECONDS": "0.1",
            f"{box}BACKOFF__CAP_SECONDS": "2",
        }
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / "ingest.log").open("ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "ingest", "imap", "--mailbox", "faults", "--metrics-port", "0"],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        self.stack.children["ingest"] = child

    def kill(self, role: str) -> None:
        """kill -9, as the OOM killer or a lost node would."""
        child = self.stack.children[role]
        child.send_signal(signal.SIGKILL)
        child.wait(10)

    def restart(self, role: str) -> None:
        self.restarts[role] = self.restarts.get(role, 0) + 1
        self.stack.start_role(role)

    def revive(self) -> list[str]:
        """Start again every role that exited (as a process supervisor would); names them."""
        dead = [role for role, child in self.stack.children.items() if child.poll() is not None and role != "ingest"]
        for role in dead:
            self.restart(role)
        return dead

    def log(self, role: str) -> str:
        path = self.log_dir / f"{role}.log"
        return path.read_text(errors="replace") if path.exists() else ""
