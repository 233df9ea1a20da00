"""Integration fixtures: one broker per test session, unique topic names per test.

RCAFLOW_TEST_BROKER picks the broker: kafka (default; real Apache Kafka, needs Java 17+
and Maven or a filled jar cache), tansu (the fallback; many semantics broken), or
external (use KAFKA_BOOTSTRAP_SERVERS as is).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streams.broker import DEFAULT_CACHE_ROOT, BrokerError, RunningBroker, choose_broker
from tests.support.es.fixtures import elasticsearch_node, elasticsearch_secure_node  # noqa: F401 (fixtures)

_HERE = Path(__file__).parent


@dataclass(frozen=True)
class ExternalBroker:
    """A broker someone else runs: we only know where it is."""

    bootstrap: str
    kind: str = "external"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration needs a real service, so `-m "not integration"` skips it."""
    for item in items:
        if _HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def broker_cache_dir() -> Path:
    """Shared across sessions so Kafka's jars are resolved once per machine."""
    return Path(os.environ.get("RCAFLOW_CACHE_DIR", str(DEFAULT_CACHE_ROOT)))


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory, broker_cache_dir: Path) -> Iterator[RunningBroker]:
    """The started broker (an EmbeddedBroker, or an ExternalBroker); has `.kind` and `.bootstrap`."""
    kind = os.environ.get("RCAFLOW_TEST_BROKER", "kafka")
    if kind == "external":
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            pytest.fail("RCAFLOW_TEST_BROKER=external needs KAFKA_BOOTSTRAP_SERVERS")
        yield ExternalBroker(bootstrap)
        return
    if kind not in ("kafka", "tansu"):
        pytest.fail(f"RCAFLOW_TEST_BROKER must be kafka, tansu or external, not {kind!r}")
    data_dir = tmp_path_factory.mktemp("broker")
    try:
        embedded = choose_broker("kafka" if kind == "kafka" else "tansu", data_dir, broker_cache_dir)
        embedded.start()
    except BrokerError as exc:
        pytest.fail(f"cannot start the {kind} test broker (RCAFLOW_TEST_BROKER=tansu avoids Java): {exc}")
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture
def topic_prefix() -> str:
    """A prefix no other test uses, so tests never see each other's records or groups."""
    return f"t{uuid.uuid4().hex[:8]}."
