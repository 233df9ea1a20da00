"""Dedup works in rounds, but a dedup row never reaches its changelog before the incident records made with it.

The dedup agent works on a round of alerts, hands their incident records to the broker and writes the
round's dedup rows only once those are acknowledged (streams/worker/table_rounds.py). Here the broker goes
silent for dedup's output (a TCP proxy in front of real Kafka swallows the produce requests naming the
correlate-input topic) while a backlog of new alerts arrives: no dedup row for them may reach the
``dedup-state`` changelog, since a restarted worker would rebuild it and take the re-delivered alerts for
repeats of incidents nobody was told about. Then the worker is killed -9 (what the proxy held is dropped),
the broker answers again and the worker restarts: every alert must open its incident, one per alert.
"""

from __future__ import annotations

import json
import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from producers.mail import parse_mail
from producers.publisher import KafkaPublisher
from schemas.codec import make_codec
from schemas.records import AlertEvent, EventSource, Incident, Record, SourceKind
from schemas.topics import INCIDENTS, NORMALIZED
from streams.wiring.topics_admin import CORRELATE_INPUT_SUFFIX, DEDUP_STATE
from tests.integration.flow.helpers import TopicReader, committed_offsets, read_all
from tests.integration.flow.proxied_worker import wait_until, worker_stack
from tests.support.kafka_proxy import KafkaProxy

pytestmark = pytest.mark.integration

APP_ID = "rcaflow"
ALERTS = 12


def _alert(samples_dir: Path, tenant: str) -> AlertEvent:
    return parse_mail((samples_dir / "etcd_latency.eml").read_bytes(), tenant=tenant, received_at=datetime.now(UTC),
                      source=EventSource(kind=SourceKind.FILE)).events[0]


def _changelog_keys(bootstrap: str, topic: str) -> set[str]:
    """Every row key on the changelog now."""
    return {json.loads(key or b"null") for key, _ in read_all(bootstrap, topic)}


def test_a_dedup_row_never_reaches_its_changelog_before_its_incident_and_a_restart_opens_every_incident_once(
    proxied: KafkaProxy, tmp_path: Path, samples_dir: Path
) -> None:
    bootstrap = f"127.0.0.1:{proxied.port}"
    stack = worker_stack(bootstrap, tmp_path, "t")
    prefix = stack.settings.kafka.topic_prefix
    group = f"{prefix}{APP_ID}"
    changelog = f"{group}-{DEDUP_STATE}-changelog"
    codec = make_codec(None)
    run = uuid.uuid4().hex[:6]
    with stack:
        publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
        incidents = TopicReader(stack.bootstrap, codec, INCIDENTS, prefix, alive=stack.check)
        try:
            # Warm up: one alert opens its incident and is committed, so the worker is past its first assignment.
            warm = _alert(samples_dir, f"tw-{run}")
            first = publisher.publish_sync(NORMALIZED, f"{warm.tenant}:{warm.fingerprint}", warm)
            incidents.wait_for(lambda rs: any(isinstance(r, Incident) and r.tenant == warm.tenant for r in rs),
                               timeout=180, what="the warm-up alert's incident")
            wait_until(lambda: committed_offsets(bootstrap, group, first.topic).get(first.partition, -1)
                       > first.offset, "the warm-up alert to be committed", alive=stack.check)

            proxied.hold_produce(f"{group}{CORRELATE_INPUT_SUFFIX}")  # silent for dedup's incident records
            alerts = [_alert(samples_dir, f"tr-{run}-{i}") for i in range(ALERTS)]
            keys = {f"{a.tenant}:{a.fingerprint}" for a in alerts}
            for alert in alerts:
                publisher.publish_sync(NORMALIZED, f"{alert.tenant}:{alert.fingerprint}", alert)
            assert proxied.swallowed.wait(120), "the worker never sent the backlog's incident records"
            # Past the producer's request timeout the round's records failed and are being sent again, with
            # backoff: by then a worker that wrote rows ahead of their outputs would have written them.
            log = tmp_path / "logs" / "worker.log"
            wait_until(lambda: "dedup: sending again" in log.read_text(errors="replace"),
                       "the round's incident records to be sent again", alive=stack.check)
            early = _changelog_keys(bootstrap, changelog) & keys
            assert not early, f"dedup rows reached the changelog while their incidents were held: {sorted(early)}"

            worker = stack.children["worker"]
            worker.send_signal(signal.SIGKILL)  # what the proxy held is dropped with the connections
            worker.wait(60)
            proxied.release()
            stack.start_role("worker")

            def opened(records: list[Record]) -> dict[str, set[str]]:
                ids: dict[str, set[str]] = {}
                for r in records:
                    if isinstance(r, Incident) and f"{r.tenant}:{r.fingerprint}" in keys:
                        ids.setdefault(f"{r.tenant}:{r.fingerprint}", set()).add(r.incident_id)
                return ids

            records = incidents.wait_for(lambda rs: set(opened(rs)) == keys, timeout=180,
                                         what="every held alert's incident after the restart")
            twice = {key: ids for key, ids in opened(records).items() if len(ids) != 1}
            assert not twice, f"alerts opened more than one incident: {twice}"
            assert keys <= _changelog_keys(bootstrap, changelog), "the restarted worker never wrote the rows"
        finally:
            proxied.release()
            publisher.close_sync()
            incidents.close()
