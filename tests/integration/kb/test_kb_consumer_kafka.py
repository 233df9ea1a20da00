"""``rcaflow kb``'s consumer on real Kafka and a real Elasticsearch: nothing is committed before Elasticsearch
took it, an outage is caught up afterwards, and the lag is exported."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from elasticsearch import Elasticsearch, NotFoundError
from prometheus_client import CollectorRegistry

from producers.publisher import KafkaPublisher
from schemas.codec import make_codec
from streams.kb.consumer import KB_TOPICS, KbConsumer, KbMetrics
from streams.kb.store import KbStore
from streams.wiring.topics_admin import ensure_topics
from tests.integration.kb.records import T0, lifecycle
from tests.integration.kb.records import topic_and_key as _spec_and_key
from tests.support.es.server import EsNode, free_port


def _committed(bootstrap: str, group: str, prefix: str) -> int:
    """Sum of the group's committed offsets over the KB topics (0 when nothing was committed)."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(spec.full_name(prefix), p) for spec in KB_TOPICS for p in range(spec.partitions)]
        return sum(max(tp.offset, 0) for tp in probe.committed(parts, timeout=10))
    finally:
        probe.close()


def _run_until(consumer: KbConsumer, done: Callable[[], bool], seconds: float) -> bool:
    async def go() -> bool:
        task = asyncio.create_task(consumer.run())
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                if await asyncio.to_thread(done):
                    return True
                await asyncio.sleep(0.5)
            return False
        finally:
            consumer.stop()
            await task
    return asyncio.run(go())


def test_nothing_is_committed_before_elasticsearch_took_it(broker: object, topic_prefix: str,
                                                          elasticsearch_node: EsNode) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix)
    codec = make_codec(None)
    records = [r for n in range(3) for r in lifecycle("acme", f"inc-{n}")]
    records += lifecycle("globex", "g-1", start=T0)
    publisher = KafkaPublisher(bootstrap, codec, topic_prefix)
    try:
        for record in records:
            spec, key = _spec_and_key(record)
            publisher.publish_sync(spec, key, record)
    finally:
        publisher.close_sync()
    group = f"kb-{uuid.uuid4().hex[:6]}"
    prefix = f"kbc{uuid.uuid4().hex[:8]}"

    # Elasticsearch down (nothing listens there): the consumer reads, fails to write, and commits nothing.
    down = Elasticsearch(f"http://127.0.0.1:{free_port()}", request_timeout=2, max_retries=0)
    failing_metrics = KbMetrics(CollectorRegistry())
    failing = KbConsumer(bootstrap=bootstrap, codec=codec, store=KbStore(down, prefix=prefix, replicas=0),
                         topic_prefix=topic_prefix, group_id=group, metrics=failing_metrics, retry_s=(0.2, 0.5))
    assert _run_until(failing, lambda: _failures(failing_metrics) >= 3 and _lag(failing_metrics) == len(records), 90)
    assert _committed(bootstrap, f"{topic_prefix}{group}", topic_prefix) == 0  # rcaflow_kb_lag said so too

    # Elasticsearch back: the same group catches up on everything, and commits all of it.
    with Elasticsearch(elasticsearch_node.url, request_timeout=60) as up:
        store = KbStore(up, prefix=prefix, replicas=0)
        store.install_template()
        metrics = KbMetrics(CollectorRegistry())
        consumer = KbConsumer(bootstrap=bootstrap, codec=codec, store=store, topic_prefix=topic_prefix,
                              group_id=group, metrics=metrics)
        assert _run_until(consumer, lambda: _committed(bootstrap, f"{topic_prefix}{group}", topic_prefix)
                          == len(records), 120)
        acme = sorted(store.documents("acme"), key=lambda d: d["incident_id"])
        assert [d["incident_id"] for d in acme] == ["inc-0", "inc-1", "inc-2"]
        assert all(d["resolution"]["fixed_by"] == "restart-vminsert" for d in acme)
        assert [d["incident_id"] for d in store.documents("globex")] == ["g-1"]


def _failures(metrics: KbMetrics) -> float:
    return sum(s.value for m in metrics.failures.collect() for s in m.samples if s.name.endswith("_total"))


def _lag(metrics: KbMetrics) -> float:
    return sum(s.value for m in metrics.lag.collect() for s in m.samples)


def test_the_rcaflow_kb_process_installs_its_template_and_fills_the_kb(broker: object, topic_prefix: str,
                                                                       elasticsearch_node: EsNode,
                                                                       tmp_path: Path) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix)
    codec = make_codec(None)
    publisher = KafkaPublisher(bootstrap, codec, topic_prefix)
    try:
        for record in lifecycle("acme", "proc-1"):
            spec, key = _spec_and_key(record)
            publisher.publish_sync(spec, key, record)
    finally:
        publisher.close_sync()
    prefix = f"kbp{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "RCAFLOW_KAFKA__TOPIC_PREFIX": topic_prefix,
           "RCAFLOW_KB__ELASTICSEARCH_URL": elasticsearch_node.url, "RCAFLOW_KB__INDEX_PREFIX": prefix,
           "RCAFLOW_KB__REPLICAS": "0"}
    log = tmp_path / "kb.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "kb", "run"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        with Elasticsearch(elasticsearch_node.url, request_timeout=30) as client:
            store = KbStore(client, prefix=prefix)
            deadline = time.monotonic() + 120
            doc = None
            while time.monotonic() < deadline and proc.poll() is None:
                with contextlib.suppress(NotFoundError):
                    doc = store.get("acme", "proc-1")
                if doc is not None and doc.get("status") == "resolved":
                    break
                time.sleep(1)
            assert doc is not None and doc["resolution"]["fixed_by"] == "restart-vminsert", log.read_text()[-3000:]
            assert client.indices.get_index_template(name=prefix)["index_templates"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
