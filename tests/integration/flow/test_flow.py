"""The whole loop on the real broker: mail in, audit record out, with dedup and dead letters."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Producer
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import (
    ActionEvent,
    ActionState,
    AlertEvent,
    AuditKind,
    AuditRecord,
    DeadLetter,
    Incident,
    RawMail,
    RcaResult,
    Record,
    SourceKind,
)
from schemas.topics import ACTIONS, AUDIT, DEAD_LETTER, INCIDENTS, NORMALIZED, RAW_MAIL, RCA_RESULT
from streams.api.app import TenantAuth, create_app
from streams.settings import KafkaSettings, Settings
from streams.wiring.runtime import build_stages
from streams.wiring.supervisor import Stack
from tests.integration.flow.helpers import TopicReader


def _mail(path: Path, tenant: str) -> RawMail:
    return RawMail(
        tenant=tenant,
        message_id=f"<{uuid.uuid4().hex}@test>",
        mailbox="test",
        source=SourceKind.FILE,
        received_at=datetime.now(UTC),
        subject=path.stem,
        raw=path.read_bytes(),
    )


def _of(tenant: str, records: list[Record]) -> list[Record]:
    return [r for r in records if getattr(r, "tenant", None) == tenant]


def test_a_mail_goes_all_the_way_to_an_audit_record(stack: Stack, codec: Codec, samples_dir: Path) -> None:
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    prefix = stack.settings.kafka.topic_prefix
    publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
    publisher.publish_sync(RAW_MAIL, f"{tenant}:m1", _mail(samples_dir / "jenkins_restart.eml", tenant))

    results = TopicReader(stack.bootstrap, codec, RCA_RESULT, prefix, alive=stack.check)
    found = results.wait_for(lambda rs: any(r.tenant == tenant for r in rs), what="an RCA result")  # type: ignore[attr-defined]
    result = next(r for r in _of(tenant, found) if isinstance(r, RcaResult))
    assert result.alert_class == "jenkins_restart"
    assert result.diagnosis

    audit = TopicReader(stack.bootstrap, codec, AUDIT, prefix, alive=stack.check)

    def executed(records: list[Record]) -> bool:
        # The executor runs dry here: the audit says name:dry-run, never name:succeeded.
        return any(isinstance(r, AuditRecord) and r.action.endswith(":dry-run") for r in _of(tenant, records))

    records = [
        r
        for r in audit.wait_for(executed, timeout=90, what="an execution audit record")
        if isinstance(r, AuditRecord) and r.tenant == tenant
    ]
    # The chain is gap-free and linked: every record points at the one before it.
    records.sort(key=lambda r: r.seq)
    assert [r.seq for r in records] == list(range(records[0].seq, records[0].seq + len(records)))
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash
    # The chain starts where the alert came in: each ingested alert is a step of its own.
    ingested = [r for r in records if r.kind is AuditKind.INGEST]
    assert ingested and all("raw-mail[" in r.detail["raw"] for r in ingested)
    assert {r.kind for r in records} >= {AuditKind.INGEST, AuditKind.DECISION, AuditKind.EXECUTION}
    for reader in (results, audit):
        reader.close()


def test_a_duplicate_within_the_window_opens_no_second_incident(stack: Stack, codec: Codec, samples_dir: Path) -> None:
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    prefix = stack.settings.kafka.topic_prefix
    publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
    path = samples_dir / "etcd_latency.eml"
    for n in range(2):
        publisher.publish_sync(RAW_MAIL, f"{tenant}:m{n}", _mail(path, tenant))

    incidents = TopicReader(stack.bootstrap, codec, INCIDENTS, prefix, alive=stack.check)
    records = incidents.wait_for(
        lambda rs: any(isinstance(r, Incident) and r.tenant == tenant and r.count == 2 for r in rs),
        what="a count update",
    )
    mine = [r for r in records if isinstance(r, Incident) and r.tenant == tenant]
    by_fingerprint: dict[str, set[str]] = {}
    for incident in mine:
        by_fingerprint.setdefault(incident.fingerprint, set()).add(incident.incident_id)
    assert all(len(ids) == 1 for ids in by_fingerprint.values()), by_fingerprint
    assert sum(1 for r in mine if r.count == 1) == len(by_fingerprint)
    incidents.close()


def test_poison_lands_in_dead_letter_and_the_stage_keeps_going(stack: Stack, codec: Codec, samples_dir: Path) -> None:
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    prefix = stack.settings.kafka.topic_prefix
    raw_topic = RAW_MAIL.full_name(prefix)
    producer = Producer({"bootstrap.servers": stack.bootstrap})
    poison = b"\x00not avro at all " + uuid.uuid4().bytes
    producer.produce(raw_topic, key=b"poison", value=poison)
    producer.flush(10)
    publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
    publisher.publish_sync(RAW_MAIL, f"{tenant}:ok", _mail(samples_dir / "log_flood.eml", tenant))

    dead = TopicReader(stack.bootstrap, codec, DEAD_LETTER, prefix, alive=stack.check)
    letters = dead.wait_for(
        lambda rs: any(isinstance(r, DeadLetter) and r.payload == poison for r in rs), what="the poison record"
    )
    letter = next(r for r in letters if isinstance(r, DeadLetter) and r.payload == poison)
    assert letter.source_topic == raw_topic
    assert letter.stage == "normalize"
    assert letter.reason

    normalized = TopicReader(stack.bootstrap, codec, NORMALIZED, prefix, alive=stack.check)
    normalized.wait_for(
        lambda rs: any(isinstance(r, AlertEvent) and r.tenant == tenant for r in rs),
        what="the good mail after the poison one",
    )
    dead.close()
    normalized.close()


def test_post_events_reaches_rca_result(stack: Stack, codec: Codec) -> None:
    prefix = stack.settings.kafka.topic_prefix
    settings = Settings(kafka_bootstrap_servers=stack.bootstrap, kafka=KafkaSettings(topic_prefix=prefix))
    stages = build_stages(settings)
    publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
    app = create_app(normalize=stages.normalize, publisher=publisher, auth=TenantAuth({}, "default"),
                     registry=CollectorRegistry())
    workload = f"prometheus-insight-agent-{uuid.uuid4().hex[:6]}"
    seed = {
        "alert": "PrometheusRemoteWriteBehind",
        "severity": "P2",
        "labels": {
            "cluster": "HK-DCE5-PLATFORM",
            "namespace": "insight-system",
            "workload": workload,
            "component": "prometheus",
        },
        "metrics": {"times": 2, "first_occur": "2025-09-23T00:00:00Z"},
        "raw": {"mail_subject": "Control Cluster Details", "mail_id": "<x@y>"},
    }
    with TestClient(app) as client:
        response = client.post("/events", json=seed)
    assert response.status_code == 202, response.text
    fingerprint = response.json()["events"][0]["fingerprint"]

    results = TopicReader(stack.bootstrap, codec, RCA_RESULT, prefix, alive=stack.check)
    found = results.wait_for(
        lambda rs: any(isinstance(r, RcaResult) and r.incident.fingerprint == fingerprint for r in rs),
        what="the RCA result of the posted event",
    )
    result = next(r for r in found if isinstance(r, RcaResult) and r.incident.fingerprint == fingerprint)
    assert result.alert_class == "prometheus_remote_write_behind"
    assert result.incident.event.labels["workload"] == workload

    actions = TopicReader(stack.bootstrap, codec, ACTIONS, prefix, alive=stack.check)
    ids = {a.action_id for a in result.actions}
    states = actions.wait_for(
        lambda rs: ids <= {r.action_id for r in rs if isinstance(r, ActionEvent)}, what="its actions"
    )
    assert {r.state for r in states if isinstance(r, ActionEvent) and r.action_id in ids} & {
        ActionState.APPROVED,
        ActionState.AWAITING_APPROVAL,
    }
    results.close()
    actions.close()
