"""A changelog partition whose start Faust does not know is read from its beginning, not a crash.

Faust's recovery seeks standby changelog partitions to the offsets it built for them; one assigned
after they were built has ``None``, which aiokafka refuses (``ValueError: Offset must be a positive
integer``): a worker restarted into a rebalance crashed in recovery (the scale-out case). The consumer
here stands in for aiokafka's side of the seek only: it refuses what aiokafka refuses.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from faust.tables import TableManager
from faust.types import TP

from schemas.codec import make_codec
from streams.settings import Settings, WorkerSettings
from streams.worker.app import WorkerApp


class _Seeks:
    """Records the seeks recovery asks for, refusing what aiokafka's ``seek`` refuses."""

    def __init__(self) -> None:
        self.sought: dict[TP, int] = {}

    async def seek_wait(self, partitions: Mapping[TP, Any]) -> None:
        for tp, offset in partitions.items():
            if not isinstance(offset, int) or offset < 0:
                raise ValueError("Offset must be a positive integer")
            self.sought[tp] = offset


def test_a_standby_changelog_partition_without_a_known_offset_is_read_from_its_start(tmp_path: Path) -> None:
    worker = WorkerApp(Settings(worker=WorkerSettings(data_dir=tmp_path)), "127.0.0.1:9", make_codec(None))
    recovery = cast(TableManager, worker.app.tables).recovery
    known, unknown = TP("dedup-state-changelog", 0), TP("dedup-state-changelog", 1)
    offsets: Counter[TP] = Counter({known: 41})
    offsets[unknown] = None  # type: ignore[assignment]  # what Faust's Recovery._add stores for it
    consumer = _Seeks()

    asyncio.run(recovery._seek_offsets(cast(Any, consumer), {known, unknown}, offsets, "standby"))

    assert consumer.sought == {known: 41, unknown: 0}
