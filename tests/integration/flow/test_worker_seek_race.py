"""A worker restarted on a backlog processes every record of it, however slowly its seek is answered.

After an assignment Faust resumes the stream partitions and seeks them to the committed offsets while
its fetcher runs. Records fetched during the seek used to be processed, then the seek reset Faust's
read offsets and the flow's resume cleared the agents' queues: records already fetched were never
processed and the partition's commit stalled below them (tests/faults/test_kill_worker.py lost mails
that way in 4 of 10 runs). Here the window is made wide on purpose: the worker's
``seek_to_committed`` answers after ``SLOW_SEEK_S`` (a ``sitecustomize`` on the worker's PYTHONPATH),
so the outcome no longer depends on timing: before the fix (streams/worker/rebalance.py) 1457 of 1520
events never became incidents and the group's committed offsets stayed where the first run left them;
with it, all do.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import Incident, Record
from schemas.topics import INCIDENTS, NORMALIZED
from tests.integration.flow.conftest import stack_for
from tests.integration.flow.helpers import TopicReader
from tests.integration.flow.test_restart import _event

#: Events the first run turns into incidents (and table rows), before it is killed.
FIRST = 20
#: More events than the restarted worker finishes while its seek is pending, so some are still queued then.
BACKLOG = 1500
SLOW_SEEK_S = 0.5

#: Loaded by the worker process at start-up (only it gets this PYTHONPATH): answers the seek late.
SLOW_SEEK = f"""
import asyncio

from faust.transport.consumer import ThreadDelegateConsumer

_seek = ThreadDelegateConsumer.seek_to_committed


async def _slow_seek(self):
    committed = await _seek(self)
    await asyncio.sleep({SLOW_SEEK_S})
    return committed


ThreadDelegateConsumer.seek_to_committed = _slow_seek
"""


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, tuple[int, int]]:
    """The group's committed offset and the end offset of each partition of ``topic``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        committed = consumer.committed(tps, timeout=10)
        return {tp.partition: (tp.offset, consumer.get_watermark_offsets(tp, timeout=10)[1]) for tp in committed}
    finally:
        consumer.close()


def test_a_worker_restarted_on_a_backlog_processes_all_of_it_while_its_seek_is_slow(
    broker: object, codec: Codec, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_SEEK)
    pythonpath = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    stack = stack_for(broker.bootstrap, tmp_path, roles=("worker",),  # type: ignore[attr-defined]
                      extra_env={"PYTHONPATH": pythonpath})
    with stack:
        prefix = stack.settings.kafka.topic_prefix
        publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
        reader = TopicReader(stack.bootstrap, codec, INCIDENTS, prefix, alive=stack.check)

        def seen(records: list[Record]) -> set[str]:
            return {r.fingerprint for r in records if isinstance(r, Incident) and r.tenant == tenant}

        # A first run leaves table rows behind, so the restarted worker recovers its tables from their
        # changelogs: Faust starts its fetcher for that recovery, before it seeks the stream partitions.
        first = [_event(tenant, n) for n in range(FIRST)]
        for event in first:
            publisher.publish_sync(NORMALIZED, f"{tenant}:{event.fingerprint}", event)
        reader.wait_for(lambda rs: seen(rs) >= {e.fingerprint for e in first}, what="the first incidents")
        worker = stack.children["worker"]
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)

        # The backlog is there before the worker restarts: its first fetch brings full batches.
        backlog = [_event(tenant, n) for n in range(FIRST, FIRST + BACKLOG)]

        async def publish_all() -> None:
            await asyncio.gather(*(publisher.publish(NORMALIZED, f"{tenant}:{e.fingerprint}", e) for e in backlog))

        asyncio.run(publish_all())
        publisher.close_sync()
        stack.start_role("worker")
        fingerprints = {e.fingerprint for e in first + backlog}
        try:
            reader.wait_for(lambda rs: seen(rs) >= fingerprints, timeout=90,
                            what=f"incidents for all {FIRST + BACKLOG} events")
        except AssertionError as exc:
            group = f"{prefix}{stack.settings.worker.app_id}"
            offsets = _committed(stack.bootstrap, group, NORMALIZED.full_name(prefix), stack.settings.worker.partitions)
            missing = len(fingerprints - seen(reader.records))
            pytest.fail(f"{missing} of {FIRST + BACKLOG} events never became incidents; worker group on normalized "
                        f"(partition: committed, end): {offsets}; {exc}")
        finally:
            reader.close()


pytestmark = pytest.mark.integration
