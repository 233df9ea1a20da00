"""Issue 18: a pipelined agent goes on while its outputs are in flight, but never commits an input before them.

The normalize agent hands its alerts to the producer and takes the next mail without waiting for the
broker's acks; the mail itself is acked only once its alerts are acknowledged, in the order the mails
came. Here the broker goes silent for the worker's producer (a TCP proxy in front of real Kafka swallows
the produce requests from the first one that names the normalized topic on) while a backlog of mails
arrives: the worker's group must not commit raw-mail past the first mail whose alerts are held. Then the
worker is killed -9 (what the proxy held is dropped, never delivered), the broker answers again, the
worker restarts, and every mail of the backlog must still become its alert.
"""

from __future__ import annotations

import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from producers.publisher import KafkaPublisher
from schemas.codec import make_codec
from schemas.records import AlertEvent, DeadLetter, RawMail, Record, SourceKind
from schemas.topics import DEAD_LETTER, NORMALIZED, RAW_MAIL
from streams.worker.app import partition_of
from tests.integration.flow.helpers import TopicReader, committed_offsets
from tests.integration.flow.proxied_worker import wait_until, worker_stack
from tests.support.kafka_proxy import KafkaProxy

pytestmark = pytest.mark.integration

APP_ID = "rcaflow"
BACKLOG = 12




def _mail(samples_dir: Path, tenant: str) -> RawMail:
    return RawMail(tenant=tenant, message_id=f"<{tenant}@pipelined>", mailbox="test", source=SourceKind.FILE,
                   received_at=datetime.now(UTC), subject="etcd", raw=(samples_dir / "etcd_latency.eml").read_bytes())


def _tenants(records: list[Record]) -> set[str]:
    return {r.tenant for r in records if isinstance(r, AlertEvent | DeadLetter)}


def test_mails_whose_alerts_were_in_flight_are_not_committed_and_survive_a_kill(
    proxied: KafkaProxy, tmp_path: Path, samples_dir: Path
) -> None:
    bootstrap = f"127.0.0.1:{proxied.port}"
    stack = worker_stack(bootstrap, tmp_path, "p")
    prefix = stack.settings.kafka.topic_prefix
    group = f"{prefix}{APP_ID}"
    raw_topic = RAW_MAIL.full_name(prefix)
    codec = make_codec(None)
    run = uuid.uuid4().hex[:6]
    with stack:
        publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
        normalized = TopicReader(stack.bootstrap, codec, NORMALIZED, prefix, alive=stack.check)
        letters = TopicReader(stack.bootstrap, codec, DEAD_LETTER, prefix, alive=stack.check)
        try:
            # One mail per raw-mail partition first, so each has a committed offset before the broker goes
            # silent (a worker killed before its first commit on a partition may consume nothing there after
            # a restart: /work/shared/MEASURED.md, a Faust/aiokafka matter of its own, not this rule).
            partitions = stack.settings.worker.partitions
            warm: dict[int, str] = {}
            for i in range(1000):
                if len(warm) == partitions:
                    break
                warm.setdefault(partition_of(f"pw-{run}-{i}:0", partitions), f"pw-{run}-{i}")
            for tenant in warm.values():
                publisher.publish_sync(RAW_MAIL, f"{tenant}:0", _mail(samples_dir, tenant))
            normalized.wait_for(lambda rs: set(warm.values()) <= _tenants(rs), timeout=180,
                                what="the first mails' alerts")
            wait_until(lambda: min(committed_offsets(bootstrap, group, raw_topic).values()) >= 1,
                  "the first mails to be committed on every partition", alive=stack.check)
            before = committed_offsets(bootstrap, group, raw_topic)

            proxied.hold_produce(NORMALIZED.full_name(prefix))  # the producer's broker goes silent
            tenants = [f"pb-{run}-{i}" for i in range(BACKLOG)]
            for tenant in tenants:
                publisher.publish_sync(RAW_MAIL, f"{tenant}:0", _mail(samples_dir, tenant))
            assert proxied.swallowed.wait(120), "the worker never sent the backlog's alerts"
            # Past the request timeout the producer fails the held batch and the guard sends it again, with
            # backoff: by then a worker that acked mails ahead of their alerts would have committed them.
            log = tmp_path / "logs" / "worker.log"
            wait_until(lambda: "retrying for" in log.read_text(errors="replace")
                  or committed_offsets(bootstrap, group, raw_topic) != before,
                  "the worker to send the held alerts again", alive=stack.check)
            held = committed_offsets(bootstrap, group, raw_topic)
            assert held == before, (
                f"raw-mail was committed past mails whose alerts the broker never acknowledged: {before} -> {held}")

            worker = stack.children["worker"]
            worker.send_signal(signal.SIGKILL)  # what the proxy held is dropped with the connections
            worker.wait(60)
            proxied.release()
            stack.start_role("worker")

            def accounted(alerts: list[Record]) -> bool:
                letters.poll(0.1)  # a mail that is not an alert would be kept here, with the reason
                return set(tenants) <= _tenants(alerts) | _tenants(letters.records)

            records = normalized.wait_for(accounted, timeout=240, what="every mail of the backlog to become its alert")
            assert set(tenants) <= _tenants(records) | _tenants(letters.records)
        finally:
            proxied.release()
            publisher.close_sync()
            normalized.close()
            letters.close()
