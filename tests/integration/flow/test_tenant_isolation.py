"""Two tenants send the very same alert to one running worker (real Kafka): each gets its own incident, its own
dedup state and its own audit chain; nothing of one tenant lands in the other's.

What the unit tests check stage by stage (tests/unit/streams/stages/test_tenant_isolation.py), here on the
worker's real tables, topics and partitions."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from producers.publisher import KafkaPublisher
from producers.seed_event import SeedEvent, seed_to_event
from schemas.codec import Codec
from schemas.records import AuditRecord, Incident, Record
from schemas.topics import AUDIT, INCIDENTS, NORMALIZED
from streams.wiring.supervisor import Stack
from tests.integration.flow.conftest import stack_for
from tests.integration.flow.helpers import TopicReader

#: Both tenants own the namespace the alert names, so the same alert is in scope for each.
TENANTS_ENV = {
    "RCAFLOW_TENANTS__ACME__NAMESPACES": '["shared"]',
    "RCAFLOW_TENANTS__ACME__SENDERS": '["*@acme.test"]',
    "RCAFLOW_TENANTS__GLOBEX__NAMESPACES": '["shared"]',
    "RCAFLOW_TENANTS__GLOBEX__SENDERS": '["*@globex.test"]',
}


@pytest.fixture
def stack(broker: object, tmp_path: Path) -> Iterator[Stack]:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    with stack_for(bootstrap, tmp_path, ("worker",), tenants_env=TENANTS_ENV) as running:
        yield running


def _seed() -> SeedEvent:
    return SeedEvent.model_validate({
        "alert": "PrometheusRemoteWriteBehind", "severity": "P2",
        "labels": {"cluster": "c1", "namespace": "shared", "workload": f"prometheus-{uuid.uuid4().hex[:6]}",
                   "component": "prometheus"},
        "metrics": {"times": 1, "first_occur": "2026-12-06T09:00:00Z"},
        "raw": {"mail_subject": "s", "mail_id": "<1@x>"}})


def _reader(stack: Stack, codec: Codec, spec: object) -> TopicReader:
    return TopicReader(stack.bootstrap, codec, spec, stack.settings.kafka.topic_prefix,  # type: ignore[arg-type]
                       alive=stack.check)


def test_the_same_alert_of_two_tenants_never_shares_state_records_or_audit(stack: Stack, codec: Codec) -> None:
    seed = _seed()
    publisher = KafkaPublisher(stack.bootstrap, codec, stack.settings.kafka.topic_prefix)
    sent = []
    try:
        # acme twice (a repeat: its incident counts 2), globex once: globex's incident must stay at 1.
        for tenant in ("acme", "globex", "acme"):
            event = seed_to_event(seed, tenant=tenant, received_at=datetime.now(UTC), request_id=uuid.uuid4().hex)
            publisher.publish_sync(NORMALIZED, f"{tenant}:{event.fingerprint}", event)
            sent.append(event)
    finally:
        publisher.close_sync()
    workload = seed.labels["workload"]

    def ours(records: list[Record]) -> list[Incident]:
        return [r for r in records if isinstance(r, Incident) and r.event.labels.get("workload") == workload]

    incidents = _reader(stack, codec, INCIDENTS)
    try:
        found = ours(incidents.wait_for(
            lambda rs: any(i.tenant == "acme" and i.count == 2 for i in ours(rs))
            and any(i.tenant == "globex" for i in ours(rs)), timeout=180,
            what="acme's incident counted twice and globex's incident"))
        incidents.poll(2.0)  # anything late (a wrong second update of globex's) is read too
        found = ours(incidents.records)
    finally:
        incidents.close()
    by_tenant = {tenant: [i for i in found if i.tenant == tenant] for tenant in ("acme", "globex")}
    assert len(by_tenant["acme"]) + len(by_tenant["globex"]) == len(found)
    # Records: each incident carries its own tenant's alert, and the two are different incidents.
    assert {i.event.event_id for i in by_tenant["acme"]} <= {e.event_id for e in sent if e.tenant == "acme"}
    assert {i.event.event_id for i in by_tenant["globex"]} == {sent[1].event_id}
    assert {i.incident_id for i in by_tenant["acme"]}.isdisjoint({i.incident_id for i in by_tenant["globex"]})
    assert {i.fingerprint for i in by_tenant["acme"]}.isdisjoint({i.fingerprint for i in by_tenant["globex"]})
    # State: acme's repeat counted on acme's row only.
    assert max(i.count for i in by_tenant["acme"]) == 2
    assert [i.count for i in by_tenant["globex"]] == [1]

    # Audit: one chain per tenant; a tenant's chain holds only its own alerts and links only to itself.
    audit = _reader(stack, codec, AUDIT)
    ids = {e.tenant: {x.event_id for x in sent if x.tenant == e.tenant} for e in sent}

    def audited(records: list[Record]) -> dict[str, list[AuditRecord]]:
        chains: dict[str, list[AuditRecord]] = {}
        for r in records:
            if isinstance(r, AuditRecord) and r.tenant in ids:
                chains.setdefault(r.tenant, []).append(r)
        return chains

    try:
        chains = audited(audit.wait_for(
            lambda rs: all(ids[t] <= {r.subject_id for r in audited(rs).get(t, [])} for t in ids), timeout=120,
            what="every alert of both tenants in the audit"))
    finally:
        audit.close()
    for tenant, chain in chains.items():
        others = set().union(*(ids[t] for t in ids if t != tenant))
        assert not others & {r.subject_id for r in chain}, f"{tenant}'s audit chain holds another tenant's alert"
        assert not any(json.dumps(r.detail).count(o) for r in chain for o in others)
        hashes = {r.hash for r in chain}
        assert all(r.prev_hash in hashes for r in chain if r.seq > min(x.seq for x in chain)), \
            f"{tenant}'s chain links to a record outside it"
