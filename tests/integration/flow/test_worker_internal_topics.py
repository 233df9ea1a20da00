"""Issue 12: every topic the worker uses exists, with the record limit of schemas/limits.py, before it starts.

Faust creates its internal topics (``<app>-audit-input``, ``<app>-notify-input``, the tables'
changelogs, the decide agent's repartition topic) at the first assignment with the broker's 1 MiB
default. The topic admin creates them first; these tests check on the real broker and worker that
the worker then uses no topic the admin did not create, and that a record at the public topics'
limit passes through the internal topics.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from schemas.codec import Codec
from schemas.limits import BATCH_OVERHEAD_BYTES, MAX_RECORD_BYTES, PRODUCER_MAX_REQUEST_BYTES
from schemas.records import ActionEvent, AlertEvent, DeadLetter, Record
from schemas.topics import ACTIONS, DEAD_LETTER, NORMALIZED, RCA_RESULT
from streams.settings import Settings
from streams.wiring.topics_admin import AUDIT_INPUT_SUFFIX, ensure_topics, worker_topics
from tests.integration.flow.conftest import stack_for
from tests.integration.flow.helpers import TopicReader
from tests.integration.flow.test_worker_failure_edges import _triaged

pytestmark = pytest.mark.integration


def _topics(admin: AdminClient, prefix: str) -> set[str]:
    return {name for name in admin.list_topics(timeout=10).topics if prefix in name}


def _max_message_bytes(admin: AdminClient, names: list[str]) -> dict[str, int]:
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    return {resource.name: int(future.result(10)["max.message.bytes"].value)
            for resource, future in admin.describe_configs(resources).items()}


def _at_the_limit(codec: Codec, record: Record, field: str, topic: str) -> bytes:
    """``record`` with ``field`` padded so that its encoded value is exactly MAX_RECORD_BYTES."""
    pad = MAX_RECORD_BYTES - len(codec.encode(record, topic=topic))
    for _ in range(4):  # the string's length prefix grows with it
        value = codec.encode(record.model_copy(update={field: getattr(record, field) + "x" * pad}), topic=topic)
        if len(value) == MAX_RECORD_BYTES:
            return value
        pad -= len(value) - MAX_RECORD_BYTES
    raise AssertionError(f"could not pad {field} to {MAX_RECORD_BYTES} bytes")


def _produce(bootstrap: str, topic: str, key: str, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": PRODUCER_MAX_REQUEST_BYTES})
    errors: list[object] = []
    producer.produce(topic, key=key.encode(), value=value, on_delivery=lambda err, _m: errors.append(err))
    producer.flush(30)
    assert errors == [None], f"the broker refused the record on {topic}: {errors}"


def _shows_up(bootstrap: str, topic: str, want: bytes, timeout: float = 90.0) -> bool:
    """Whether ``want`` shows up as a record value on ``topic`` within ``timeout`` seconds."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "fetch.max.bytes": PRODUCER_MAX_REQUEST_BYTES})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error() and msg.value() == want:
                return True
        return False
    finally:
        consumer.close()


def test_every_topic_the_worker_uses_exists_with_its_limit_and_a_record_at_the_limit_passes_through(
    broker: object, tmp_path: Path, samples_dir: Path, codec: Codec
) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    stack = stack_for(bootstrap, tmp_path, roles=("worker",))
    prefix = stack.settings.kafka.topic_prefix
    worker = Settings().worker
    internal = worker_topics(prefix, worker.app_id, worker.partitions)
    ensure_topics(bootstrap, prefix, internal=internal)

    admin = AdminClient({"bootstrap.servers": bootstrap})
    before = _topics(admin, prefix)
    assert {t.name for t in internal} <= before
    limits = _max_message_bytes(admin, [t.name for t in internal])
    assert limits == {t.name: t.max_record_bytes + BATCH_OVERHEAD_BYTES for t in internal}
    # The two that carry public records verbatim accept the largest record of their sources.
    assert min(limits.values()) >= MAX_RECORD_BYTES + BATCH_OVERHEAD_BYTES

    tenant = f"it-{uuid.uuid4().hex[:6]}"
    # An rca-result record as large as any structured record may be: the decide agent repartitions it by
    # fingerprint through an internal topic before it decides.
    triaged = _triaged(samples_dir, tenant, f"m-{uuid.uuid4().hex[:6]}")
    result = _at_the_limit(codec, triaged, "diagnosis", RCA_RESULT.full_name(prefix))
    # An alert as large: the audit-ingest agent forwards it, with a header, to <app>-audit-input.
    event: AlertEvent = triaged.incident.event
    alert = _at_the_limit(codec, event.model_copy(update={"event_id": f"big-{uuid.uuid4().hex[:6]}"}), "parser",
                          NORMALIZED.full_name(prefix))
    _produce(bootstrap, RCA_RESULT.full_name(prefix), f"{tenant}:{triaged.incident_id}", result)
    _produce(bootstrap, NORMALIZED.full_name(prefix), f"{tenant}:{triaged.incident.fingerprint}", alert)

    with stack:
        actions = TopicReader(bootstrap, codec, ACTIONS, prefix, alive=stack.check)
        letters = TopicReader(bootstrap, codec, DEAD_LETTER, prefix, alive=stack.check)
        try:
            # The big alert may open an incident of its own (dedup passes it on when its Incident fits): wait
            # for the decision on this rca-result, whatever else is decided meanwhile.
            decided = actions.wait_for(
                lambda rs: any(a.incident_id == triaged.incident_id for a in _mine(tenant, rs, ActionEvent)),
                timeout=120, what="the decision on the rca-result at the record limit")
            assert _shows_up(bootstrap, f"{prefix}{worker.app_id}{AUDIT_INPUT_SUFFIX}", alert), \
                "the alert at the record limit never reached the audit input"
            letters.poll(2.0)
        finally:
            actions.close()
            letters.close()
        after = _topics(admin, prefix)

    assert triaged.incident_id in {a.incident_id for a in _mine(tenant, decided, ActionEvent)}
    # Nothing refused on the way: no dead letter from decide or audit-ingest (dedup may refuse the alert's
    # Incident, which embeds the whole alert and so exceeds the record limit; that is the edge's business).
    assert [d.stage for d in _mine(tenant, letters.records, DeadLetter) if d.stage != "dedup"] == []
    # The worker ran, decided and audited, and needed no topic the admin had not created.
    assert after == before


def _mine(tenant: str, records: list[Record], kind: type[Record]) -> list[object]:
    return [r for r in records if isinstance(r, kind) and getattr(r, "tenant", None) == tenant]
