"""A work-around for a race in Faust's rebalance: stream partitions were fetched while being sought.

After an assignment Faust (faust-streaming 0.15) recovers the tables with its fetcher running (the
changelogs are read through it), then ``Recovery.on_recovery_completed`` resumes the stream
partitions, seeks them to the committed offsets, and resumes the flow, which also clears the agents'
queues. Records fetched while the seek was under way were delivered and processed; when the seek
returned it reset Faust's read offsets to committed offsets read before those deliveries, so

- the records fetched again from there were dropped as already read, or taken as a gap, which Faust
  counts as acked: the group committed past records no agent had finished;
- the records still queued for an agent were cleared by the resume, never processed;
- a partition whose next ack sat above such a hole never committed again (no error, no log line).

A worker restarted on a backlog after ``kill -9`` hit it in 4 of 10 runs of
tests/faults/test_kill_worker.py at 60 mails (a fresh worker does not: without changelogs to read,
Faust starts its fetcher only after the seek). The fix is Faust's own rule for a revocation, applied
where Faust leaves it out: the consumer's flow is stopped before the stream partitions are resumed
and sought (Faust resumes it once the seek is done), and at a revocation without partitions (a
worker's first join), so nothing is fetched before the new assignment's partitions are paused.
Test: tests/integration/flow/test_worker_seek_race.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import faust
from faust.tables import TableManager


def seek_before_fetching(app: faust.App) -> None:
    """Makes ``app`` stop fetching before it seeks its stream partitions (see the module docstring)."""
    recovery = cast(TableManager, app.tables).recovery
    # Both ways a recovery ends: with tables (on_recovery_completed) and without (_resume_streams). Each
    # resumes the stream partitions, seeks them, then resumes the flow; the flow is stopped first here.
    for name in ("on_recovery_completed", "_resume_streams"):
        setattr(recovery, name, _stopped_first(app, getattr(recovery, name)))

    recovery._seek_offsets = _known_offsets_only(recovery._seek_offsets)  # type: ignore[method-assign,assignment]

    @app.on_partitions_revoked.connect
    async def stop_fetching(sender: Any, /, *revoked: Any, signal: Any, **_: Any) -> None:
        # Faust stops the flow when partitions are revoked only if it had some; recovery resumes it.
        app.consumer.stop_flow()


def _stopped_first(app: faust.App, resume: Callable[[int], Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    async def stop_then_resume(generation_id: int = 0) -> None:
        app.consumer.stop_flow()
        await resume(generation_id)

    return stop_then_resume


def _known_offsets_only(seek: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Changelog partitions whose start Faust does not know are read from their beginning.

    Faust seeks a standby changelog partition to ``None`` when it was assigned after its offsets were
    built, and aiokafka refuses that (``ValueError: Offset must be a positive integer``): the restarted
    worker crashed in recovery (seen in the scale-out case). Offset -1, which Faust itself maps to 0,
    means the same thing: nothing of that partition is in the table yet.
    """
    async def seek_known(consumer: Any, tps: set[Any], offsets: Any, title: str) -> None:
        for tp in tps:
            offset = offsets.get(tp)
            if not isinstance(offset, int) or offset < -1:
                offsets[tp] = -1
        await seek(consumer, tps, offsets, title)

    return seek_known
