"""Issue 18: the worker's tables do not grow without bound; what a later alert still needs is kept.

On the real broker and the real worker process, with the bundled policy whose dedup windows and cooldowns are
shortened: a repeat inside its window, after the prune ticks have swept its partition, still joins its
incident; once the window (plus the margin) has passed and the incident went quiet, its dedup-state row and
its action-cooldowns row are deleted (tombstones on their changelogs), and the next alert opens a new incident,
as it would with the row.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from policies import DEFAULT_POLICY_FILE
from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import Incident, Record
from schemas.topics import INCIDENTS
from streams.notify.requests import PRUNE_TICK
from streams.wiring.supervisor import Stack
from streams.wiring.topics_admin import (
    ACTION_COOLDOWNS,
    DEDUP_STATE,
    NOTIFY_INPUT_SUFFIX,
    ensure_topics,
    worker_topics,
)
from streams.worker.app import partition_of
from tests.integration.flow.conftest import stack_for
from tests.integration.flow.helpers import TopicReader, send_mail_file

pytestmark = pytest.mark.integration

WINDOW_S = 30  # long enough for the ticks to sweep before the repeat, on a busy machine


def _short_windows(tmp: Path) -> Path:
    text = re.sub(r"(dedup_window|cooldown): *\S+", rf"\1: {WINDOW_S}s", DEFAULT_POLICY_FILE.read_text())
    path = tmp / "policies.yaml"
    path.write_text(text)
    return path


class Raw:
    """One topic read from the beginning as (partition, offset, key, value); a tombstone's value is None."""

    def __init__(self, bootstrap: str, topic: str, alive: Callable[[], None]) -> None:
        self.topic, self.alive, self.seen = topic, alive, []  # type: ignore[var-annotated]
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{uuid.uuid4().hex}",
                                   "enable.auto.commit": False})
        parts = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])

    def wait_for(self, found: Callable[[list[tuple[int, int, bytes, bytes | None]]], bool], what: str,
                 timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.alive()
            msg = self._consumer.poll(0.2)
            if msg is not None and not msg.error():
                self.seen.append((msg.partition(), msg.offset(), msg.key(), msg.value()))
            if found(self.seen):
                return
        keys = sorted({k for _p, _o, k, _v in self.seen})[:20]
        raise AssertionError(f"{self.topic}: timed out after {timeout}s waiting for {what}; keys seen: {keys}")

    def close(self) -> None:
        self._consumer.close()


def _incidents(records: list[Record], tenant: str) -> list[Incident]:
    return [r for r in records if isinstance(r, Incident) and r.tenant == tenant]


def _swept_after(stack: Stack, bootstrap: str, partition: int) -> None:
    """Wait until the worker has processed a prune tick for ``partition`` sent after this call."""
    prefix, app_id = stack.settings.kafka.topic_prefix, stack.settings.worker.app_id
    topic = f"{prefix}{app_id}{NOTIFY_INPUT_SUFFIX}"
    group = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}{app_id}",
                      "enable.auto.commit": False})
    try:
        _low, high = group.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        ticks = Raw(bootstrap, topic, stack.check)
        ticks.wait_for(lambda seen: any(p == partition and o >= high and v == PRUNE_TICK for p, o, _k, v in seen),
                       "a prune tick after the row was written")
        tick = min(o for p, o, _k, v in ticks.seen if p == partition and o >= high and v == PRUNE_TICK)
        ticks.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            stack.check()
            [done] = group.committed([TopicPartition(topic, partition)], timeout=10)
            if done.offset > tick:
                return
            time.sleep(0.2)
        raise AssertionError(f"the worker did not get past the prune tick at {topic}[{partition}]@{tick}")
    finally:
        group.close()


def test_a_repeat_after_a_sweep_joins_its_incident_and_done_rows_are_deleted(
    broker: object, tmp_path: Path, samples_dir: Path, codec: Codec
) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    stack = stack_for(bootstrap, tmp_path, roles=("worker",), extra_env={
        "RCAFLOW_POLICIES_FILE": str(_short_windows(tmp_path)), "RCAFLOW_WORKER__PRUNE_MARGIN_S": "2",
        "RCAFLOW_WORKER__OPEN_INCIDENT_KEEP_HOURS": "0.001", "RCAFLOW_NOTIFY__PRUNE_INTERVAL_S": "0.5"})
    prefix, app_id = stack.settings.kafka.topic_prefix, stack.settings.worker.app_id
    # The changelogs too, as the worker creates them at start, so the readers below find their partitions.
    ensure_topics(bootstrap, prefix, internal=worker_topics(prefix, app_id, stack.settings.worker.partitions))
    tenant = f"pr-{uuid.uuid4().hex[:6]}"
    mail = samples_dir / "jenkins_restart.eml"
    publisher = KafkaPublisher(bootstrap, codec, prefix)
    with stack:
        incidents = TopicReader(bootstrap, codec, INCIDENTS, prefix, alive=stack.check)
        dedup = Raw(bootstrap, f"{prefix}{app_id}-{DEDUP_STATE}-changelog", stack.check)
        cooldowns = Raw(bootstrap, f"{prefix}{app_id}-{ACTION_COOLDOWNS}-changelog", stack.check)

        send_mail_file(publisher, tenant, mail)
        incidents.wait_for(lambda rs: len(_incidents(rs, tenant)) == 1, what="the first incident")
        [first] = _incidents(incidents.records, tenant)
        key = f"{tenant}:{first.fingerprint}"
        dedup.wait_for(lambda seen: any(k == f'"{key}"'.encode() and v for _p, _o, k, v in seen), "its dedup row")
        _swept_after(stack, bootstrap, partition_of(key, stack.settings.worker.partitions))

        send_mail_file(publisher, tenant, mail)  # inside the window: the same incident, counted
        incidents.wait_for(lambda rs: len(_incidents(rs, tenant)) == 2, what="the repeat")
        repeat = _incidents(incidents.records, tenant)[1]
        assert (repeat.incident_id, repeat.count) == (first.incident_id, 2)
        assert not [v for _p, _o, k, v in dedup.seen if k == f'"{key}"'.encode() and v is None]

        # Window, margin and quiet time over: both rows go, by tombstones on their changelogs.
        tombstone = f'"{key}"'.encode()
        dedup.wait_for(lambda seen: any(k == tombstone and v is None for _p, _o, k, v in seen),
                       "the dedup row's tombstone", timeout=WINDOW_S + 120)
        cooldowns.wait_for(lambda seen: any(k == tombstone and v is None for _p, _o, k, v in seen),
                           "the cooldown row's tombstone", timeout=WINDOW_S + 120)

        send_mail_file(publisher, tenant, mail)  # the window has passed: a new incident, as with the row
        incidents.wait_for(lambda rs: len(_incidents(rs, tenant)) == 3, what="the next incident")
        after = _incidents(incidents.records, tenant)[2]
        assert after.incident_id != first.incident_id and after.count == 1
        for reader in (incidents, dedup, cooldowns):
            reader.close()
    publisher.close_sync()
