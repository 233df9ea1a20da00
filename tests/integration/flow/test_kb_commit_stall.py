"""An offset commit the group coordinator never answers does not stop the knowledge base.

The knowledge-base consumer used to commit each batch synchronously; a commit that never returns
(confluent-kafka-python #1801) held every later poll, so the knowledge base stopped filling while its process
looked healthy, and its lag gauge (refreshed in the same loop) froze too. The proxy in front of the real broker
drops this consumer's OffsetCommit requests and forwards everything else; the consumer's socket timeout is long,
as in production where the request may never fail. An incident published while the first commit waits must still
reach Elasticsearch, and the wait shows as ``rcaflow_kb_commit_wait_seconds``, growing across the commits asked
again (every second here), so an alert on minutes can fire.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest
from elasticsearch import Elasticsearch, NotFoundError
from prometheus_client import CollectorRegistry

from producers.publisher import KafkaPublisher
from schemas.codec import make_codec
from streams.kb.consumer import KB_TOPICS, KbConsumer, KbMetrics
from streams.kb.store import KbStore
from streams.wiring.topics_admin import ensure_topics
from tests.integration.flow.proxied_worker import wait_until
from tests.integration.kb.records import lifecycle, topic_and_key
from tests.integration.kb.test_kb_consumer_kafka import _committed
from tests.support.es.server import EsNode
from tests.support.kafka_proxy import KafkaProxy

pytestmark = pytest.mark.integration

CONSUMER = "kb-commit-stalled"
#: An unanswered commit is asked again after this long (60 s in production).
RETRY_S = 1.0


def test_the_knowledge_base_fills_while_its_offset_commit_is_unanswered(
    proxied: KafkaProxy, elasticsearch_node: EsNode
) -> None:
    bootstrap = f"127.0.0.1:{proxied.port}"
    topics = f"k{uuid.uuid4().hex[:8]}."
    index = f"kbs{uuid.uuid4().hex[:8]}"
    group = f"kb-{uuid.uuid4().hex[:6]}"
    ensure_topics(bootstrap, topics, KB_TOPICS)
    codec = make_codec(None)
    registry = CollectorRegistry()

    def publish(incident_id: str) -> None:
        publisher = KafkaPublisher(bootstrap, codec, topics)
        try:
            for record in lifecycle("acme", incident_id):
                spec, key = topic_and_key(record)
                publisher.publish_sync(spec, key, record)
        finally:
            publisher.close_sync()

    def resolved(store: KbStore, incident_id: str) -> bool:
        with contextlib.suppress(NotFoundError):
            doc = store.get("acme", incident_id)
            return doc is not None and doc.get("status") == "resolved"
        return False

    proxied.swallow_offset_commits_from(CONSUMER)
    try:
        with Elasticsearch(elasticsearch_node.url, request_timeout=60) as client:
            store = KbStore(client, prefix=index, replicas=0)
            store.install_template()
            publish("inc-before-the-stall")

            async def scenario() -> tuple[float, float, int]:
                # A request the broker never answers fails only after socket.timeout.ms: long here, as a commit
                # that never returns would be.
                extra: dict[str, Any] = {"client.id": CONSUMER, "socket.timeout.ms": 300_000}
                consumer = KbConsumer(bootstrap=bootstrap, extra=extra, codec=codec, store=store,
                                      topic_prefix=topics, group_id=group, metrics=KbMetrics(registry),
                                      commit_retry_s=RETRY_S)
                running = asyncio.create_task(consumer.run())
                try:
                    assert await asyncio.to_thread(proxied.commit_swallowed.wait, 90), "the consumer never committed"
                    await asyncio.to_thread(publish, "inc-during-the-stall")
                    await asyncio.to_thread(wait_until, lambda: resolved(store, "inc-during-the-stall"),
                                            "the incident published during the stall in the knowledge base", 90.0)
                    await asyncio.to_thread(wait_until, lambda: consumer.commit_waiting_s() > 4 * RETRY_S,
                                            "the wait to grow across commits asked again", 60.0)
                    gauge = registry.get_sample_value("rcaflow_kb_commit_wait_seconds")
                    committed = await asyncio.to_thread(_committed, bootstrap, f"{topics}{group}", topics)
                    return consumer.commit_waiting_s(), gauge or 0.0, committed
                finally:
                    consumer.stop()
                    proxied.swallow_offset_commits_from(None)  # the lost commit fails now, so the consumer can close
                    await running

            waiting, gauge, committed = asyncio.run(scenario())
            assert resolved(store, "inc-before-the-stall")
    finally:
        proxied.swallow_offset_commits_from(None)
    assert waiting > 4 * RETRY_S and gauge > 4 * RETRY_S, "the unanswered commits were not reported as waiting"
    assert committed == 0, f"a commit got through the proxy: {committed}"
