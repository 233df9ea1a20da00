"""The lag exporter cannot crash the process it runs in when its group's coordinator moves, and its reading of
the group never disturbs the group's members.

A broker answers OffsetFetch with NOT_COORDINATOR while the group's coordinator loads (after a fresh start) and
when it moves (every rolling restart). Asked through the admin client, librdkafka (issue #5040) then ends the
whole process with SIGSEGV (exit code -11): a worker, an executor mid-action. The proxy in front of the real
broker gives that answer to the exporter's client (by ``client.id``) a few times; the exporter, run in a process
of its own, must log the failed reads, go on, export the lag once the broker answers, and exit normally.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from prometheus_client import CollectorRegistry

from streams.wiring.consumer_lag import ConsumerLag
from tests.integration.flow.proxied_worker import wait_until
from tests.support.kafka_proxy import KafkaProxy

ROOT = Path(__file__).resolve().parents[3]
NOT_COORDINATOR = 16
#: Requests by which a client joins, stays in or leaves a group (JoinGroup, Heartbeat, LeaveGroup, SyncGroup,
#: ConsumerGroupHeartbeat): any of them from the exporter could rebalance the group's real members.
MEMBERSHIP_API_KEYS = {11, 12, 13, 14, 68}
OFFSET_FETCH = 9

#: A process hosting the exporter (as the worker, executor and kb do): it prints the lag once it is exported.
EXPORTER_PROCESS = """
import logging, sys, time
from prometheus_client import CollectorRegistry
from streams.wiring.consumer_lag import ConsumerLag

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
bootstrap, client_id, group, topic = sys.argv[1:5]
registry = CollectorRegistry()
lag = ConsumerLag({"bootstrap.servers": bootstrap, "client.id": client_id}, [group], every_s=0.2)
registry.register(lag)
lag.start()
labels = {"group": group, "topic": topic}
deadline = time.monotonic() + 120
while registry.get_sample_value("rcaflow_consumer_lag_records", labels) is None and time.monotonic() < deadline:
    time.sleep(0.1)
print(registry.get_sample_value("rcaflow_consumer_lag_records", labels), flush=True)
lag.stop()
"""


def _topic_with_commits(bootstrap: str, topic: str, group: str) -> None:
    """``topic`` with 10 records on 2 partitions; ``group`` committed 2 of partition 0 and 1 of partition 1:
    7 behind."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)]).values():
        future.result(60)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(10):
        producer.produce(topic, value=b"x", partition=i % 2)
    assert producer.flush(30) == 0
    committer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committer.commit(offsets=[TopicPartition(topic, 0, 2), TopicPartition(topic, 1, 1)], asynchronous=False)
    finally:
        committer.close()


def test_the_exporter_survives_not_coordinator_answers_and_exports_the_lag_after(proxied: KafkaProxy) -> None:
    bootstrap = f"127.0.0.1:{proxied.port}"
    run = uuid.uuid4().hex[:8]
    topic, group, client_id = f"lag{run}.actions", f"lag{run}.rcaflow-executor", f"lag-exporter-{run}"
    _topic_with_commits(bootstrap, topic, group)
    answered_before = proxied.offset_fetch_answered
    proxied.answer_offset_fetch_from(client_id, NOT_COORDINATOR, times=3)

    done = subprocess.run([sys.executable, "-c", EXPORTER_PROCESS, bootstrap, client_id, group, topic], cwd=ROOT,
                          capture_output=True, text=True, timeout=240, check=False)

    assert done.returncode == 0, (f"the exporter's process ended with {done.returncode} (-11: SIGSEGV, "
                                  f"librdkafka #5040)\n{done.stderr[-4000:]}")
    assert proxied.offset_fetch_answered - answered_before == 3, "the broker's answer was not NOT_COORDINATOR"
    assert float(done.stdout.split()[-1]) == 7, done.stdout  # the lag, once the coordinator answers
    assert f"consumer lag of {group} not readable" in done.stderr, done.stderr[-4000:]
    assert "NOT_COORDINATOR" in done.stderr, done.stderr[-4000:]
    assert f"consumer lag of {group} readable again" in done.stderr, done.stderr[-4000:]


def test_reading_and_closing_the_exporter_never_rebalances_the_groups_members(proxied: KafkaProxy) -> None:
    bootstrap = f"127.0.0.1:{proxied.port}"
    run = uuid.uuid4().hex[:8]
    topic, group, exporter_id = f"lag{run}.actions", f"lag{run}.rcaflow-executor", f"lag-exporter-{run}"
    _topic_with_commits(bootstrap, topic, group)
    assigned: list[list[TopicPartition]] = []
    revoked: list[list[TopicPartition]] = []
    member = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": f"member-{run}",
                       "enable.auto.commit": False})
    member.subscribe([topic], on_assign=lambda _c, ps: assigned.append(ps),
                     on_revoke=lambda _c, ps: revoked.append(ps))
    registry = CollectorRegistry()
    lag = ConsumerLag({"bootstrap.servers": bootstrap, "client.id": exporter_id}, [group], every_s=0.2)
    registry.register(lag)
    labels = {"group": group, "topic": topic}
    try:
        wait_until(lambda: member.poll(0.2) is not None and bool(assigned), "the member's first record")
        lag.start()
        wait_until(lambda: member.poll(0.2) is None
                   and registry.get_sample_value("rcaflow_consumer_lag_records", labels) is not None,
                   "the exporter's first read")
        lag.stop()  # closes the exporter's consumer of the group
        after = f"after-{run}".encode()
        producer = Producer({"bootstrap.servers": bootstrap})
        producer.produce(topic, value=after, partition=0)
        assert producer.flush(30) == 0

        def got_it() -> bool:
            message = member.poll(0.2)
            return message is not None and message.error() is None and message.value() == after

        wait_until(got_it, "the member to take a record written after the exporter closed")
        kept = (len(assigned), len(revoked))  # before the member's own close revokes its partitions
    finally:
        lag.stop()
        member.close()

    sent = proxied.api_keys_from(exporter_id)
    assert OFFSET_FETCH in sent, sent  # it did read the group
    assert not sent & MEMBERSHIP_API_KEYS, f"the exporter took part in the group: API keys {sorted(sent)}"
    assert kept == (1, 0), f"the member was rebalanced: assigned {assigned}, revoked {revoked}"

