"""The audit agent chains in rounds, but a head row never reaches its changelog before the records it claims.

The audit agent hands a round of chain records to the broker and stores each tenant's new head only once
they are acknowledged. Here the broker goes silent for the audit topic (a TCP proxy in front of real
Kafka swallows the produce requests naming it) while a backlog of mails for a few tenants arrives: no
head row for those tenants may reach the ``audit-head`` changelog. Then the worker is killed -9 (what the
proxy held is dropped, never delivered), the broker answers again and the worker restarts: each tenant's
chain must verify (crash artefacts at most, no tampering alarm), and every step routed into the audit
agent must be on it exactly once. A round the broker refuses for good (an audit topic whose limit no
record fits) is chained again one input at a time, and each input is kept in dead-letter with the reason.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from producers.publisher import KafkaPublisher
from schemas.codec import make_codec
from schemas.records import ActionEvent, AuditKind, AuditRecord, DeadLetter, RawMail, Record, SourceKind
from schemas.topics import ACTIONS, AUDIT, DEAD_LETTER, RAW_MAIL
from streams.ops.audit_check import check_chains
from streams.stages.audit import content_id
from streams.wiring.topics_admin import AUDIT_HEAD, AUDIT_INPUT_SUFFIX
from streams.worker.app import partition_of
from tests.integration.flow.helpers import TopicReader, committed_offsets, read_all
from tests.integration.flow.proxied_worker import wait_until, worker_stack
from tests.support.kafka_proxy import KafkaProxy

pytestmark = pytest.mark.integration

APP_ID = "rcaflow"
TENANTS = 4
MAILS_PER_TENANT = 3


def _mail(samples_dir: Path, tenant: str, n: int) -> RawMail:
    return RawMail(tenant=tenant, message_id=f"<{tenant}-{n}@audit-rounds>", mailbox="test", source=SourceKind.FILE,
                   received_at=datetime.now(UTC), subject="etcd", raw=(samples_dir / "etcd_latency.eml").read_bytes())


def _ends(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    finally:
        consumer.close()


def _branch(records: Iterable[AuditRecord], tenant: str) -> list[AuditRecord]:
    """The tenant's surviving chain: from its newest record back along prev_hash to the genesis."""
    mine = [r for r in records if r.tenant == tenant]
    if not mine:
        return []
    by_hash = {r.hash: r for r in mine}
    branch = [mine[-1]]
    while branch[-1].prev_hash in by_hash:
        branch.append(by_hash[branch[-1].prev_hash])
    return branch[::-1]


