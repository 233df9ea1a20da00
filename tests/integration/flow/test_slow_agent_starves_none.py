"""An agent stuck on its input's backlog does not keep the worker's other agents from theirs.

Faust hands a poll's records to the agents one by one and waits on an agent whose queue is full before it
hands over anything else. Without a limit on the records per poll, one poll of a backlog larger than a queue
filled the queue of the agent reading it, and no other agent got a record until that agent had worked through
the rest of the poll: after the load benchmark's 5-minute overload no incident was written for minutes
(streams/worker/poll_size.py). Here the agent on ``normalized`` never finishes its first record, with 15,000
records behind it; a record sent to ``incidents`` once the backlog is being delivered must still reach the
agent reading ``incidents``. Before the limit it never did.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer

from schemas.topics import NORMALIZED
from streams.wiring.topics_admin import ensure_topics
from tests.integration.flow.slow_agent_worker import STUCK, TRIGGER

ROOT = Path(__file__).resolve().parents[3]
#: Records per partition of ``normalized`` (3 partitions): each partition alone more than an agent's queue holds.
BACKLOG_PER_PARTITION = 5000
#: Generous: the worker joins its group, recovers its (empty) tables and fetches the backlog on a shared machine.
DEADLINE_S = 180.0


def _backlog(bootstrap: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for partition in range(NORMALIZED.partitions):
        for i in range(BACKLOG_PER_PARTITION):
            producer.produce(topic, key=f"acme:{i}".encode(), value=b"x", partition=partition)
            if i % 1000 == 0:
                producer.poll(0)
    assert producer.flush(60) == 0


def _marked(worker: subprocess.Popen[bytes], marks: Path, mark: bytes) -> bool:
    """Waits until ``mark`` is in the marks file (True) or the deadline passed (False); the worker must live."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        assert worker.poll() is None, f"the worker ended ({worker.returncode}); see its log in {marks.parent}"
        if marks.exists() and mark in marks.read_bytes():
            return True
        time.sleep(0.5)
    return False


def test_an_agent_stuck_on_a_backlog_leaves_the_other_agents_their_records(broker: object, tmp_path: Path) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    prefix = f"s{uuid.uuid4().hex[:8]}."
    ensure_topics(bootstrap, prefix)
    _backlog(bootstrap, NORMALIZED.full_name(prefix))
    marks = tmp_path / "marks"
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.flow.slow_agent_worker", bootstrap, prefix,
         str(tmp_path / "data"), str(marks)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert _marked(worker, marks, STUCK), "the agent reading normalized never got its first record"
        assert _marked(worker, marks, TRIGGER), (
            "the agent reading incidents never got its record while the agent reading normalized was stuck")
    finally:
        worker.kill()  # the stuck agent would hold a graceful stop
        worker.wait(30)
        log.close()
