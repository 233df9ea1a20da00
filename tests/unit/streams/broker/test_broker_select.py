"""Choosing, preparing and failing to start the embedded broker, with no real broker involved."""

from __future__ import annotations

import logging
import socket
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from streams.broker import BrokerError, KafkaMavenBroker, TansuBroker, choose_broker, decide
from streams.broker.kafka_maven import jar_cache_complete, jar_cache_dir, new_cluster_id, resolve_jars
from streams.broker.select import parse_java_version
from streams.commands.broker import broker as broker_cli


def script(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def fake_java(directory: Path, version: str) -> Path:
    return script(directory, "java", f"echo 'openjdk version \"{version}\" 2025-04-15' >&2")


def fill_jar_cache(cache_root: Path, version: str = "4.1.1") -> Path:
    jar_dir = jar_cache_dir(cache_root, version)
    jar_dir.mkdir(parents=True)
    (jar_dir / "kafka_2.13-4.1.1.jar").write_bytes(b"PK")
    (jar_dir / "jars.txt").write_text("kafka_2.13-4.1.1.jar\n")
    return jar_dir


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('java version "1.8.0_392"\nJava(TM) SE Runtime Environment', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ('openjdk version "11.0.2-ea" 2019-01-15', 11),
        ('openjdk version "25-ea" 2025-09-16', 25),
        ("bash: java: command not found", None),
    ],
)
def test_java_version_is_read_from_java_dash_version(output: str, expected: int | None) -> None:
    assert parse_java_version(output) == expected


def test_old_java_falls_back_to_tansu_and_says_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bin_dir = tmp_path / "bin"
    fake_java(bin_dir, "1.8.0_392")
    script(bin_dir, "mvn", "exit 0")

    with caplog.at_level(logging.WARNING):
        chosen = choose_broker("auto", tmp_path / "data", tmp_path / "cache", search_path=str(bin_dir))

    assert isinstance(chosen, TansuBroker)
    assert "Java 8" in caplog.text
    assert "Tansu" in caplog.text


def test_no_java_at_all_falls_back_to_tansu(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    choice = decide("auto", tmp_path / "cache", search_path=str(tmp_path / "empty"))
    assert choice.kind == "tansu"
    assert "no `java`" in choice.reason


def test_java_17_with_maven_chooses_kafka(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    java = fake_java(bin_dir, "17.0.15")
    script(bin_dir, "mvn", "exit 0")

    chosen = choose_broker("auto", tmp_path / "data", tmp_path / "cache", search_path=str(bin_dir))

    assert isinstance(chosen, KafkaMavenBroker)
    assert chosen.java == str(java)
    assert chosen.jar_dir == tmp_path / "cache" / "kafka-4.1.1"


def test_java_without_maven_needs_a_complete_jar_cache(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    fake_java(bin_dir, "21")
    cache = tmp_path / "cache"

    assert decide("auto", cache, search_path=str(bin_dir)).kind == "tansu"
    assert "mvn" in decide("auto", cache, search_path=str(bin_dir)).reason

    fill_jar_cache(cache)
    assert decide("auto", cache, search_path=str(bin_dir)).kind == "kafka"


def test_a_jar_cache_with_a_missing_jar_is_incomplete(tmp_path: Path) -> None:
    jar_dir = fill_jar_cache(tmp_path)
    assert jar_cache_complete(jar_dir)
    (jar_dir / "kafka_2.13-4.1.1.jar").unlink()
    assert not jar_cache_complete(jar_dir)


def test_asking_for_kafka_without_java_17_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    fake_java(bin_dir, "11.0.2")
    script(bin_dir, "mvn", "exit 0")

    with pytest.raises(BrokerError, match="Java 11"):
        decide("kafka", tmp_path / "cache", search_path=str(bin_dir))


def test_asking_for_tansu_gets_tansu_even_with_java(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    fake_java(bin_dir, "17.0.15")
    script(bin_dir, "mvn", "exit 0")
    assert isinstance(choose_broker("tansu", tmp_path / "d", tmp_path / "c", search_path=str(bin_dir)), TansuBroker)


def test_cluster_ids_look_like_kafkas() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(cid) == 22 and not cid.startswith("-") for cid in ids)


def test_jars_are_resolved_once(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    # A stand-in for `mvn dependency:copy-dependencies -DoutputDirectory=DIR`.
    mvn = script(
        tmp_path / "bin",
        "mvn",
        f'echo run >> {calls}\nfor a in "$@"; do case "$a" in -DoutputDirectory=*) out="${{a#*=}}";; esac; done\n'
        'mkdir -p "$out" && echo jar > "$out/kafka_2.13-4.1.1.jar" && echo jar > "$out/kafka-clients-4.1.1.jar"',
    )
    jar_dir = jar_cache_dir(tmp_path / "cache", "4.1.1")

    resolve_jars(jar_dir, "4.1.1", str(mvn))
    resolve_jars(jar_dir, "4.1.1", str(mvn))

    assert calls.read_text().splitlines() == ["run"]
    assert sorted(p.name for p in jar_dir.glob("*.jar")) == ["kafka-clients-4.1.1.jar", "kafka_2.13-4.1.1.jar"]


def test_a_failed_resolve_names_the_command_and_its_output(tmp_path: Path) -> None:
    mvn = script(tmp_path / "bin", "mvn", "echo 'Could not resolve dependencies: Network is unreachable' >&2\nexit 1")
    jar_dir = jar_cache_dir(tmp_path / "cache", "4.1.1")

    with pytest.raises(BrokerError) as info:
        resolve_jars(jar_dir, "4.1.1", str(mvn))

    assert "dependency:copy-dependencies" in str(info.value)
    assert "Network is unreachable" in str(info.value)
    assert not jar_cache_complete(jar_dir)


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BrokerError, match=f"{port} is already in use"):
            TansuBroker(tmp_path, binary="/bin/false", port=port).start()


def test_a_crashing_java_reports_the_tail_of_its_output(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fill_jar_cache(cache)
    java = script(tmp_path / "bin", "java", "echo 'Error: Could not create the Java Virtual Machine.'\nexit 1")
    data = tmp_path / "data"
    (data / "kafka-logs").mkdir(parents=True)
    (data / "kafka-logs" / "meta.properties").write_text("cluster.id=x\n")  # already formatted

    with pytest.raises(BrokerError, match="Could not create the Java Virtual Machine") as info:
        KafkaMavenBroker(data, cache_root=cache, java=str(java), mvn=None, startup_timeout=30).start()
    assert "exited with code 1" in str(info.value)


def test_a_failed_format_reports_the_tool_output(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fill_jar_cache(cache)
    java = script(tmp_path / "bin", "java", "echo 'Invalid cluster.id' >&2\nexit 1")

    with pytest.raises(BrokerError, match=r"Invalid cluster\.id"):
        KafkaMavenBroker(tmp_path / "data", cache_root=cache, java=str(java), mvn=None).start()


def test_cli_status_and_stop_without_a_running_broker(tmp_path: Path) -> None:
    runner = CliRunner()

    status = runner.invoke(broker_cli, ["status", "--data-dir", str(tmp_path)])
    stopped = runner.invoke(broker_cli, ["stop", "--data-dir", str(tmp_path)])

    assert status.exit_code == 1
    assert "no broker is running" in status.output
    assert "`rcaflow run` starts its own here when none runs" in status.output  # and `status` would show it
    assert stopped.exit_code == 0
