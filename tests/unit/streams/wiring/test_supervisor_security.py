"""`rcaflow run` passes kafka.security to its roles and starts an embedded broker they can log in to."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streams.broker import ScramUser
from streams.errors import ConfigurationError
from streams.settings import KafkaSecuritySettings, Settings
from streams.wiring.supervisor import Stack, SupervisorError, embedded_scram_user, security_env


def _security(**fields: object) -> KafkaSecuritySettings:
    return KafkaSecuritySettings.model_validate(fields)


def test_the_roles_get_the_same_security_through_their_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    given = _security(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256", username="u", password="pw-1",
                      ca_file="/tls/ca.pem")
    for name, value in security_env(given).items():
        monkeypatch.setenv(name, value)
    assert Settings().kafka.security == given
    assert security_env(KafkaSecuritySettings()) == {}


def test_the_embedded_broker_gets_the_configured_scram_user() -> None:
    assert embedded_scram_user(KafkaSecuritySettings()) is None
    assert embedded_scram_user(_security(protocol="SASL_PLAINTEXT", username="u", password="pw-1")) == \
        ScramUser("u", "pw-1")


@pytest.mark.parametrize("fields", [
    {"protocol": "SASL_SSL", "username": "u", "password": "pw-1"},
    {"protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "username": "u", "password": "pw-1"},
    {"protocol": "SSL"},
])
def test_a_security_the_embedded_broker_cannot_offer_is_refused(fields: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="embedded broker offers only PLAINTEXT or SASL_PLAINTEXT") as refused:
        embedded_scram_user(_security(**fields))
    assert "pw-1" not in str(refused.value)


def test_a_role_refused_by_kafka_stops_the_group_with_its_own_line(tmp_path: Path) -> None:
    line = "kafka: authentication failed at k:9093 (SASL_SSL SCRAM-SHA-512 as user u): …: check kafka.security"
    stack = Stack(Settings(), roles=(), env={}, log_dir=tmp_path)
    with (tmp_path / "worker.log").open("wb") as log:
        child = subprocess.Popen([sys.executable, "-c", f"import sys; print({'rcaflow: ' + line!r}); sys.exit(2)"],
                                 stdout=log)
    child.wait(30)
    stack.children["worker"] = child
    with pytest.raises(SupervisorError) as stopped:
        stack.check()
    assert str(stopped.value) == f"worker exited with code 2: {line}; see {tmp_path / 'worker.log'}"
