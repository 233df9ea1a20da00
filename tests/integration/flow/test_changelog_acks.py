"""Issue 12: a table row the broker did not take is sent again before the alert that made it is committed.

Faust only queues a table change on the table's changelog; a write that failed (the broker gone
silent past the producer's request timeout) was logged and dropped while the input was committed,
and the worker restarted after that rebuilt the table without the row: the next alert of the same
fingerprint opened a second incident. Here the broker goes silent for the dedup-state changelog only
(a TCP proxy in front of real Kafka swallows the produce requests that name it, for longer than the
worker's request timeout), comes back, the worker is killed -9 and restarted, and the alert's repeat
must still join the first incident. A changelog that refuses a row for good (too large for the topic)
keeps the alert in dead-letter with the reason instead of committing it silently.
"""

from __future__ import annotations

import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from producers.mail import parse_mail
from producers.publisher import KafkaPublisher
from schemas.codec import make_codec
from schemas.records import AlertEvent, DeadLetter, EventSource, Incident, Record, SourceKind
from schemas.topics import DEAD_LETTER, INCIDENTS, NORMALIZED
from streams.wiring.topics_admin import DEDUP_STATE
from tests.integration.flow.helpers import TopicReader, committed_offsets
from tests.integration.flow.proxied_worker import wait_until, worker_stack
from tests.support.kafka_proxy import KafkaProxy

pytestmark = pytest.mark.integration

APP_ID = "rcaflow"





def _alert(samples_dir: Path, tenant: str) -> AlertEvent:
    return parse_mail((samples_dir / "etcd_latency.eml").read_bytes(), tenant=tenant, received_at=datetime.now(UTC),
                      source=EventSource(kind=SourceKind.FILE)).events[0]


def _incidents(records: list[Record], tenant: str) -> list[Incident]:
    return [r for r in records if isinstance(r, Incident) and r.tenant == tenant]


def test_a_row_the_silent_broker_dropped_is_sent_again_so_a_restarted_worker_still_knows_the_incident(
    proxied: KafkaProxy, tmp_path: Path, samples_dir: Path
) -> None:
    bootstrap = f"127.0.0.1:{proxied.port}"
    stack = worker_stack(bootstrap, tmp_path, "c")
    prefix = stack.settings.kafka.topic_prefix
    changelog = f"{prefix}{APP_ID}-{DEDUP_STATE}-changelog"
    codec = make_codec(None)
    tenant = f"cl-{uuid.uuid4().hex[:6]}"
    seed = _alert(samples_dir, tenant)
    key = f"{tenant}:{seed.fingerprint}"
    with stack:
        publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
        incidents = TopicReader(stack.bootstrap, codec, INCIDENTS, prefix, alive=stack.check)
        try:
            proxied.hold_produce(changelog)
            first = seed.model_copy(update={"event_id": uuid.uuid4().hex[:24]})
            delivery = publisher.publish_sync(NORMALIZED, key, first)
            # The incident is sent (and acked) before the dedup row is written; then the row's write meets
            # the silent broker, and the producer fails it after its request timeout.
            (opened,) = _incidents(incidents.wait_for(lambda rs: bool(_incidents(rs, tenant)), timeout=120,
                                                      what="the first alert's incident"), tenant)
            assert proxied.swallowed.wait(120), "the dedup row was never written"
            log = tmp_path / "logs" / "worker.log"
            wait_until(lambda: f"_on_published error for message topic {changelog}" in log.read_text(errors="replace"),
                  "the worker's producer to give the row up", alive=stack.check)
            proxied.release()  # the broker answers again

            group = f"{prefix}{APP_ID}"
            wait_until(lambda: committed_offsets(bootstrap, group, delivery.topic)[delivery.partition]
                       > delivery.offset, "the first alert to be committed", alive=stack.check)
            worker = stack.children["worker"]
            worker.send_signal(signal.SIGKILL)
            worker.wait(60)
            stack.start_role("worker")  # rebuilds dedup-state from its changelog

            second = seed.model_copy(update={"event_id": uuid.uuid4().hex[:24]})
            publisher.publish_sync(NORMALIZED, key, second)
            records = incidents.wait_for(lambda rs: any(i.last_event_id == second.event_id
                                                        for i in _incidents(rs, tenant)),
                                         timeout=180, what="the repeat's incident record")
            repeat = next(i for i in _incidents(records, tenant) if i.last_event_id == second.event_id)
            assert (repeat.incident_id, repeat.count) == (opened.incident_id, 2), (
                "the restarted worker did not know the first alert: its dedup row never reached the changelog")
        finally:
            proxied.release()
            publisher.close_sync()
            incidents.close()


def test_a_row_the_changelog_refuses_for_good_keeps_its_alert_in_dead_letter(
    proxied: KafkaProxy, tmp_path: Path, samples_dir: Path
) -> None:
    bootstrap = f"127.0.0.1:{proxied.port}"
    stack = worker_stack(bootstrap, tmp_path, "c")
    prefix = stack.settings.kafka.topic_prefix
    changelog = f"{prefix}{APP_ID}-{DEDUP_STATE}-changelog"
    # A changelog created by hand with a limit no dedup row fits (topics that exist are left as they are).
    admin = AdminClient({"bootstrap.servers": bootstrap})
    created = admin.create_topics([NewTopic(changelog, num_partitions=stack.settings.worker.partitions,
                                            replication_factor=1,
                                            config={"cleanup.policy": "compact", "max.message.bytes": "100"})])
    for future in created.values():
        future.result(30)
    codec = make_codec(None)
    tenant = f"cr-{uuid.uuid4().hex[:6]}"
    alert = _alert(samples_dir, tenant)
    with stack:
        publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
        letters = TopicReader(stack.bootstrap, codec, DEAD_LETTER, prefix, alive=stack.check)
        try:
            delivery = publisher.publish_sync(NORMALIZED, f"{tenant}:{alert.fingerprint}", alert)
            records = letters.wait_for(lambda rs: any(isinstance(r, DeadLetter) and r.tenant == tenant for r in rs),
                                       timeout=120, what="the alert's dead letter")
            (letter,) = [r for r in records if isinstance(r, DeadLetter) and r.tenant == tenant]
            assert letter.stage == "dedup" and letter.reason.startswith("output too large for the broker")
            assert changelog in letter.reason
            assert (letter.source_topic, letter.partition, letter.offset) == (delivery.topic, delivery.partition,
                                                                             delivery.offset)
        finally:
            publisher.close_sync()
            letters.close()
