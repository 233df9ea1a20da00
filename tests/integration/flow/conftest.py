"""A running worker + executor on the test broker, on a topic prefix of its own."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.codec import Codec, make_codec
from streams.settings import KafkaSettings, Settings
from streams.wiring.supervisor import Stack


def stack_for(broker_bootstrap: str, tmp: Path, roles: tuple[str, ...] = ("worker", "executor")) -> Stack:
    prefix = f"f{uuid.uuid4().hex[:8]}."
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker_bootstrap,
        "RCAFLOW_KAFKA__TOPIC_PREFIX": prefix,
        "RCAFLOW_WORKER__DATA_DIR": str(tmp / "worker"),
        "RCAFLOW_WORKER__METRICS_PORT": "0",
        "RCAFLOW_EXECUTOR__METRICS_PORT": "0",
        "RCAFLOW_LOG_LEVEL": "INFO",
    }
    settings = Settings(kafka_bootstrap_servers=broker_bootstrap, kafka=KafkaSettings(topic_prefix=prefix))
    return Stack(settings, roles=roles, env=env, log_dir=tmp / "logs")


@pytest.fixture(scope="module")
def stack(broker: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    with stack_for(bootstrap, tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture(scope="session")
def codec() -> Codec:
    return make_codec(None)
