"""The SASL_PLAINTEXT embedded broker: its listener, and its SCRAM password kept out of files and errors."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from streams.broker import BrokerError, KafkaMavenBroker, ScramUser
from streams.broker.kafka_maven import jar_cache_dir

PASSWORD = "scram-pw-2718"


def _broker(tmp_path: Path, java: str = "java") -> KafkaMavenBroker:
    jars = jar_cache_dir(tmp_path / "cache")
    jars.mkdir(parents=True)
    (jars / "kafka.jar").write_text("")
    (jars / "jars.txt").write_text("kafka.jar\n")
    broker = KafkaMavenBroker(tmp_path / "data", cache_root=tmp_path / "cache", java=java, mvn=None,
                              scram=ScramUser("alice", PASSWORD))
    broker.data_dir.mkdir(parents=True)
    return broker


def test_the_only_client_listener_wants_scram_and_the_file_is_private(tmp_path: Path) -> None:
    config = _broker(tmp_path)._write_config(9092, 9093)
    props = dict(line.split("=", 1) for line in config.read_text().splitlines())
    assert props["listeners"] == "SASL_PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def test_a_failed_format_never_shows_the_password(tmp_path: Path) -> None:
    # A "java" that echoes its arguments and fails, as a StorageTool complaining about them would.
    java = tmp_path / "java"
    java.write_text('#!/bin/sh\necho "refused: $*" >&2\nexit 1\n')
    java.chmod(0o755)
    broker = _broker(tmp_path, java=str(java))
    with pytest.raises(BrokerError) as failed:
        broker._format_if_needed(broker._write_config(9092, 9093))
    assert "--add-scram SCRAM-SHA-512=[name=alice,password=***]" in str(failed.value)
    assert PASSWORD not in str(failed.value)


@pytest.mark.parametrize("name", ["a,b", "a=b", "", "x]"])
def test_a_user_kafkas_scram_syntax_cannot_hold_is_refused(name: str) -> None:
    with pytest.raises(BrokerError, match="SCRAM username"):
        ScramUser(name, PASSWORD)
