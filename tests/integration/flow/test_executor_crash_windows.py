"""The executor killed (SIGKILL) in each of its crash windows, or refused by the broker, on the real embedded Kafka.

After a restart every action ran at most once (counted by the effects a test operation leaves in a file) and
none stays ``running`` for good. The executors are real ``ExecutorService`` processes
(``crashing_executor.py``); the faults are a ``kill -9`` at a chosen point, a broker that refuses records
(the topic's ``max.message.bytes`` lowered) and another client's transaction left open.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from producers.publisher import Delivery, KafkaPublisher
from schemas.codec import Codec
from schemas.records import ActionEvent, ActionState, Record
from schemas.topics import ACTIONS
from streams.executor.rollbacks import rollback_action
from streams.wiring.topics_admin import ensure_topics
from tests.integration.flow.crashing_executor import DECISION_KEY
from tests.integration.flow.crashing_executor import collect as _mark
from tests.integration.flow.helpers import TopicReader

ROOT = Path(__file__).resolve().parents[3]
GROUP = "rcaflow-executor"


def _states(records: list[Record], action_id: str) -> list[ActionState]:
    return [r.state for r in records if isinstance(r, ActionEvent) and r.action_id == action_id]


def _last(records: list[Record], action_id: str) -> ActionEvent:
    return [r for r in records if isinstance(r, ActionEvent) and r.action_id == action_id][-1]


def _runs(marks: Path, action_id: str) -> int:
    """How often the action's effect really happened, in any executor process."""
    return marks.read_text().split().count(action_id) if marks.exists() else 0


class Executors:
    """Starts executor processes on one topic prefix; each writes its log next to the marks file."""

    def __init__(self, bootstrap: str, prefix: str, tmp: Path) -> None:
        self.bootstrap, self.prefix, self.tmp = bootstrap, prefix, tmp
        self.marks = tmp / "marks"
        self._started = 0
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, window: str = "none", action: str = "", abandon_margin_s: float = 2.0) -> subprocess.Popen[bytes]:
        self._started += 1
        log = (self.tmp / f"executor-{self._started}.log").open("wb")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CRASH_WINDOW": window, "CRASH_ACTION": action,
               "ABANDON_MARGIN_S": str(abandon_margin_s)}
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.flow.crashing_executor", self.bootstrap, self.prefix,
             str(self.marks)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.children.append(child)
        return child

    def log(self, n: int) -> str:
        return (self.tmp / f"executor-{n}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)


@contextmanager
def executors(bootstrap: str, prefix: str, tmp: Path) -> Iterator[Executors]:
    running = Executors(bootstrap, prefix, tmp)
    try:
        yield running
    finally:
        running.stop_all()


def _committed(bootstrap: str, prefix: str, delivery: Delivery) -> int:
    """The executor group's committed offset on the partition of ``delivery`` (-1001 when none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}{GROUP}"})
    try:
        [tp] = consumer.committed([TopicPartition(delivery.topic, delivery.partition)], timeout=10)
        return int(tp.offset)
    finally:
        consumer.close()


def _wait_until_settled(bootstrap: str, prefix: str, delivery: Delivery, alive: subprocess.Popen[bytes],
                        timeout: float = 90.0) -> None:
    """Until the executor committed past ``delivery``: it is done with that input for good."""
    deadline = time.monotonic() + timeout
    while _committed(bootstrap, prefix, delivery) <= delivery.offset:
        assert alive.poll() is None, f"the executor exited with {alive.returncode}"
        assert time.monotonic() < deadline, f"the executor never committed past {delivery}"
        time.sleep(0.3)


def _set_max_message_bytes(bootstrap: str, topic: str, value: int) -> None:
    """Make the broker refuse (or take again) every record bigger than ``value`` on ``topic``."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    entry = ConfigEntry("max.message.bytes", str(value), incremental_operation=AlterConfigOpType.SET)
    for future in admin.incremental_alter_configs(
        [ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])]
    ).values():
        future.result(30)
    time.sleep(1.0)  # the broker applies topic configs asynchronously


