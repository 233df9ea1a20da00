"""Runs the worker's Faust app with two agents of its own: one stuck on its first record, one that notes what it gets.

Used by test_slow_agent_starves_none.py. The app is the worker's (``WorkerApp``: its consumer settings, its
tables and topics); only the agents are the test's. ``stuck`` reads ``normalized``: on its first record it
writes a mark to the marks file and sends one record to ``incidents`` (awaited: on the broker before it goes
on), then never takes another, as an agent would that waits on something slow. ``noting`` reads
``incidents`` and appends each value to the marks file. Run as
``python -m tests.integration.flow.slow_agent_worker <bootstrap> <topic prefix> <data dir> <marks file>``
from the repository root.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import faust

from schemas.codec import make_codec
from schemas.topics import INCIDENTS, NORMALIZED
from streams.settings import KafkaSettings, Settings, WorkerSettings
from streams.wiring.topics_admin import ensure_topics, worker_topics
from streams.worker.app import WorkerApp

#: What ``stuck`` sends on its first record; ``noting`` writes it to the marks file.
TRIGGER = b"sent after the backlog was fetched"
#: What ``stuck`` writes to the marks file when it takes its first record.
STUCK = b"stuck on the first record"


def main(bootstrap: str, prefix: str, data_dir: Path, marks: Path) -> None:
    settings = Settings(kafka=KafkaSettings(topic_prefix=prefix, bootstrap_servers=bootstrap),
                        worker=WorkerSettings(data_dir=data_dir))
    ensure_topics(bootstrap, prefix, internal=worker_topics(prefix, settings.worker.app_id, settings.worker.partitions))
    data_dir.mkdir(parents=True, exist_ok=True)
    worker = WorkerApp(settings, bootstrap, make_codec(None))
    never = asyncio.Event()

    @worker.app.agent(worker.topic(NORMALIZED.name), name="stuck")
    async def stuck(stream: faust.StreamT[bytes]) -> None:
        async for _value in stream:
            with marks.open("ab") as out:
                out.write(STUCK + b"\n")
            await worker.forward(worker.topic(INCIDENTS.name), b"acme:trigger", TRIGGER)
            await never.wait()

    @worker.app.agent(worker.topic(INCIDENTS.name), name="noting")
    async def noting(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            with marks.open("ab") as out:
                out.write(value + b"\n")

    faust.Worker(worker.app, loglevel="WARNING", quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
