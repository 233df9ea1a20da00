"""The knowledge base's consumers' catch-up rate: a backlog of incident lifecycles into a real Elasticsearch.

A real :class:`streams.kb.consumer.KbConsumer` reads a backlog already on the broker: ``--incidents``
lifecycles of 10 records each over the four topics it consumes (incidents, rca-result, actions, approvals),
written as fast as a producer goes before the consumer starts. Its store is what ``rcaflow kb run`` builds
(``kb``: :class:`streams.kb.store.KbStore`, one document per incident) or what ``rcaflow kb analytics`` builds
(``analytics``: :class:`streams.kb.analytics_store.AnalyticsStore`, its own facts plus the daily documents each
batch touched, rewritten). The clock runs from the consumer's start to the moment the group's committed offsets
reach the end of every partition; records/s is the backlog over that time. Each partition count is a scenario
on topics of its own (``--partitions 3 12``: the default topic size, and one with more partitions, where a cost
per partition shows). A first, unrecorded scenario of ``--warmup`` incidents warms Elasticsearch up (its first
bulk requests are several times slower). The load average is recorded: the machine is shared, so the rates
move with it.

    python -m benchmarks.kb_bench --incidents 1000 --partitions 3 12 --out benchmarks/results.json
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from elasticsearch import Elasticsearch
from prometheus_client import CollectorRegistry

from benchmarks.floor_bench import bench_broker, load
from benchmarks.results import RESULTS, write_results
from schemas.codec import Codec, make_codec
from streams.kb.analytics_store import AnalyticsStore
from streams.kb.consumer import KB_TOPICS, KbConsumer, KbMetrics
from streams.kb.store import KbStore
from streams.wiring.topics_admin import ensure_topics
from tests.integration.kb.records import T0, lifecycle, topic_and_key
from tests.support.es.server import EsNode

#: A scenario that has not caught up after this long stops the benchmark.
CATCH_UP_TIMEOUT_S = 900.0
TENANTS = ("acme", "globex", "initech")


def feed(bootstrap: str, codec: Codec, prefix: str, incidents: int) -> int:
    """Writes the backlog; returns how many records it holds."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    count = 0
    for n in range(incidents):
        tenant = TENANTS[n % len(TENANTS)]
        start = T0 + timedelta(minutes=n)
        for record in lifecycle(tenant, f"inc-{n}", alert=f"Alert{n % 50}", start=start):
            spec, key = topic_and_key(record)
            topic = spec.full_name(prefix)
            value = codec.encode(record, topic=topic)
            while True:
                try:
                    producer.produce(topic, value=value, key=key.encode())
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
            count += 1
    if producer.flush(60):
        raise SystemExit("the backlog was not all written within 60 s")
    return count


def committed_total(bootstrap: str, group: str, partitions: list[TopicPartition]) -> int:
    """The group's committed offsets summed; -1 while the broker cannot say (its coordinator still loading)."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return sum(max(tp.offset, 0) for tp in probe.committed(partitions, timeout=10))
    except KafkaException:
        return -1
    finally:
        probe.close()


def scenario(bootstrap: str, es_url: str, incidents: int, partitions: int, kind: str = "kb") -> dict[str, Any]:
    prefix = f"kbb{uuid.uuid4().hex[:6]}."
    index = f"kbb{uuid.uuid4().hex[:6]}"
    group = "rcaflow-kb" if kind == "kb" else "rcaflow-analytics"
    ensure_topics(bootstrap, prefix, KB_TOPICS, partitions=partitions)
    codec = make_codec(None)
    records = feed(bootstrap, codec, prefix, incidents)
    parts = [TopicPartition(spec.full_name(prefix), p) for spec in KB_TOPICS for p in range(partitions)]
    load_before = load()

    async def run() -> float:
        with Elasticsearch(es_url, request_timeout=60) as client:
            store: KbStore | AnalyticsStore = (KbStore(client, prefix=index, replicas=0) if kind == "kb"
                                               else AnalyticsStore(client, prefix=index, replicas=0))
            store.install_template()
            metrics = KbMetrics(CollectorRegistry(), name="rcaflow_kb" if kind == "kb" else "rcaflow_analytics")
            consumer = KbConsumer(bootstrap=bootstrap, codec=codec, store=store, topic_prefix=prefix,
                                  group_id=group, metrics=metrics)
            started = time.monotonic()
            task = asyncio.create_task(consumer.run())
            try:
                while time.monotonic() - started < CATCH_UP_TIMEOUT_S:
                    if task.done():
                        task.result()
                    done = await asyncio.to_thread(committed_total, bootstrap, f"{prefix}{group}", parts)
                    if done >= records:
                        return time.monotonic() - started
                    await asyncio.sleep(0.5)
                raise SystemExit(f"the knowledge base did not catch up on {records} records within "
                                 f"{CATCH_UP_TIMEOUT_S:.0f} s")
            finally:
                consumer.stop()
                await task

    seconds = asyncio.run(run())
    return {"consumer": kind, "partitions": partitions, "topics": len(KB_TOPICS), "incidents": incidents,
            "records": records,
            "catch_up_s": round(seconds, 1), "records_per_s": round(records / seconds, 1),
            "incidents_per_min": round(incidents / seconds * 60, 1),
            "load_avg_before": load_before, "load_avg_after": load()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--partitions", type=int, nargs="+", default=[3, 12])
    parser.add_argument("--warmup", type=int, default=200, help="incidents of the unrecorded first scenario")
    parser.add_argument("--consumers", nargs="+", choices=["kb", "analytics"], default=["kb", "analytics"],
                        help="kb: rcaflow kb run's store; analytics: rcaflow kb analytics' (facts + daily rollups)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--label", default="", help="what this tree is (kept with the result)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results: dict[str, Any] = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                               "machine": f"{platform.machine()}, Python {platform.python_version()}",
                               "how": "KbConsumer + KbStore on a backlog of lifecycles (10 records each), from "
                                      "the consumer's start until the group's committed offsets reach the end",
                               "label": args.label, "scenarios": {}}
    with tempfile.TemporaryDirectory(prefix="rcaflow-kb-bench-") as tmp_name, \
            bench_broker(Path(tmp_name)) as (bootstrap, broker_kind):
        results["broker"] = broker_kind
        node = EsNode().start()
        try:
            if args.warmup:
                scenario(bootstrap, node.url, args.warmup, args.partitions[0])
            for kind in args.consumers:
                for partitions in args.partitions:
                    result = scenario(bootstrap, node.url, args.incidents, partitions, kind)
                    results["scenarios"][f"{kind}_partitions_{partitions}"] = result
                    print(json.dumps(result), file=sys.stderr, flush=True)
        finally:
            node.stop()
    write_results("kb", results, args.out)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