def _wait_for_log(execs: Executors, n: int, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in execs.log(n):
        assert execs.children[n - 1].poll() is None, execs.log(n)[-3000:]
        assert time.monotonic() < deadline, f"executor {n} never logged {text!r}:\n{execs.log(n)[-3000:]}"
        time.sleep(0.2)


@pytest.mark.parametrize("window", ["after-running", "after-effect", "after-outcome"])
def test_an_executor_killed_in_a_crash_window_never_runs_an_action_twice_nor_leaves_it_running(
    broker: object, codec: Codec, topic_prefix: str, tmp_path: Path, window: str
) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix, [ACTIONS])
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    publisher = KafkaPublisher(bootstrap, codec, topic_prefix)
    reader = TopicReader(bootstrap, codec, ACTIONS, topic_prefix)
    with executors(bootstrap, topic_prefix, tmp_path) as execs:
        approval = publisher.publish_sync(ACTIONS, f"{tenant}:act-1", _mark(tenant, "act-1"))
        crashed = execs.start(window=window, action="act-1")
        assert crashed.wait(90) == -signal.SIGKILL, execs.log(1)[-3000:]

        restarted = execs.start()
        later = publisher.publish_sync(ACTIONS, f"{tenant}:act-2", _mark(tenant, "act-2"))
        _wait_until_settled(bootstrap, topic_prefix, approval, restarted)
        _wait_until_settled(bootstrap, topic_prefix, later, restarted)
        reader.poll(1.0)
    records = reader.records
    reader.close()
    publisher.close_sync()

    ran_before_the_crash = window != "after-running"
    assert _runs(execs.marks, "act-1") == (1 if ran_before_the_crash else 0)
    if window == "after-outcome":
        assert _states(records, "act-1") == [ActionState.APPROVED, ActionState.RUNNING, ActionState.SUCCEEDED]
    else:
        assert _states(records, "act-1") == [ActionState.APPROVED, ActionState.RUNNING, ActionState.FAILED]
        assert (_last(records, "act-1").result or "").startswith("interrupted: the executor stopped")
    # The restarted executor works normally for everything else.
    assert _runs(execs.marks, "act-2") == 1
    assert _states(records, "act-2") == [ActionState.APPROVED, ActionState.RUNNING, ActionState.SUCCEEDED]


def test_a_refused_running_record_is_retried_until_written_then_the_action_runs_once(
    broker: object, codec: Codec, topic_prefix: str, tmp_path: Path
) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix, [ACTIONS])
    topic = ACTIONS.full_name(topic_prefix)
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    publisher = KafkaPublisher(bootstrap, codec, topic_prefix)
    reader = TopicReader(bootstrap, codec, ACTIONS, topic_prefix)
    with executors(bootstrap, topic_prefix, tmp_path) as execs:
        approval = publisher.publish_sync(ACTIONS, f"{tenant}:act-1", _mark(tenant, "act-1"))
        _set_max_message_bytes(bootstrap, topic, 64)  # every record is refused now
        execs.start()
        _wait_for_log(execs, 1, "running not written (attempt 2")
        assert _runs(execs.marks, "act-1") == 0  # nothing runs before its running record is acked
        _set_max_message_bytes(bootstrap, topic, 1_048_588)
        _wait_until_settled(bootstrap, topic_prefix, approval, execs.children[0])
        reader.poll(1.0)
    records = reader.records
    reader.close()
    publisher.close_sync()
    assert _states(records, "act-1") == [ActionState.APPROVED, ActionState.RUNNING, ActionState.SUCCEEDED]
    assert _runs(execs.marks, "act-1") == 1


def test_an_outcome_the_broker_refuses_until_the_executor_stops_is_settled_by_the_next_one(
    broker: object, codec: Codec, topic_prefix: str, tmp_path: Path
) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix, [ACTIONS])
    topic = ACTIONS.full_name(topic_prefix)
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    publisher = KafkaPublisher(bootstrap, codec, topic_prefix)
    reader = TopicReader(bootstrap, codec, ACTIONS, topic_prefix)
    hold = tmp_path / "marks.hold"  # the test operation waits while this file exists
    hold.touch()
    with executors(bootstrap, topic_prefix, tmp_path) as execs:
        approval = publisher.publish_sync(ACTIONS, f"{tenant}:act-1", _mark(tenant, "act-1"))
        first = execs.start()
        reader.wait_for(lambda rs: ActionState.RUNNING in _states(rs, "act-1"), 60.0, "the run to start")
        _set_max_message_bytes(bootstrap, topic, 64)
        hold.unlink()
        _wait_for_log(execs, 1, "succeeded not written (attempt 2")
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0, execs.log(1)[-3000:]
        assert "left for the partition's next owner" in execs.log(1)

        _set_max_message_bytes(bootstrap, topic, 1_048_588)
        restarted = execs.start()
        _wait_until_settled(bootstrap, topic_prefix, approval, restarted)
        reader.poll(1.0)
    records = reader.records
    reader.close()
    publisher.close_sync()
    assert _runs(execs.marks, "act-1") == 1
    assert _states(records, "act-1") == [ActionState.APPROVED, ActionState.RUNNING, ActionState.FAILED]
    assert (_last(records, "act-1").result or "").startswith("interrupted: the executor stopped")


