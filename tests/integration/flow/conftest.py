"""A running worker + executor on the test broker, on a topic prefix of its own."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from policies import load_policies
from policies.decision_signature import DecisionKeys
from policies.tenant_scope import TenantScope, TenantScopes
from schemas.codec import Codec, make_codec
from schemas.records import ActionEvent
from streams.executor.verify import ActionVerifier
from streams.settings import KafkaSettings, SecuritySettings, Settings
from streams.wiring.supervisor import Stack
from tests.integration.flow.proxied_worker import proxied  # noqa: F401 (a fixture of the flow tests)
from tests.support.approval_keys import APPROVAL_KEY

#: The decision key of every test stack: tests that write approved actions themselves sign with it.
DECISION_KEY = "rcaflow-integration-tests-decision-key-0123456789"
TEST_KEYS = DecisionKeys.from_text(DECISION_KEY)
#: The approver tests name on high-risk actions they approve themselves.
TEST_APPROVER = "slack:U1"


def signed(action: ActionEvent, *, decided_at: datetime | None = None) -> ActionEvent:
    """``action`` as the worker approves it: signed with the test stacks' key, valid for an hour."""
    return TEST_KEYS.sign(action, decided_at=decided_at or datetime.now(UTC), valid_for=timedelta(hours=1))


def verifier_for(*tenants: str, namespaces: tuple[str, ...] = ("*",)) -> ActionVerifier:
    """What an in-process ExecutorService checks records against: the test key, the bundled policy,
    :data:`TEST_APPROVER` for ``tenants``, which own ``namespaces``."""
    return ActionVerifier(TEST_KEYS, load_policies(), approvers={t: {TEST_APPROVER} for t in tenants},
                          scopes=TenantScopes([TenantScope(t, namespaces=namespaces) for t in tenants]))

#: The one test tenant owns every namespace, so its actions go ahead (an unscoped tenant is read-only); the
#: tests' random tenant names get its scope, as in any single-tenant deployment.
TEST_TENANTS_ENV: Mapping[str, str] = {"RCAFLOW_TENANTS__DEFAULT__NAMESPACES": '["*"]'}


def stack_for(
    broker_bootstrap: str,
    tmp: Path,
    roles: tuple[str, ...] = ("worker", "executor"),
    *,
    tenants_env: Mapping[str, str] = TEST_TENANTS_ENV,
    extra_env: Mapping[str, str] | None = None,
) -> Stack:
    prefix = f"f{uuid.uuid4().hex[:8]}."
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker_bootstrap,
        "RCAFLOW_KAFKA__TOPIC_PREFIX": prefix,
        "RCAFLOW_WORKER__DATA_DIR": str(tmp / "worker"),
        "RCAFLOW_WORKER__METRICS_PORT": "0",
        "RCAFLOW_EXECUTOR__METRICS_PORT": "0",
        "RCAFLOW_LOG_LEVEL": "INFO",
        "RCAFLOW_SECURITY__DECISION_KEY": DECISION_KEY,
        # The worker applies only decisions signed with it (tests sign theirs with tests.support.approval_keys).
        "RCAFLOW_SECURITY__APPROVAL_KEY": APPROVAL_KEY,
        **tenants_env,
        **(extra_env or {}),
    }
    settings = Settings(kafka_bootstrap_servers=broker_bootstrap, kafka=KafkaSettings(topic_prefix=prefix),
                        security=SecuritySettings(decision_key=SecretStr(DECISION_KEY),
                                                  approval_key=SecretStr(APPROVAL_KEY)))
    return Stack(settings, roles=roles, env=env, log_dir=tmp / "logs")


@pytest.fixture(scope="module")
def stack(broker: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    with stack_for(bootstrap, tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture(scope="session")
def codec() -> Codec:
    return make_codec(None)
