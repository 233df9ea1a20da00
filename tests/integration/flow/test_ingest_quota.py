"""Per-tenant ingest quota on the real broker: acme over its quota gets 429 + Retry-After, other's posts land."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from producers.publisher import KafkaPublisher
from schemas.codec import make_codec
from schemas.records import AlertEvent
from schemas.topics import NORMALIZED
from streams.api.app import TenantAuth, create_app
from streams.settings import KafkaSettings, Settings, TenantIngestSettings, TenantSettings
from streams.wiring.runtime import build_stages
from streams.wiring.tenants import build_ingest_quota
from streams.wiring.topics_admin import ensure_topics
from tests.integration.flow.helpers import TopicReader

SEED = {
    "alert": "PrometheusRemoteWriteBehind", "severity": "P2",
    "labels": {"cluster": "c1", "namespace": "insight-system", "workload": "prometheus-0", "component": "prometheus"},
    "metrics": {"times": 1, "first_occur": "2026-12-06T09:00:00Z"},
    "raw": {"mail_subject": "s", "mail_id": "<1@x>"},
}


def _seed(i: int) -> dict[str, object]:
    return {**SEED, "labels": {**SEED["labels"], "workload": f"prometheus-{i}"}}  # type: ignore[dict-item]


def test_a_tenant_over_its_quota_gets_429_while_another_is_accepted(broker: object, topic_prefix: str) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix)
    settings = Settings(
        kafka_bootstrap_servers=bootstrap, kafka=KafkaSettings(topic_prefix=topic_prefix),
        tenants={
            # One alert a minute after a burst of 3: no refill can happen while the test runs.
            "acme": TenantSettings(token=SecretStr("a-token"), namespaces=["a"], senders=["*@a.test"],
                                   ingest=TenantIngestSettings(alerts_per_minute=1, burst=3)),
            "other": TenantSettings(token=SecretStr("o-token"), namespaces=["o"], senders=["*@o.test"]),
        })
    codec, registry = make_codec(None), CollectorRegistry()
    publisher = KafkaPublisher(bootstrap, codec, topic_prefix)
    app = create_app(normalize=build_stages(settings).normalize, publisher=publisher, codec=codec,
                     auth=TenantAuth({n: t.token for n, t in settings.tenants.items()}, "default"),
                     registry=registry, topic_prefix=topic_prefix, quota=build_ingest_quota(settings, registry))
    acme, other = {"Authorization": "Bearer a-token"}, {"Authorization": "Bearer o-token"}
    with TestClient(app) as client:
        assert [client.post("/events", json=_seed(i), headers=acme).status_code for i in range(3)] == [202] * 3
        over = client.post("/events", json=_seed(3), headers=acme)
        assert over.status_code == 429, over.text
        assert over.json()["reason"] == "quota_exceeded" and "tenant acme is over its ingest quota" in \
            over.json()["detail"]
        assert int(over.headers["retry-after"]) >= 1
        # A webhook batch of acme's is deferred too; other's posts are all accepted meanwhile.
        batch = client.post("/webhook", headers=acme, json={"alerts": [
            {"labels": {"alertname": "X", "pod": "p"}, "status": "firing"}]})
        assert batch.status_code == 429
        assert [client.post("/events", json=_seed(i), headers=other).status_code for i in range(6)] == [202] * 6
        metrics = client.get("/metrics").text
        throttled = 'rcaflow_ingest_throttled_total{reason="quota_exceeded",source="%s",tenant="acme"} 1.0'
        assert throttled % "events-api" in metrics
        assert throttled % "alertmanager-webhook" in metrics
        assert 'tenant="other"' not in metrics.split("rcaflow_ingest_throttled_total", 1)[1].split("# HELP")[0]
    publisher.close_sync()
    reader = TopicReader(bootstrap, codec, NORMALIZED, topic_prefix)
    found = reader.wait_for(lambda rs: len(rs) >= 9, what="3 of acme's and 6 of other's alerts on normalized")
    reader.close()
    by_tenant = [r.tenant for r in found if isinstance(r, AlertEvent)]
    assert sorted(by_tenant) == ["acme"] * 3 + ["other"] * 6