def test_a_head_row_never_claims_an_audit_record_the_topic_lacks_and_a_restart_chains_every_step_once(
    proxied: KafkaProxy, tmp_path: Path, samples_dir: Path
) -> None:
    bootstrap = f"127.0.0.1:{proxied.port}"
    stack = worker_stack(bootstrap, tmp_path, "r")
    prefix = stack.settings.kafka.topic_prefix
    group = f"{prefix}{APP_ID}"
    audit_input = f"{group}{AUDIT_INPUT_SUFFIX}"
    head_changelog = f"{group}-{AUDIT_HEAD}-changelog"
    codec = make_codec(None)
    run = uuid.uuid4().hex[:6]
    with stack:
        publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
        audit = TopicReader(stack.bootstrap, codec, AUDIT, prefix, alive=stack.check)
        try:
            # Warm up: tenants whose mails touch every raw-mail and every audit-input partition, so each has a
            # committed offset before the kill (a worker killed before its first commit on a partition may
            # consume nothing there after a restart: /work/shared/MEASURED.md, not this rule).
            partitions = stack.settings.worker.partitions
            raw_left, input_left, warm = set(range(partitions)), set(range(partitions)), []
            for i in range(1000):
                tenant = f"rw-{run}-{i}"
                raw_p, input_p = partition_of(f"{tenant}:0", partitions), partition_of(tenant, partitions)
                if raw_p in raw_left or input_p in input_left:
                    warm.append(tenant)
                    raw_left.discard(raw_p)
                    input_left.discard(input_p)
                if not raw_left and not input_left:
                    break
            for tenant in warm:
                publisher.publish_sync(RAW_MAIL, f"{tenant}:0", _mail(samples_dir, tenant, 0))
            # ... and all of their audit steps chained and committed (the alert and every action the decision
            # proposed), so the round the broker holds next is the backlog's.
            actions = TopicReader(stack.bootstrap, codec, ACTIONS, prefix, alive=stack.check)
            try:
                acted = actions.wait_for(lambda rs: set(warm) <= {r.tenant for r in rs if isinstance(r, ActionEvent)},
                                         timeout=180, what="the warm-up tenants' actions")
                warm_actions = Counter(r.tenant for r in acted if isinstance(r, ActionEvent))
            finally:
                actions.close()
            def warm_chained(rs: list[Record]) -> bool:
                chained = Counter(r.tenant for r in rs if isinstance(r, AuditRecord))
                return all(chained[t] >= 1 + warm_actions[t] for t in warm)

            audit.wait_for(warm_chained, timeout=180, what="every warm-up step on the audit topic")
            wait_until(lambda: committed_offsets(bootstrap, group, audit_input) == _ends(bootstrap, audit_input),
                       "audit-input to be committed to its end", timeout=180, alive=stack.check)

            proxied.hold_produce(AUDIT.full_name(prefix))  # the broker goes silent for the audit records
            tenants = [f"rb-{run}-{i}" for i in range(TENANTS)]
            for n in range(MAILS_PER_TENANT):
                for tenant in tenants:
                    publisher.publish_sync(RAW_MAIL, f"{tenant}:{n}", _mail(samples_dir, tenant, n))
            assert proxied.swallowed.wait(120), "the worker never sent the backlog's audit records"
            # Past the producer's request timeout the round's batch failed and is being sent again, with
            # backoff: by then a worker that stored heads ahead of their records would have written them.
            log = tmp_path / "logs" / "worker.log"
            wait_until(lambda: "audit: sending a batch" in log.read_text(errors="replace"),
                       "the audit round to be sent again", alive=stack.check)
            claimed = {json.loads(key) for key, _ in read_all(bootstrap, head_changelog)}
            assert not claimed & set(tenants), (
                f"audit-head rows reached the changelog for {sorted(claimed & set(tenants))} while their audit "
                "records were held by the broker")

            worker = stack.children["worker"]
            worker.send_signal(signal.SIGKILL)  # what the proxy held is dropped with the connections
            worker.wait(60)
            proxied.release()
            stack.start_role("worker")

            def routed() -> dict[str, set[str]]:
                """Per backlog tenant, the content id of every step routed into the audit agent (copies included)."""
                steps: dict[str, set[str]] = {}
                for key, value in read_all(bootstrap, audit_input):
                    tenant = key.decode()
                    if tenant in tenants:
                        steps.setdefault(tenant, set()).add(content_id(value))
                return steps

            def chained(records: list[Record]) -> bool:
                steps = routed()
                audits = [r for r in records if isinstance(r, AuditRecord)]
                return all(
                    len([r for r in _branch(audits, t) if r.kind is AuditKind.INGEST]) >= MAILS_PER_TENANT
                    and steps.get(t, set()) <= {r.detail.get("source") for r in _branch(audits, t)}
                    for t in tenants)

            records = audit.wait_for(chained, timeout=150, what="every routed step on each tenant's chain")
            audits = [r for r in records if isinstance(r, AuditRecord)]
            alarms = [f for f in check_chains(audits) if f.tampering]
            assert not alarms, [str(f) for f in alarms]
            steps = routed()
            for tenant in tenants:
                sources = [r.detail.get("source") for r in _branch(audits, tenant)]
                assert len(sources) == len(set(sources)), f"{tenant}: a step chained twice: {sources}"
                assert set(sources) == steps[tenant], f"{tenant}: chain {sources} != routed {sorted(steps[tenant])}"
        finally:
            proxied.release()
            publisher.close_sync()
            audit.close()


def test_a_round_the_broker_refuses_for_good_is_chained_one_by_one_and_each_input_kept_in_dead_letter(
    proxied: KafkaProxy, tmp_path: Path, samples_dir: Path
) -> None:
    bootstrap = f"127.0.0.1:{proxied.port}"
    stack = worker_stack(bootstrap, tmp_path, "q")
    prefix = stack.settings.kafka.topic_prefix
    topic = AUDIT.full_name(prefix)
    # An audit topic created by hand with a limit no audit record fits (topics that exist are left as they are).
    admin = AdminClient({"bootstrap.servers": bootstrap})
    created = admin.create_topics([NewTopic(topic, num_partitions=AUDIT.partitions, replication_factor=1,
                                            config={"max.message.bytes": "100"})])
    for future in created.values():
        future.result(30)
    codec = make_codec(None)
    run = uuid.uuid4().hex[:6]
    tenants = [f"rq-{run}-{i}" for i in range(3)]
    with stack:
        publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
        letters = TopicReader(stack.bootstrap, codec, DEAD_LETTER, prefix, alive=stack.check)
        try:
            for tenant in tenants:
                publisher.publish_sync(RAW_MAIL, f"{tenant}:0", _mail(samples_dir, tenant, 0))

            def kept(records: list[Record]) -> list[DeadLetter]:
                return [r for r in records if isinstance(r, DeadLetter) and r.stage == "audit"]

            records = letters.wait_for(lambda rs: set(tenants) <= {r.tenant for r in kept(rs)}, timeout=180,
                                       what="each tenant's audit inputs in dead-letter")
            for letter in kept(records):
                assert letter.reason.startswith("output too large for the broker"), letter.reason
                assert topic in letter.reason
        finally:
            publisher.close_sync()
            letters.close()
