"""A real Kafka broker whose only client listener is SASL_PLAINTEXT (SCRAM-SHA-512), shared by this folder."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.broker import BrokerError, EmbeddedBroker, ScramUser, choose_broker

USER = "rcaflow-test"


@pytest.fixture(scope="session")
def scram_user() -> ScramUser:
    return ScramUser(USER, f"pw-{secrets.token_hex(8)}")


@pytest.fixture(scope="session")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory, broker_cache_dir: Path,
                scram_user: ScramUser) -> Iterator[EmbeddedBroker]:
    """Its own data dir and port; the user exists from the start (``kafka-storage format --add-scram``)."""
    if os.environ.get("RCAFLOW_TEST_BROKER", "kafka") != "kafka":
        pytest.skip("the SASL broker is real Kafka only (Tansu has no SASL listener)")
    try:
        broker = choose_broker("kafka", tmp_path_factory.mktemp("sasl-broker"), broker_cache_dir, scram=scram_user)
        broker.start()
    except BrokerError as exc:
        pytest.fail(f"cannot start the SASL test broker: {exc}")
    try:
        yield broker
    finally:
        broker.stop()
