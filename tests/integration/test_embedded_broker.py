"""The embedded broker gives clients real Kafka semantics, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.broker import KafkaMavenBroker, RunningBroker, TansuBroker
from streams.broker.base import metadata_ok, pid_alive, process_group_members
from streams.commands.broker import broker as broker_cli

FAST_GROUP = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 500}


@pytest.fixture
def kafka(broker: RunningBroker) -> RunningBroker:
    """The session broker, for tests of semantics that Tansu is known to break."""
    if broker.kind == "tansu":
        pytest.skip("needs real Kafka semantics (Tansu breaks them; see MEASURED.md)")
    return broker


def create_topic(bootstrap: str, name: str, config: dict[str, str] | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1, config=config or {})])
    futures[name].result(timeout=30)


def produce(bootstrap: str, topic: str, records: list[tuple[str, str]], timestamps: list[int] | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for i, (key, value) in enumerate(records):
        if timestamps is None:
            producer.produce(topic, key=key.encode(), value=value.encode())
        else:
            producer.produce(topic, key=key.encode(), value=value.encode(), timestamp=timestamps[i])
    assert producer.flush(30) == 0, "records left undelivered"


def consumer(bootstrap: str, group: str, **extra: object) -> Consumer:
    config: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        **FAST_GROUP,
        **extra,
    }
    return Consumer(config)


def consume(c: Consumer, count: int, deadline_s: float = 60.0) -> list[Message]:
    """Poll until ``count`` records arrived (or give up, returning what came)."""
    got: list[Message] = []
    deadline = time.monotonic() + deadline_s
    while len(got) < count and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        got.append(msg)
    return got


def read_all(bootstrap: str, topic: str, expected_at_least: int = 1) -> list[tuple[str, str]]:
    """Everything in partition 0 from the beginning up to the current end."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}.reader", "enable.auto.commit": False})
    try:
        _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, 0)])
        out: list[tuple[str, str]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            out.append((msg.key().decode(), msg.value().decode()))
            if msg.offset() >= high - 1:
                break
        assert len(out) >= expected_at_least
        return out
    finally:
        c.close()


def test_produce_consume_round_trip(broker: RunningBroker, topic_prefix: str) -> None:
    topic = f"{topic_prefix}round-trip"
    create_topic(broker.bootstrap, topic)
    sent = [(f"k{i}", f"v{i}") for i in range(20)]
    produce(broker.bootstrap, topic, sent)

    c = consumer(broker.bootstrap, f"{topic_prefix}g")
    c.subscribe([topic])
    try:
        got = consume(c, len(sent))
    finally:
        c.close()

    assert [(m.key().decode(), m.value().decode()) for m in got] == sent


def test_committed_group_resumes_where_it_stopped(broker: RunningBroker, topic_prefix: str) -> None:
    topic = f"{topic_prefix}resume"
    group = f"{topic_prefix}g"
    create_topic(broker.bootstrap, topic)
    produce(broker.bootstrap, topic, [(f"k{i}", f"v{i}") for i in range(10)])

    first = consumer(broker.bootstrap, group)
    first.subscribe([topic])
    try:
        got = consume(first, 4)
        first.commit(message=got[3], asynchronous=False)
    finally:
        first.close()

    second = consumer(broker.bootstrap, group)
    second.subscribe([topic])
    try:
        rest = consume(second, 6)
    finally:
        second.close()

    assert [m.value().decode() for m in rest] == [f"v{i}" for i in range(4, 10)]


def test_offsets_for_times_finds_the_first_record_at_or_after_a_timestamp(
    kafka: RunningBroker, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}by-time"
    create_topic(kafka.bootstrap, topic)
    t0 = int(time.time() * 1000) - 60_000
    produce(
        kafka.bootstrap,
        topic,
        [("a", "first"), ("b", "second"), ("c", "third")],
        timestamps=[t0, t0 + 10_000, t0 + 20_000],
    )

    c = consumer(kafka.bootstrap, f"{topic_prefix}g")
    try:
        found = c.offsets_for_times([TopicPartition(topic, 0, t0 + 10_000)], timeout=10) + c.offsets_for_times(
            [TopicPartition(topic, 0, t0 + 15_000)], timeout=10
        )
    finally:
        c.close()

    assert [tp.offset for tp in found] == [1, 2]


def test_compacted_topic_keeps_only_the_latest_value_per_key(kafka: RunningBroker, topic_prefix: str) -> None:
    topic = f"{topic_prefix}compacted"
    create_topic(
        kafka.bootstrap,
        topic,
        {
            "cleanup.policy": "compact",
            "segment.ms": "100",
            "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": "100",
        },
    )
    produce(kafka.bootstrap, topic, [("checkpoint", f"uid-{i}") for i in range(50)])

    # Compaction never touches the active segment: keep appending so older segments roll.
    deadline = time.monotonic() + 90
    values: list[str] = []
    while time.monotonic() < deadline:
        time.sleep(1.0)
        produce(kafka.bootstrap, topic, [("roller", "x")])
        values = [v for k, v in read_all(kafka.bootstrap, topic) if k == "checkpoint"]
        if len(values) == 1:
            break

    assert values == ["uid-49"]


def test_restart_on_the_same_data_dir_keeps_records_and_stop_leaves_no_process(
    kafka: RunningBroker, tmp_path: Path, broker_cache_dir: Path, topic_prefix: str
) -> None:
    if kafka.kind != "kafka":
        pytest.skip("starts its own embedded Kafka")
    topic = f"{topic_prefix}durable"
    own = KafkaMavenBroker(tmp_path / "data", cache_root=broker_cache_dir)
    own.start()
    try:
        create_topic(own.bootstrap, topic)
        produce(own.bootstrap, topic, [("incident-1", "kept")])
    finally:
        pid = own.pid
        own.stop()
    assert pid is not None
    assert not Path(f"/proc/{pid}").exists()
    assert process_group_members(pid) == []

    again = KafkaMavenBroker(tmp_path / "data", cache_root=broker_cache_dir)
    with again:
        assert read_all(again.bootstrap, topic) == [("incident-1", "kept")]
        pid = again.pid
    assert pid is not None
    assert process_group_members(pid) == []


@pytest.mark.tansu
def test_tansu_round_trip(tmp_path: Path, topic_prefix: str) -> None:
    topic = f"{topic_prefix}tansu"
    with TansuBroker(tmp_path / "tansu") as tansu:
        produce(tansu.bootstrap, topic, [("k", "hello"), ("k", "world")])
        c = consumer(tansu.bootstrap, f"{topic_prefix}g")
        c.subscribe([topic])
        try:
            got = consume(c, 2)
        finally:
            c.close()
        pid = tansu.pid
    assert [m.value().decode() for m in got] == ["hello", "world"]
    assert pid is not None
    assert process_group_members(pid) == []


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from streams.commands.broker import broker; broker()", *args]


def _wait_dead(pid: int, deadline_s: float = 30.0) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.tansu
def test_cli_detached_start_status_stop(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    runner = CliRunner()

    started = runner.invoke(broker_cli, ["start", "--prefer", "tansu", "--data-dir", data])
    assert started.exit_code == 0, started.output
    bootstrap = started.stdout.splitlines()[0].removeprefix("KAFKA_BOOTSTRAP_SERVERS=")
    pid = json.loads((tmp_path / "data" / "broker-state.json").read_text())["pid"]
    try:
        status = runner.invoke(broker_cli, ["status", "--data-dir", data])
        assert status.exit_code == 0, status.output
        assert "# broker: tansu" in status.stdout
        assert metadata_ok(bootstrap)
    finally:
        stopped = runner.invoke(broker_cli, ["stop", "--data-dir", data])

    assert stopped.exit_code == 0, stopped.output
    assert _wait_dead(pid)
    assert runner.invoke(broker_cli, ["status", "--data-dir", data]).exit_code == 1


@pytest.mark.tansu
def test_cli_foreground_stops_the_broker_on_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with subprocess.Popen(
        _cli("start", "--foreground", "--prefer", "tansu", "--data-dir", str(data)),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as cli:
        assert cli.stdout is not None
        first = cli.stdout.readline()
        assert first.startswith("KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:")
        pid = json.loads((data / "broker-state.json").read_text())["pid"]
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=60) == 0
    assert _wait_dead(pid)
    assert not (data / "broker-state.json").exists()


@pytest.mark.tansu
def test_an_attached_broker_dies_with_its_parent(tmp_path: Path) -> None:
    program = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from streams.broker import TansuBroker\n"
        "b = TansuBroker(Path(sys.argv[1]))\n"
        "b.start()\n"
        "print(b.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", program, str(tmp_path / "data")], stdout=subprocess.PIPE, text=True
    ) as parent:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert pid_alive(pid)
        parent.kill()  # no chance to clean up: only the kernel's parent-death signal can stop the broker
        parent.wait(timeout=30)
    try:
        assert _wait_dead(pid)
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