def test_an_executor_stopped_while_it_waits_out_an_abandoned_run_leaves_it_to_the_next_one(
    broker: object, codec: Codec, topic_prefix: str, tmp_path: Path
) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix, [ACTIONS])
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    publisher = KafkaPublisher(bootstrap, codec, topic_prefix)
    # What a crashed executor leaves: the approval and a recent "running", no outcome.
    approval = publisher.publish_sync(ACTIONS, f"{tenant}:act-1", _mark(tenant, "act-1"))
    publisher.publish_sync(ACTIONS, f"{tenant}:act-1", _mark(tenant, "act-1", ActionState.RUNNING))
    with executors(bootstrap, topic_prefix, tmp_path) as execs:
        first = execs.start(abandon_margin_s=600.0)  # still within the window: it waits
        _wait_for_log(execs, 1, "act-1 already ran; not running it again")
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0, execs.log(1)[-3000:]
        _wait_until_settled(bootstrap, topic_prefix, approval, execs.start())
        reader = TopicReader(bootstrap, codec, ACTIONS, topic_prefix)
        reader.poll(1.0)
    records = reader.records
    reader.close()
    publisher.close_sync()
    assert _runs(execs.marks, "act-1") == 0
    assert _states(records, "act-1") == [ActionState.APPROVED, ActionState.RUNNING, ActionState.FAILED]
    assert (_last(records, "act-1").result or "").startswith("interrupted: the executor stopped")


def test_an_automatic_rollback_left_running_by_a_crash_is_settled(
    broker: object, codec: Codec, topic_prefix: str, tmp_path: Path
) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix, [ACTIONS])
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    publisher = KafkaPublisher(bootstrap, codec, topic_prefix)
    # What an executor that died during its automatic rollback leaves: the original failed (with the inverse it
    # recorded), and the rollback written "running" (it has no approval of its own) with no outcome.
    started = datetime.now(UTC) - timedelta(hours=2)
    original = _mark(tenant, "act-1", ActionState.FAILED, at=started).model_copy(
        update={"undo_action": "diagnostics.collect", "undo_params": {"namespace": "insight-system",
                                                                      "workload": "fluent-bit-x7k2p"}})
    rollback = rollback_action(original, state=ActionState.RUNNING, at=started, reason="automatic rollback",
                               keys=DECISION_KEY)
    for record in (_mark(tenant, "act-1", at=started), _mark(tenant, "act-1", ActionState.RUNNING, at=started),
                   original):
        publisher.publish_sync(ACTIONS, f"{tenant}:act-1", record)
    left = publisher.publish_sync(ACTIONS, f"{tenant}:{rollback.action_id}", rollback)
    with executors(bootstrap, topic_prefix, tmp_path) as execs:
        _wait_until_settled(bootstrap, topic_prefix, left, execs.start())
        reader = TopicReader(bootstrap, codec, ACTIONS, topic_prefix)
        reader.poll(1.0)
    records = reader.records
    reader.close()
    publisher.close_sync()
    assert _runs(execs.marks, rollback.action_id) == 0  # settled, not run
    assert _states(records, rollback.action_id) == [ActionState.RUNNING, ActionState.FAILED]
    assert (_last(records, rollback.action_id).result or "").startswith("interrupted: the executor stopped")
    assert _states(records, "act-1") == [ActionState.APPROVED, ActionState.RUNNING, ActionState.FAILED]


def test_a_running_record_behind_another_clients_open_transaction_is_seen_by_the_ledger(
    broker: object, codec: Codec, topic_prefix: str, tmp_path: Path
) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix, [ACTIONS])
    topic = ACTIONS.full_name(topic_prefix)
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    key = f"{tenant}:act-1"
    publisher = KafkaPublisher(bootstrap, codec, topic_prefix)
    approval = publisher.publish_sync(ACTIONS, key, _mark(tenant, "act-1"))
    # Another client's transaction opens on the same partition and stays open; then a crashed executor's
    # "running" record (written long enough ago that nobody can still be on it) lands behind it.
    txn = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"other-{uuid.uuid4().hex}",
                    "transaction.timeout.ms": 300_000, "partitioner": "murmur2_random"})
    txn.init_transactions(30)
    txn.begin_transaction()
    txn.produce(topic, key=key.encode(), value=codec.encode(_mark(tenant, "act-1", ActionState.PROPOSED), topic=topic))
    txn.flush(30)
    publisher.publish_sync(ACTIONS, key, _mark(tenant, "act-1", ActionState.RUNNING,
                                               at=datetime.now(UTC) - timedelta(hours=2)))
    with executors(bootstrap, topic_prefix, tmp_path) as execs:
        _wait_until_settled(bootstrap, topic_prefix, approval, execs.start())
        txn.abort_transaction(30)
        reader = TopicReader(bootstrap, codec, ACTIONS, topic_prefix)
        reader.wait_for(lambda rs: ActionState.FAILED in _states(rs, "act-1"), 30.0, "the settled run")
    records = reader.records
    reader.close()
    publisher.close_sync()
    assert _runs(execs.marks, "act-1") == 0
    assert _states(records, "act-1") == [ActionState.APPROVED, ActionState.RUNNING, ActionState.FAILED]
    assert (_last(records, "act-1").result or "").startswith("interrupted: the executor stopped")


pytestmark = pytest.mark.integration
