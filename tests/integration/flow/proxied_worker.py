"""A worker talking to the real embedded Kafka through a proxy that can swallow produce requests.

Shared by the tests that make the broker go silent for one topic (table changelog writes, pipelined acks):
one proxied broker per session, a worker with a short producer request timeout, and a wait that watches it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.settings import KafkaSettings, Settings
from streams.wiring.supervisor import Stack
from tests.support.kafka_proxy import KafkaProxy, proxied_kafka

#: The worker's producer gives up on a silent broker after this long (seconds), then sends again with backoff.
REQUEST_TIMEOUT_S = "3"


@pytest.fixture(scope="session")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaProxy]:
    if os.environ.get("RCAFLOW_TEST_BROKER", "kafka") != "kafka":
        pytest.skip("needs the real embedded Kafka behind a proxy (RCAFLOW_TEST_BROKER=kafka)")
    with proxied_kafka(tmp_path_factory.mktemp("proxied-kafka")) as (_broker, proxy):
        yield proxy


def worker_stack(bootstrap: str, tmp: Path, prefix_letter: str) -> Stack:
    """A worker alone on fresh topics (a unique prefix), logging at INFO so its retries can be waited for."""
    prefix = f"{prefix_letter}{uuid.uuid4().hex[:8]}."
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "RCAFLOW_KAFKA__TOPIC_PREFIX": prefix,
        "RCAFLOW_WORKER__DATA_DIR": str(tmp / "worker"),
        "RCAFLOW_WORKER__METRICS_PORT": "0",
        "RCAFLOW_WORKER__PRODUCER_REQUEST_TIMEOUT_S": REQUEST_TIMEOUT_S,
        "RCAFLOW_LOG_LEVEL": "INFO",
    }
    settings = Settings(kafka_bootstrap_servers=bootstrap, kafka=KafkaSettings(topic_prefix=prefix))
    return Stack(settings, roles=("worker",), env=env, log_dir=tmp / "logs")


def wait_until(condition: Callable[[], object], what: str, timeout: float = 120.0,
               alive: Callable[[], object] | None = None) -> None:
    """Returns once ``condition()`` is true; ``alive()`` (e.g. ``stack.check``) fails fast when a role died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")

