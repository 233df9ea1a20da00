"""``rcaflow kb analytics`` on real Kafka and a real Elasticsearch: daily documents per tenant, day and class,
nothing committed while Elasticsearch is down (only the lag grows), `rcaflow stats` reading them and saying so,
and a replay into fresh indices giving the same documents."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from click.testing import CliRunner
from elasticsearch import Elasticsearch
from prometheus_client import CollectorRegistry, generate_latest

from producers.publisher import KafkaPublisher
from schemas.codec import make_codec
from schemas.records import Record
from streams.cli import cli
from streams.kb.analytics import AnalyticsCollector
from streams.kb.analytics_store import AnalyticsStore, read_daily
from streams.kb.consumer import KbConsumer, KbMetrics
from streams.wiring.topics_admin import ensure_topics
from tests.integration.kb.records import T0, lifecycle
from tests.integration.kb.test_kb_consumer_kafka import _committed, _failures, _lag, _run_until, _spec_and_key
from tests.support.es.server import EsNode, free_port


def _records() -> list[Record]:
    return [
        *lifecycle("acme", "a-1", start=T0),                                             # resolved in 300 s, fixed
        *lifecycle("acme", "a-2", start=T0 + timedelta(hours=1), succeed=False),         # ran, failed
        *lifecycle("acme", "a-3", start=T0 + timedelta(days=1), resolve=False),          # next day, still open
        *lifecycle("globex", "g-1", start=T0, alert="VminsertRpcErrors"),
    ]


def _consume(bootstrap: str, topic_prefix: str, store: AnalyticsStore, group: str, expected: int,
             metrics: KbMetrics | None = None) -> None:
    consumer = KbConsumer(bootstrap=bootstrap, codec=make_codec(None), store=store, topic_prefix=topic_prefix,
                          group_id=group, metrics=metrics or KbMetrics(CollectorRegistry(), name="rcaflow_analytics"))
    assert _run_until(consumer, lambda: _committed(bootstrap, f"{topic_prefix}{group}", topic_prefix) == expected, 180)


def test_daily_documents_stats_from_them_and_a_replay(broker: object, topic_prefix: str,
                                                     elasticsearch_node: EsNode) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix)
    records = _records()
    publisher = KafkaPublisher(bootstrap, make_codec(None), topic_prefix)
    try:
        for record in records:
            spec, key = _spec_and_key(record)
            publisher.publish_sync(spec, key, record)
    finally:
        publisher.close_sync()
    group = f"an-{uuid.uuid4().hex[:6]}"
    prefix = f"ana{uuid.uuid4().hex[:8]}"

    # Elasticsearch down: the analytics group reads, writes nothing, commits nothing; the lag says so.
    down = Elasticsearch(f"http://127.0.0.1:{free_port()}", request_timeout=2, max_retries=0)
    failing_metrics = KbMetrics(CollectorRegistry(), name="rcaflow_analytics")
    failing = KbConsumer(bootstrap=bootstrap, codec=make_codec(None), store=AnalyticsStore(down, prefix=prefix),
                         topic_prefix=topic_prefix, group_id=group, metrics=failing_metrics, retry_s=(0.2, 0.5))
    assert _run_until(failing, lambda: _failures(failing_metrics) >= 2 and _lag(failing_metrics) == len(records), 90)
    assert _committed(bootstrap, f"{topic_prefix}{group}", topic_prefix) == 0

    with Elasticsearch(elasticsearch_node.url, request_timeout=60) as client:
        store = AnalyticsStore(client, prefix=prefix, replicas=0)
        store.install_template()
        _consume(bootstrap, topic_prefix, store, group, len(records))
        docs = read_daily(client, prefix)
        assert [(d["tenant"], d["day"], d["alert_class"]) for d in docs] == [
            ("acme", "2026-11-20", "vminsert_write_errors"), ("globex", "2026-11-20", "vminsert_write_errors"),
            ("acme", "2026-11-21", "vminsert_write_errors")]
        day1 = docs[0]
        assert (day1["incidents"], day1["resolved"], day1["alerts"]) == (2, 2, 4)
        assert day1["mtta"] == {"n": 2, "sum_s": 8.0, "avg_s": 4.0}          # alert → first response (policy)
        assert day1["mttr"] == {"n": 2, "sum_s": 600.0, "avg_s": 300.0}      # alert → resolved
        assert day1["llm"] == {"answers": 2, "latency_ms_sum": 1800.0, "latency_ms_avg": 900.0, "tokens": 2400}
        assert day1["actions"] == {"proposed": 2, "approved": 2, "ran": 2, "succeeded": 1, "rolled_back": 0}
        assert (day1["adoption_rate"], day1["rollback_rate"]) == (0.5, 0.0)
        assert day1["top_alerts"] == [{"alert": "VminsertWriteErrors", "alerts": 4}]
        assert docs[1]["top_alerts"] == [{"alert": "VminsertRpcErrors", "alerts": 2}]  # never across tenants
        ids = [h["_id"] for h in client.search(index=f"{prefix}-daily", size=10)["hits"]["hits"]]
        assert sorted(ids) == ["acme:2026-11-20:vminsert_write_errors", "acme:2026-11-21:vminsert_write_errors",
                               "globex:2026-11-20:vminsert_write_errors"]
        assert read_daily(client, prefix, tenant="globex") == [docs[1]]

        # `rcaflow stats` reads them (and says so) instead of scanning the topics.
        env = {"RCAFLOW_KB__ELASTICSEARCH_URL": elasticsearch_node.url, "RCAFLOW_KB__ANALYTICS_PREFIX": prefix,
               "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "RCAFLOW_KAFKA__TOPIC_PREFIX": topic_prefix}
        since = ["--since", (T0 - timedelta(days=2)).isoformat()]
        report = CliRunner(env=env).invoke(cli, ["stats", *since, "--tenant", "acme", "--json"])
        assert report.exit_code == 0, report.output
        body = json.loads(report.stdout)
        assert body["source"] == f"elasticsearch {prefix}-daily"
        acme = body["classes"]["vminsert_write_errors"]
        assert (acme["days"], acme["incidents"], acme["resolved"], acme["mtta_s"], acme["mttr_s"]) == (2, 3, 2, 4.0,
                                                                                                        300.0)
        assert acme["actions"]["succeeded"] == 2 and acme["adoption_rate"] == round(2 / 3, 3)
        table = CliRunner(env=env).invoke(cli, ["stats", *since])
        assert table.exit_code == 0, table.output
        assert table.stdout.splitlines()[0].startswith(f"source: elasticsearch {prefix}-daily")
        assert "VminsertWriteErrors (5)" in table.output

        # Without the analytics documents it scans the topics and says why.
        fallback = CliRunner(env={**env, "RCAFLOW_KB__ANALYTICS_PREFIX": f"none{uuid.uuid4().hex[:6]}"}).invoke(
            cli, ["stats", *since, "--tenant", "acme", "--json"])
        assert fallback.exit_code == 0, fallback.output
        assert json.loads(fallback.stdout)["source"] == "topics"
        assert "does not exist" in json.loads(fallback.stdout)["analytics_not_used"]

        # Prometheus: bounded labels (tenant, class), the numbers of the window.
        registry = CollectorRegistry()
        registry.register(AnalyticsCollector(client, prefix, window=timedelta(days=3650)))
        text = generate_latest(registry).decode()
        assert 'rcaflow_analytics_mttr_seconds{alert_class="vminsert_write_errors",tenant="acme"} 300.0' in text
        assert 'rcaflow_analytics_llm_tokens{alert_class="vminsert_write_errors",tenant="globex"} 1200.0' in text
        assert "VminsertWriteErrors" not in text

        # Replay: a new group into fresh indices gives the same documents, and so does reading it all again.
        fresh = AnalyticsStore(client, prefix=f"anr{uuid.uuid4().hex[:8]}", replicas=0)
        fresh.install_template()
        _consume(bootstrap, topic_prefix, fresh, f"an-{uuid.uuid4().hex[:6]}", len(records))
        assert read_daily(client, fresh.prefix) == docs
        store.apply(records)
        assert read_daily(client, prefix) == docs
