"""The API process at its failure edges, on the real broker: readiness that recovers, input too large for good."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from confluent_kafka.admin import AdminClient, NewTopic
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from producers.fingerprint import alert_fingerprint
from producers.publisher import KafkaPublisher
from schemas.codec import make_codec
from schemas.limits import MAX_LABEL_VALUE_BYTES
from schemas.records import AlertEvent, DeadLetter
from schemas.topics import DEAD_LETTER, NORMALIZED
from streams.api.app import TenantAuth, create_app
from streams.api.process import build_api
from streams.settings import ApiSettings, ApprovalSettings, KafkaSettings, SecuritySettings, Settings, TenantSettings
from streams.wiring.runtime import build_stages
from streams.wiring.topics_admin import ensure_topics
from tests.integration.flow.helpers import TopicReader
from tests.support.approval_keys import APPROVAL_KEY

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.2)


def test_readiness_recovers_when_the_topics_appear_after_the_api_started(broker: object, topic_prefix: str) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        kafka=KafkaSettings(topic_prefix=topic_prefix),
        tenants={"acme": TenantSettings(token=SecretStr(TOKEN), namespaces=["insight-system"])},
        api=ApiSettings(loop_backoff_max_s=0.5, unhealthy_after_s=2.0),
        approvals=ApprovalSettings(slack_signing_secret=SecretStr("8f742231b10e8888abcd99yyyzzz85a5"),
                                   approvers={"acme": ["slack:U1"]}),
        security=SecuritySettings(approval_key=SecretStr(APPROVAL_KEY)),  # the API signs what it publishes
    )
    app = build_api(settings, bootstrap, build_stages(settings), TenantAuth({"acme": SecretStr(TOKEN)}, "default"),
                    registry=CollectorRegistry())
    with TestClient(app) as client:
        # No topics yet: not ready, and /readyz says which loop and why.
        _until(lambda: {loop["state"] for loop in client.get("/readyz").json()["loops"].values()} == {"down"},
               "every feed reported down")
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["not_up"] == ["actions-feed", "approvals-feed", "incidents-feed"]
        assert "actions" in ready.json()["loops"]["actions-feed"]["reason"]
        assert "approvals" in ready.json()["loops"]["approvals-feed"]["reason"]
        assert ready.json()["loops"]["incidents-feed"]["reason"]
        # Down past the limit: liveness fails, so the kubelet would restart a pod that cannot heal itself.
        _until(lambda: client.get("/healthz").status_code == 503, "liveness turning unhealthy")
        assert "actions-feed" in client.get("/healthz").json()["reasons"][0]

        ensure_topics(bootstrap, topic_prefix)
        _until(lambda: client.get("/readyz").status_code == 200, "ready once the topics exist")
        assert all(loop["restarts"] >= 1 for loop in client.get("/readyz").json()["loops"].values())
        assert client.get("/healthz").status_code == 200


def _alert(labels: dict[str, str], annotations: dict[str, str] | None = None) -> dict[str, object]:
    return {"status": "firing", "labels": {"alertname": "VMInsertWriteErrors", "namespace": "insight-system",
                                           **labels},
            "annotations": annotations or {}, "startsAt": "2026-12-06T09:00:00Z"}


def _app(bootstrap: str, topic_prefix: str) -> tuple[TestClient, KafkaPublisher]:
    codec = make_codec(None)
    settings = Settings(kafka_bootstrap_servers=bootstrap, kafka=KafkaSettings(topic_prefix=topic_prefix))
    publisher = KafkaPublisher(bootstrap, codec, topic_prefix)
    app = create_app(normalize=build_stages(settings).normalize, publisher=publisher, codec=codec,
                     auth=TenantAuth({"acme": SecretStr(TOKEN)}, "default"), registry=CollectorRegistry(),
                     topic_prefix=topic_prefix)
    return TestClient(app), publisher


def _kept(bootstrap: str, topic_prefix: str, count: int) -> list[DeadLetter]:
    letters = TopicReader(bootstrap, make_codec(None), DEAD_LETTER, topic_prefix)
    found = letters.wait_for(lambda rs: len([r for r in rs if isinstance(r, DeadLetter)]) >= count,
                             what=f"{count} refused webhook(s) in dead-letter")
    letters.close()
    kept = [r for r in found if isinstance(r, DeadLetter)]
    assert all(r.stage == "api_webhook" and r.tenant == "acme" and r.source_topic == "alertmanager-webhook"
               for r in kept)
    return kept


def test_webhooks_over_our_limits_are_413_and_kept_in_dead_letter(broker: object, topic_prefix: str) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix)
    client, publisher = _app(bootstrap, topic_prefix)
    with client:
        # Issue 12: ~1.1 MB that compresses to almost nothing, so the broker would take it. Every label is under
        # the cap; the alert is not, and the Incident and RCA result that embed it would not fit later.
        compressible = json.dumps({"groupKey": "g1", "alerts": [
            _alert({f"l{i}": "a" * (MAX_LABEL_VALUE_BYTES - 16) for i in range(140)})]}).encode()
        assert len(compressible) > 1_100_000
        big = client.post("/webhook", content=compressible, headers={**AUTH, "Content-Type": "application/json"})
        assert big.status_code == 413, big.text
        assert big.json()["reason"] == "record_too_large" and "alert 0 (VMInsertWriteErrors)" in big.json()["detail"]

        # One label over the cap: refused naming it.
        label = client.post("/webhook", headers=AUTH, json={"groupKey": "g2", "alerts": [
            _alert({"pod": "p" * (MAX_LABEL_VALUE_BYTES + 1)})]})
        assert label.status_code == 413 and "'pod'" in label.json()["detail"], label.text
    publisher.close_sync()
    kept = _kept(bootstrap, topic_prefix, 2)
    assert compressible in {r.payload for r in kept}
    assert any("limit of one alert" in r.reason for r in kept) and any("'pod'" in r.reason for r in kept)


def test_a_record_the_broker_refuses_as_too_large_is_413_not_503(broker: object, topic_prefix: str) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    # normalized refuses anything over 2 KiB here, so the broker's own "too large" can be seen.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    small = NewTopic(NORMALIZED.full_name(topic_prefix), num_partitions=3, replication_factor=-1,
                     config={"max.message.bytes": "2048"})
    for future in admin.create_topics([small]).values():
        future.result(30)
    ensure_topics(bootstrap, topic_prefix)
    normalized = TopicReader(bootstrap, make_codec(None), NORMALIZED, topic_prefix)
    client, publisher = _app(bootstrap, topic_prefix)
    with client:
        # Under every limit of ours, over this topic's: permanent, so 413 (Alertmanager stops retrying).
        noisy = os.urandom(3000).hex()
        refused = client.post("/webhook", headers=AUTH, json={"groupKey": "g3", "alerts": [
            _alert({"pod": "vminsert-0"}, {"description": noisy})]})
        assert refused.status_code == 413, refused.text
        assert "too large" in refused.json()["detail"] and "retry-after" not in refused.headers
        # A normal webhook still goes through.
        ok = client.post("/webhook", headers=AUTH, json={"groupKey": "g4", "alerts": [_alert({"pod": "vminsert-1"})]})
        assert ok.status_code == 202, ok.text
    publisher.close_sync()
    [letter] = _kept(bootstrap, topic_prefix, 1)
    assert "broker refused the record as too large" in letter.reason and noisy not in letter.reason
    assert noisy.encode() in letter.payload
    got = normalized.wait_for(lambda rs: any(isinstance(r, AlertEvent) for r in rs), what="the good webhook")
    assert [r.labels["pod"] for r in got if isinstance(r, AlertEvent)] == ["vminsert-1"]
    normalized.close()


def test_webhook_and_events_name_a_cluster_id_as_mail_does(broker: object, topic_prefix: str) -> None:
    """DCE 5 labels `cluster` with the kube-system UID; with the tenant's map every channel names it alike,
    so a webhook, an event and a mail about one alert are one incident, not three."""
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix)
    uid = "5b7e3c1a-0d4f-4f5e-9a8b-1c2d3e4f5a6b"
    settings = Settings(kafka_bootstrap_servers=bootstrap, kafka=KafkaSettings(topic_prefix=topic_prefix),
                        tenants={"acme": TenantSettings(token=SecretStr(TOKEN), namespaces=["insight-system"],
                                                        cluster_names={uid: "HK-DCE5-PLATFORM"})})
    codec = make_codec(None)
    publisher = KafkaPublisher(bootstrap, codec, topic_prefix)
    app = create_app(normalize=build_stages(settings).normalize, publisher=publisher, codec=codec,
                     auth=TenantAuth({"acme": SecretStr(TOKEN)}, "default"), registry=CollectorRegistry(),
                     topic_prefix=topic_prefix)
    named = {"cluster": "HK-DCE5-PLATFORM", "namespace": "insight-system", "pod": "vminsert-0"}
    expected = alert_fingerprint("acme", "VMInsertWriteErrors", named)
    with TestClient(app) as client:
        hook = client.post("/webhook", headers=AUTH, json={"groupKey": "g4", "alerts": [
            _alert({"cluster": uid, "pod": "vminsert-0"})]})
        event = client.post("/events", headers=AUTH, json={
            "alert": "VMInsertWriteErrors", "severity": "P2",
            "labels": {"cluster": uid, "namespace": "insight-system", "pod": "vminsert-0"}})
    publisher.close_sync()
    assert hook.status_code == 202, hook.text
    assert event.status_code == 202, event.text
    assert hook.json()["events"][0]["fingerprint"] == expected
    assert event.json()["events"][0]["fingerprint"] == expected
