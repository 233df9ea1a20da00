"""``kafka.security``: one section, set from the environment or mounted files, reaching every client family."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import ConfigurationError
from streams.settings import (
    KafkaSecuritySettings,
    KafkaSettings,
    client_config,
    librdkafka_security,
    load_settings,
    producer_config,
)

PASSWORD = "s3cr3t-kafka-pw-4711"
SASL = {"RCAFLOW_KAFKA__SECURITY__PROTOCOL": "SASL_SSL", "RCAFLOW_KAFKA__SECURITY__SASL_MECHANISM": "SCRAM-SHA-256",
        "RCAFLOW_KAFKA__SECURITY__USERNAME": "rcaflow", "RCAFLOW_KAFKA__SECURITY__PASSWORD": PASSWORD}


def test_the_environment_sets_the_login_of_every_confluent_client(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SASL.items():
        monkeypatch.setenv(name, value)
    kafka = load_settings().kafka
    expected = {"security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "rcaflow",
                "sasl.password": PASSWORD, "ssl.ca.location": "probe"}
    assert client_config(kafka, "kafka:9093") == {"bootstrap.servers": "kafka:9093", **expected}
    assert expected.items() <= producer_config(kafka).items()
    assert PASSWORD not in repr(kafka) and PASSWORD not in str(kafka.security)


def test_a_mounted_secret_file_holds_the_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SASL.items():
        if not name.endswith("PASSWORD"):
            monkeypatch.setenv(name, value)
    (tmp_path / "kafka" / "security").mkdir(parents=True)
    (tmp_path / "kafka" / "security" / "password").write_text(PASSWORD)
    security = load_settings(secrets_dir=tmp_path).kafka.security
    assert security.password is not None and security.password.get_secret_value() == PASSWORD


@pytest.mark.parametrize(("fields", "problem"), [
    ({"protocol": "SASL_PLAINTEXT", "username": "rcaflow"}, "needs username and password"),
    ({"username": "rcaflow", "password": PASSWORD}, "does not use SASL"),
    ({"protocol": "SSL", "cert_file": "/etc/tls/client.pem"}, "cert_file and key_file go together"),
    ({"ca_file": "/etc/tls/ca.pem"}, "does not use TLS"),
    ({"protocol": "SASL_PLAINTEXT", "sasl_mechanism": "GSSAPI", "username": "u", "password": "p"}, "sasl_mechanism"),
])
def test_a_contradictory_section_is_refused_at_start_in_one_line(
    fields: dict[str, str], problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in fields.items():
        monkeypatch.setenv(f"RCAFLOW_KAFKA__SECURITY__{name.upper()}", value)
    with pytest.raises(ConfigurationError) as refused:
        load_settings()
    message = str(refused.value)
    assert "kafka.security" in message and problem in message and "\n" not in message
    assert PASSWORD not in message


def test_tls_files_and_the_key_password_become_librdkafka_locations() -> None:
    security = KafkaSecuritySettings.model_validate({
        "protocol": "SSL", "ca_file": "/tls/ca.pem", "cert_file": "/tls/client.pem", "key_file": "/tls/client.key",
        "key_password": PASSWORD})
    assert librdkafka_security(security) == {
        "security.protocol": "ssl", "ssl.ca.location": "/tls/ca.pem", "ssl.certificate.location": "/tls/client.pem",
        "ssl.key.location": "/tls/client.key", "ssl.key.password": PASSWORD}


def test_plaintext_by_default_and_kafka_client_stays_the_last_word() -> None:
    assert client_config(KafkaSettings(), "b:9092") == {"bootstrap.servers": "b:9092", "security.protocol": "plaintext"}
    raw = KafkaSettings(security=KafkaSecuritySettings(protocol="SASL_PLAINTEXT", username="u", password="p"),
                        client={"sasl.mechanism": "PLAIN", "client.id": "rcaflow-7"})
    config = client_config(raw, "b:9092")
    assert config["sasl.mechanism"] == "PLAIN" and config["client.id"] == "rcaflow-7"


def test_describe_names_protocol_mechanism_and_user_never_the_password() -> None:
    security = KafkaSecuritySettings(protocol="SASL_PLAINTEXT", username="alice", password=PASSWORD)  # type: ignore[arg-type]
    assert security.describe() == "SASL_PLAINTEXT SCRAM-SHA-512 as user alice"
    assert KafkaSecuritySettings().describe() == "PLAINTEXT"
