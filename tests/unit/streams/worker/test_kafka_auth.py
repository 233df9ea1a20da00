"""The worker's Faust app logs in like every other client: ``kafka.security`` as Faust broker credentials."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import certifi
import faust
import pytest

from streams.errors import ConfigurationError
from streams.settings import KafkaSecuritySettings
from streams.worker.kafka_auth import faust_credentials

PASSWORD = "faust-pw-0815"


def _security(**fields: object) -> KafkaSecuritySettings:
    return KafkaSecuritySettings.model_validate(fields)


def test_plaintext_needs_no_credentials() -> None:
    assert faust_credentials(KafkaSecuritySettings()) is None


def test_sasl_plaintext_logs_in_with_the_mechanism_and_no_tls() -> None:
    creds = faust_credentials(_security(protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                                        username="rcaflow", password=PASSWORD))
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.protocol.value, creds.mechanism.value) == ("SASL_PLAINTEXT", "SCRAM-SHA-256")
    assert (creds.username, creds.password, creds.ssl_context) == ("rcaflow", PASSWORD, None)
    assert PASSWORD not in repr(creds)


def test_sasl_ssl_verifies_the_broker_against_the_configured_ca() -> None:
    creds = faust_credentials(_security(protocol="SASL_SSL", username="rcaflow", password=PASSWORD,
                                        ca_file=certifi.where()))
    assert isinstance(creds, faust.SASLCredentials) and creds.protocol.value == "SASL_SSL"
    assert creds.ssl_context is not None
    assert creds.ssl_context.verify_mode is ssl.CERT_REQUIRED and creds.ssl_context.check_hostname


def test_mutual_tls_presents_the_client_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=rcaflow"], check=True, capture_output=True)
    creds = faust_credentials(_security(protocol="SSL", cert_file=cert, key_file=key))
    assert isinstance(creds, faust.SSLCredentials) and creds.protocol.value == "SSL"
    assert creds.context.verify_mode is ssl.CERT_REQUIRED


def test_a_missing_tls_file_is_a_configuration_error_naming_the_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"kafka\.security"):
        faust_credentials(_security(protocol="SSL", ca_file=tmp_path / "nope.pem"))
