"""A worker killed mid-stream and restarted resumes from committed offsets: nothing lost, nothing doubled."""

from __future__ import annotations

import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from producers.fingerprint import alert_fingerprint, event_id
from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import AlertEvent, EventSource, Incident, Record, SourceKind
from schemas.topics import INCIDENTS, NORMALIZED
from tests.integration.flow.conftest import stack_for
from tests.integration.flow.helpers import TopicReader

N = 40


def _event(tenant: str, n: int) -> AlertEvent:
    labels = {"cluster": "HK-DCE5-PLATFORM", "namespace": "amamba-system", "workload": f"amamba-jenkins-{n}"}
    return AlertEvent(
        tenant=tenant,
        event_id=event_id(tenant, "restart-test", n),
        fingerprint=alert_fingerprint(tenant, "JenkinsRestarted", labels),
        alert="JenkinsRestarted",
        severity="P3",
        alert_class="jenkins_restart",
        labels=labels,
        source=EventSource(kind=SourceKind.EVENTS_API),
        received_at=datetime.now(UTC),
        parser="test@1",
    )


def _incidents(records: list[Record], tenant: str) -> list[Incident]:
    return [r for r in records if isinstance(r, Incident) and r.tenant == tenant]


def test_worker_killed_mid_stream_resumes_without_loss_or_repeat(broker: object, codec: Codec, tmp_path: Path) -> None:
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    stack = stack_for(broker.bootstrap, tmp_path, roles=("worker",))  # type: ignore[attr-defined]
    with stack:
        prefix = stack.settings.kafka.topic_prefix
        publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
        events = [_event(tenant, n) for n in range(N)]
        for event in events[: N // 2]:
            publisher.publish_sync(NORMALIZED, f"{tenant}:{event.fingerprint}", event)
        reader = TopicReader(stack.bootstrap, codec, INCIDENTS, prefix, alive=stack.check)
        reader.wait_for(lambda rs: len(_incidents(rs, tenant)) >= 5, what="the first incidents")

        worker = stack.children["worker"]
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        for event in events[N // 2 :]:
            publisher.publish_sync(NORMALIZED, f"{tenant}:{event.fingerprint}", event)
        stack.start_role("worker")

        fingerprints = {e.fingerprint for e in events}
        records = reader.wait_for(
            lambda rs: {i.fingerprint for i in _incidents(rs, tenant)} >= fingerprints,
            timeout=120,
            what=f"incidents for all {N} fingerprints",
        )
        reader.close()
    ids_by_fp: dict[str, set[str]] = {}
    for incident in _incidents(records, tenant):
        ids_by_fp.setdefault(incident.fingerprint, set()).add(incident.incident_id)
        assert incident.count == 1, "a re-delivered event was counted as a duplicate"
    assert set(ids_by_fp) == fingerprints
    doubled = {fp: ids for fp, ids in ids_by_fp.items() if len(ids) != 1}
    assert not doubled, f"fingerprints with more than one incident: {doubled}"


pytestmark = pytest.mark.integration
